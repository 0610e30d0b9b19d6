"""Run the shell commands of a document as a new user would: exactly as written, in order.

A document's runnable commands are its fenced ``sh`` blocks (other blocks,
``sh compose`` or ``console`` say what to type elsewhere and are not run).
They run in one bash process, with ``set -euo pipefail``, from the checkout
(where a user who ran ``scripts/setup`` stands), with ``HOME`` a fresh
directory. Before each command its text is printed, so the transcript
interleaves every command with its output.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Transcript", "commands", "ports_taken", "run_commands", "section"]

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` (a ``## `` line) up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.S | re.M)
    if match is None:
        raise AssertionError(f"no section '## {heading}'")
    return match.group(1)


def commands(markdown: str) -> list[str]:
    """The commands of the ``sh`` blocks, one per logical line (continuations joined)."""
    found: list[str] = []
    for info, body in _FENCE.findall(markdown):
        if info.strip() != "sh":
            continue
        body = body.replace("\\\n", " ")
        found += [line.strip() for line in body.splitlines()
                  if line.strip() and not line.strip().startswith("#")]
    return found


@dataclass(frozen=True)
class Transcript:
    returncode: int
    text: str


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def run_commands(lines: list[str], *, cwd: Path, home: Path, timeout: float = 900,
                 env: dict[str, str] | None = None) -> Transcript:
    """Run ``lines`` in one bash, echoing each first; the whole process group is ended after.

    Raises:
        subprocess.TimeoutExpired: the commands ran past ``timeout`` seconds.
    """
    script = ["set -euo pipefail"]
    for line in lines:
        script.append(f"printf '%s\\n' {_shell_quote('$ ' + line)}")
        script.append(line)
    environment = {**os.environ, **(env or {}), "HOME": str(home)}
    # Output to a file, not a pipe: a process left in the background after a
    # failure would hold a pipe open, and waiting for its end would hang.
    output = home / f"transcript-{os.getpid()}-{len(lines)}.txt"
    with output.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(["bash", "-c", "\n".join(script)], cwd=cwd,
                                   env=environment, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        finally:
            # Whatever the commands left running in the background goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            if process.poll() is None:
                process.kill()
                process.wait()
    text = output.read_text(encoding="utf-8")
    output.unlink()
    return Transcript(process.returncode, text)


def ports_taken(*ports: int) -> list[int]:
    """Those of ``ports`` that are taken on 127.0.0.1 (the documents use fixed ports)."""
    taken = []
    for port in ports:
        with socket.socket() as s:
            # As servers bind: a port in TIME_WAIT after an earlier run is free to them.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                taken.append(port)
    return taken
