"""What the tests of the ``infoshare`` command as an operator runs it share."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from registry.store import Store

#: The ``infoshare`` command of the environment running the tests.
INFOSHARE = str(Path(sys.executable).with_name("infoshare"))

#: ``run(*args, env={...})``: the command in a child process.
Run = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class ServedRegistry:
    """A registry served over HTTP, with its pinned key file and an agency token."""

    url: str
    store: Store
    key_file: Path
    agency_token: str
