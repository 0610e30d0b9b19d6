"""The folder integration survives kill -9: 200 files, the gateway killed 3 times while it
works, each file sent exactly once.

The Leeds gateway runs as ``infoshare agency serve`` (gunicorn, its courier
and folder thread inside); the police gateway and a real router run in this
process. After each kill the gateway is started again on the same home.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_world import CSC, PASSPHRASE, POLICE_INTEL, PROTOCOL, World, gateway_world

from broker.node import RabbitNode

pytestmark = [pytest.mark.faults, pytest.mark.integration]

FILES = 200
KILL_AT = (20, 80, 140)  # files moved out of the outbox when each kill happens


@pytest.fixture(scope="module")
def world(rabbit_node: RabbitNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with gateway_world(rabbit_node, tmp_path_factory.mktemp("gw-crash"),
                       "infoshare-test-gw-crash", setup_only=("leeds-cc",),
                       folder_units=(CSC,)) as w:
        yield w


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "INFOSHARE_PASSPHRASE": PASSPHRASE.decode()}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "infoshare.cli", "agency", "serve", "--home", str(home),
             "--port", str(_free_port()), "--threads", "2"],
            env=env, stdout=out, stderr=out, start_new_session=True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _moved(folder: Path) -> int:
    return sum(1 for p in (folder / "sent").glob("*.json")
               if not p.name.endswith(".status.json")) + sum(
        1 for p in (folder / "failed").glob("*.json") if not p.name.endswith(".status.json"))


def test_two_hundred_files_three_kills_each_sent_once(world: World, tmp_path: Path) -> None:
    home = world.leeds.home
    folder = home / "folders" / "leeds-cc.childrens-social-care"
    names = []
    for i in range(FILES):
        name = f"referral-{i:03d}.json"
        doc = {"kind": "referral", "protocol": PROTOCOL, "purpose": "police-intelligence",
               "recipient": POLICE_INTEL, "record": {"concern": {"n": i}},
               "reasons": f"file {i}", "consent": "not_sought", "ground": "serious-crime",
               "subject_informed": False, "case_reference": f"CASE-{i}"}
        tmp = folder / "outbox" / f".{name}.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, folder / "outbox" / name)
        names.append(name)
    log = tmp_path / "gateway.log"
    proc = _start(home, log)
    try:
        for at in KILL_AT:
            deadline = time.monotonic() + 120
            while _moved(folder) < at:
                assert proc.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, f"stuck at {_moved(folder)} files"
                time.sleep(0.02)
            _kill(proc)
            proc = _start(home, log)
        deadline = time.monotonic() + 180
        while True:
            statuses = [json.loads(p.read_text()) for p in (folder / "sent").glob(
                "*.status.json")]
            if len(statuses) == FILES and all(s["status"] in ("routed", "receipted")
                                              for s in statuses):
                break
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, (
                f"{len(statuses)} status files, {_moved(folder)} moved")
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            _kill(proc)
    assert not list((folder / "outbox").glob("*.json"))
    assert not list((folder / "failed").glob("*"))
    sent_ids = {s["message_id"] for s in statuses}
    assert len(sent_ids) == FILES
    entries = [json.loads(e) for e in world.transfer_log.entries()]
    from_leeds = [e for e in entries if e["sender"] == CSC and e["kind"] == "referral"]
    # Exactly one log entry per file: none lost, none sent twice.
    assert sorted(e["message_id"] for e in from_leeds) == sorted(sent_ids)
    assert all(e["decision"] == "routed" for e in from_leeds)
    assert "Traceback" not in log.read_text()
