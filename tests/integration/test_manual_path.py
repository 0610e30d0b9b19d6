"""The README's "Using it", run exactly as written, in order, in a fresh directory.

Its commands start a real RabbitMQ node (TLS only), a real registry served
over HTTP and a real router; a referral goes from Leeds to the police, and
the audit verifies the transfer log. Then the single-machine commands of
docs/operations.md run the same way, on what the README left: so neither
document can drift from the commands without this test failing.

The documents use fixed ports (5671, 15671, 8080), as an operator would; the
test says so plainly if another program holds one.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from doc_commands import Transcript, commands, ports_taken, run_commands, section

from broker.node import NodeError, RabbitNode

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PORTS = (5671, 15671, 8080)


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh HOME; whatever RabbitMQ node the documents leave running is stopped after."""
    taken = ports_taken(*PORTS)
    if taken:
        pytest.fail(f"the documents' commands need ports {taken}, which another program "
                    "holds on this machine", pytrace=False)
    home = tmp_path_factory.mktemp("home")
    yield home
    with contextlib.suppress(NodeError):
        RabbitNode.from_state(home / "infoshare-trial" / "rabbitmq").stop()


def _run(lines: list[str], home: Path) -> Transcript:
    # The user's PATH need not hold the project's command: the README adds it.
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if Path(p) != Path(sys.executable).parent)
    transcript = run_commands(lines, cwd=ROOT, home=home, env={"PATH": path})
    print(transcript.text)
    return transcript


def _between(text: str, command: str) -> str:
    """The output of the first command starting with ``command`` (up to the next one)."""
    start = text.index(f"$ {command}")
    start = text.index("\n", start) + 1
    end = text.find("\n$ ", start)
    return text[start:] if end < 0 else text[start:end + 1]


def test_the_readme_exchanges_a_referral_and_verifies_the_log(trial: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = commands(section(readme, "Using it"))
    assert lines, "the README's 'Using it' has no sh block"
    transcript = _run(lines, trial)
    text = transcript.text
    assert transcript.returncode == 0, text[-3000:]
    assert "Traceback" not in text

    # The registry records each change as the administrator whose token made it,
    # and serves at the address it prints.
    history = _between(text, "infoshare registry history")
    assert "Registered the signing and encryption keys of unit leeds-cc/childrens-social-care" \
        in history
    assert "IG officer, Leeds" in history
    assert "registry listening on http://127.0.0.1:8080" in text

    log_key = _between(text, "infoshare broker init").strip().splitlines()[-1]
    assert "/transfer-log+" in log_key
    sent = _between(text, "infoshare send")
    assert sent.startswith("sent ")
    message_id = sent.split()[1]
    received = _between(text, "infoshare receive")
    assert f"accepted  {message_id} referral from leeds-cc/childrens-social-care" in received
    assert "1 accepted" in received
    notices = _between(text, "infoshare notices")
    assert f"{message_id} routed" in notices
    assert _between(text, "infoshare audit verify").startswith("ok: 2 entries")
    assert "ok: every decision re-runs" in _between(text, "infoshare audit replay")
    report = _between(text, "infoshare audit report")
    assert "police-intelligence" in report
    # The record reached the police, and nowhere else in the trial directory.
    records = list((trial / "infoshare-trial" / "wy-police").rglob(f"{message_id}*.json"))
    assert records, "the record was not written to the recipient's inbox"
    assert (trial / "infoshare-trial" / "log-key.txt").read_text().strip() == log_key


def _sent_ids(text: str) -> list[str]:
    return [line.split()[1] for line in text.splitlines() if line.startswith("sent ")]


def test_the_operations_guide_runs_on_what_the_readme_left(trial: Path) -> None:
    if not (trial / "infoshare-trial" / "broker" / "broker.json").exists():
        pytest.fail("the README's commands did not leave a broker to operate", pytrace=False)
    guide = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    transcript = _run(commands(guide), trial)
    text = transcript.text
    assert transcript.returncode == 0, text[-3000:]
    assert "Traceback" not in text

    bradford, rotated, second_router = _sent_ids(text)
    police_inbox = trial / "infoshare-trial" / "wy-police" / "agencies" / (
        "wy-police.intelligence-bureau") / "inbox"
    for message_id in (bradford, rotated, second_router):
        assert (police_inbox / f"{message_id}.json").exists(), message_id
    # The revoked key is refused before anything is published, with status 3.
    assert "refused: key_not_valid\nexit status 3\n" in text
    # The restored log holds the tree of the checkpoint kept apart from it.
    assert _between(text, "infoshare audit verify restored-export").startswith("ok: ")
    assert (trial / "infoshare-trial" / "backups" / "registry.tar.gz").stat().st_size > 0
