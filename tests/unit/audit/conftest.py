"""The honest export every audit test starts from, and copies of it to tamper with."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_export import Built, build_export


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    b = build_export(tmp_path_factory.mktemp("audit"))
    yield b
    b.log.close()


@pytest.fixture
def copy(built: Built, tmp_path: Path) -> Path:
    """A copy of the honest export to tamper with."""
    return Path(shutil.copytree(built.export, tmp_path / "copy"))
