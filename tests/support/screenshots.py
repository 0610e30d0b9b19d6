"""Screenshots taken by the browser tests.

Every run takes them (a page that cannot be drawn fails the test), into a
directory of the run's own; they replace the pictures the docs show only when
``INFOSHARE_UPDATE_SCREENSHOTS=1`` is set, so an ordinary test run leaves the
working tree as it found it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

from playwright.sync_api import Page

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@cache
def _run_directory() -> Path:
    return Path(tempfile.mkdtemp(prefix="infoshare-screenshots-"))


def shot(page: Page, name: str) -> Path:
    """Save a full-page screenshot called ``name``; return where it was written."""
    path = _run_directory() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("INFOSHARE_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)
    return path
