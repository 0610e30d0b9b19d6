"""The audit commands as a person at a terminal meets them, and as a script does.

On a terminal (a pseudo-terminal here) verify, replay and report draw a
progress bar on stderr; piped, they print their result alone. A filter that
names nothing the export's registry knows is warned about; ``--summary``
prints the counts only.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
from collections.abc import Iterator

import pytest
from audit_export import SIGNER, Built, build_export
from auditing_world import INFOSHARE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    b = build_export(tmp_path_factory.mktemp("terminal"))
    yield b
    b.log.close()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFOSHARE_")}
    return env


def on_terminal(*args: str) -> tuple[int, str, str]:
    """Exit status, stdout (a pipe) and what stderr, a terminal, showed."""
    main, secondary = pty.openpty()
    # A terminal of 24 rows and 100 columns (a new one has none, and tqdm draws nothing).
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen([INFOSHARE, *args], stdout=subprocess.PIPE, stderr=secondary,
                               env=_env(), text=True)
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    out, _ = process.communicate(timeout=60)
    os.close(main)
    return process.returncode, out, shown.decode("utf-8", "replace")


def piped(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFOSHARE, *args], capture_output=True, text=True, env=_env(),
                          timeout=60)


@pytest.mark.parametrize("command", [["verify", "--log-key", SIGNER.verifier.line()],
                                     ["replay"], ["report", "--summary"]])
def test_a_bar_on_a_terminal_nothing_but_the_result_when_piped(built: Built,
                                                               command: list[str]) -> None:
    name, *options = command
    args = ["audit", name, str(built.export), *options]
    status, out, shown = on_terminal(*args)
    assert status == 0, shown
    assert f"\r{name}: " in shown, shown  # tqdm's bar, drawn and then cleared
    quiet = piped(*args)
    assert quiet.returncode == 0 and quiet.stdout == out
    # Piped: no bar; at most the warnings a script needs to see.
    assert all(line.startswith("warning: ") for line in quiet.stderr.splitlines()), quiet.stderr
    with_quiet = on_terminal(*args, "--quiet")
    assert f"{name}:" not in with_quiet[2]


def test_the_summary_holds_counts_only(built: Built) -> None:
    summary = piped("audit", "report", str(built.export), "--summary").stdout.splitlines()
    assert summary[0] == f"{built.log.size()} entries: 4 routed, 10 refused"
    assert all(" routed, " in s or s.startswith(("refused ", "shared without consent"))
               for s in summary)


def test_a_filter_naming_nothing_known_is_warned_about(built: Built) -> None:
    result = piped("audit", "report", str(built.export), "--purpose", "section-47-enquriy",
                   "--unit", "leeds-cc/front-dor", "--organisation", "leeds-cc")
    assert result.returncode == 0
    warnings = result.stderr.splitlines()
    assert warnings[0].startswith("warning: no unit 'leeds-cc/front-dor' is in the registry")
    assert warnings[1].startswith("warning: no purpose 'section-47-enquriy' is in the registry")
    assert "section-47-enquiry" in warnings[1]  # the purposes it could have meant
    assert len(warnings) == 2  # the organisation is known
