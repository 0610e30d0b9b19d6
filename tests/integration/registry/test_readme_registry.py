"""The README's registry and keys commands, run exactly as written, in order.

A new user types them in a fresh directory (with the repository's protocol
files beside it); the last one serves the registry, whose printed address
then answers.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
# The installed command, as a user runs it ("python -m" would put the working
# directory, with its keys/ folder, ahead of the keys package).
INFOSHARE = str(Path(sys.executable).parent / "infoshare")


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    using = text.split("## Using it", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [line for line in using.splitlines()
            if re.match(r"infoshare (registry|keys) ", line)]


def test_the_readme_registry_commands_work_as_written(tmp_path: Path) -> None:
    commands = readme_commands()
    assert commands[0].startswith("infoshare registry init")
    assert commands[-1].startswith("infoshare registry serve")
    (tmp_path / "protocols").symlink_to(REPO / "protocols")
    env = {**os.environ, "INFOSHARE_REGISTRY_PASSPHRASE": "a registry passphrase for tests",
           "INFOSHARE_PASSPHRASE": "a key passphrase for tests"}
    for var in ("INFOSHARE_HOME", "INFOSHARE_TOKEN", "INFOSHARE_DATABASE_URL"):
        env.pop(var, None)
    for line in commands[:-1]:
        args = shlex.split(line, comments=True)
        result = subprocess.run([INFOSHARE, *args[1:]],
                                cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, (line, result.stderr)
        if args[1:3] == ["registry", "history"]:
            assert "Registered the signing and encryption keys of unit leeds-cc/front-door" \
                in result.stdout
            assert "IG officer, Leeds" in result.stdout
    serve = shlex.split(commands[-1], comments=True)
    server = subprocess.Popen([INFOSHARE, *serve[1:]], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, start_new_session=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("registry listening on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].strip()
        with urllib.request.urlopen(url + "/sign-in", timeout=10) as page:
            assert page.status == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()
