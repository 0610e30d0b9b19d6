"""Regression tests of the security review for the commands: deep or huge protocol files.

A protocol file nested thousands of levels deep, or with a version number of
thousands of digits, is a one-line error and exit status 1 from both
``infoshare protocol check`` and ``infoshare registry load-protocol``, never a
traceback. Run as real processes, as an administrator would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from registry_testing import wy_text

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple"

BAD_FILES = {
    "deep-flow": wy_text() + "\nsecurity: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep-block": wy_text() + "\nretention:\n" + "".join("  " * i + "- \n"
                                                      for i in range(1, 600)),
    "version-5000-digits": wy_text().replace("\nversion: 1\n", "\nversion: " + "9" * 5000 + "\n"),
}


def infoshare(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infoshare.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_protocol_check_says_one_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(BAD_FILES[name])
    assert BAD_FILES[name] != wy_text()
    line = one_line_error(infoshare("protocol", "check", str(path)))
    assert str(path) in line


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_registry_load_protocol_says_one_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(BAD_FILES[name])
    env = {"INFOSHARE_REGISTRY_PASSPHRASE": PASSPHRASE,
           "INFOSHARE_HOME": str(tmp_path / "registry")}
    init = infoshare("registry", "init", "--token-out", str(tmp_path / "admin.token"), env=env)
    assert init.returncode == 0, init.stderr
    line = one_line_error(infoshare("registry", "load-protocol", "--token-file",
                                    str(tmp_path / "admin.token"), str(path), env=env))
    assert line.startswith("error: ")
