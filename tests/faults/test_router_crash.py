"""Crash safety of the router (wire spec 6.3), with real processes.

The router runs as ``infoshare broker run`` in a child process against a real
RabbitMQ node and a registry served over HTTP. It is made to die hard right
after committing a log entry and before publishing anything; after a restart
the log holds exactly one entry and the recipient exactly one delivery of
that message id. It also stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingConnection
from werkzeug.serving import make_server

from broker.host_config import BrokerConfig
from broker.node import RabbitNode
from broker.topology import Credentials, ManagementAPI, amqp_url_for, inbox_name, provision
from broker.transfer_log import TransferLog
from keys import (
    EncryptionKeyPair,
    NoteSigner,
    SigningKeyPair,
    new_keys,
    write_private_key,
    write_public_key,
)
from protocols.envelope import build_envelope, parse_notice
from protocols.model import Consent, GroundId, amqp_user
from registry.app import create_app
from registry.changes import KeyOwner
from registry.datadir import create_data_dir
from registry.store import Store

pytestmark = pytest.mark.faults

VHOST = "infoshare-test-crash"
SENDER = "leeds-cc/childrens-social-care"
RECIPIENT = "wy-police/intelligence-bureau"
PASSPHRASE = "test passphrase"
WY = Path(__file__).resolve().parents[2] / "protocols" / "definitions" / (
    "west-yorkshire-iisp-2016.yaml")


@dataclass
class Deployed:
    home: Path
    credentials: Credentials
    amqp_base: str
    sender: SigningKeyPair
    recipient: EncryptionKeyPair
    broker_public: bytes

    def connection(self, unit: str) -> BlockingConnection:
        user = amqp_user(unit)
        return BlockingConnection(pika.URLParameters(
            amqp_url_for(self.amqp_base, user, self.credentials.password(user), VHOST)))


@pytest.fixture(scope="module")
def deployed(rabbit_node: RabbitNode, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Deployed]:
    home = tmp_path_factory.mktemp("crash-home")
    now = datetime.now(UTC) - timedelta(minutes=5)
    data_dir, registry_key = create_data_dir(home / "registry", b"registry passphrase")
    store = Store(data_dir.database_url, signing_key=registry_key)
    store.initialise(actor="test")
    store.load_protocol(WY.read_text(encoding="utf-8"), actor="test")
    sender_keys, recipient_keys = new_keys("unit", SENDER), new_keys("unit", RECIPIENT)
    sender, recipient = sender_keys.signing, recipient_keys.encryption
    assert recipient is not None
    broker_keys = new_keys("broker", "broker")
    broker_key = broker_keys.signing
    store.register_keys(KeyOwner("broker", "broker"), broker_keys.files, now, actor="test")
    for addr, made in ((SENDER, sender_keys), (RECIPIENT, recipient_keys)):
        store.register_keys(KeyOwner("unit", addr), made.files, now, actor="test")
    _, token = store.create_token("agency", "router", actor="test")

    app = create_app({"REGISTRY_STORE": store, "SECRET_KEY": data_dir.session_secret()})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    credentials = Credentials(home / "credentials.json")
    # Users are node-wide: the other modules' vhosts use the same unit names.
    rabbit_admin = ("guest", "guest")
    provision(rabbit_node.management_url, *rabbit_admin, store.directory(), credentials,
              vhost=VHOST)
    amqp_base = f"amqp://{rabbit_node.config.host}:{rabbit_node.config.amqp_port}"
    write_public_key(home / "broker.signing.pub", broker_key.public)
    write_private_key(home / "broker.signing.key", kind="signing", owner="broker",
                      private=broker_key.seed, public=broker_key.public,
                      passphrase=PASSPHRASE.encode())
    (home / "registry.token").write_text(token + "\n")
    (home / "registry.token").chmod(0o600)
    BrokerConfig(home=home, origin="crash.test.example/transfer-log", amqp_urls=(amqp_base,),
                 management_url=rabbit_node.management_url, vhost=VHOST, tls_ca=None,
                 registry_url=f"http://127.0.0.1:{server.server_port}",
                 registry_key=data_dir.path / "registry-key.pub",
                 log_database={"url": f"sqlite:///{home / 'transfer-log.db'}"}).save()
    yield Deployed(home, credentials, amqp_base, sender, recipient, broker_key.public)
    server.shutdown()
    # Users are node-wide: leave none behind for the other modules.
    api = ManagementAPI(rabbit_node.management_url, *rabbit_admin)
    api.delete(f"/api/vhosts/{VHOST}")
    for user in credentials.users():
        if not api.get(f"/api/users/{user}/permissions"):
            api.delete(f"/api/users/{user}")


def _router(d: Deployed, **env: str) -> subprocess.Popen[bytes]:
    """``infoshare broker run`` in a child process, once it is ready to route."""
    out = d.home / f"router-{time.monotonic_ns()}.log"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "infoshare.cli", "-v", "broker", "run", "--home", str(d.home)],
            env={**os.environ, "INFOSHARE_PASSPHRASE": PASSPHRASE, **env},
            stdout=f, stderr=subprocess.STDOUT,
        )
    proc.output = out  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    # The router says so once its signal handlers are in place and it consumes.
    while b"consuming" not in out.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"router did not start:\n{out.read_text()}")
        time.sleep(0.05)
    return proc


def _referral(d: Deployed) -> tuple[bytes, str]:
    body, env = build_envelope(
        kind="referral", protocol="wy-iisp-2016", purpose="police-intelligence", sender=SENDER,
        recipient=RECIPIENT, record={"identity": {"ref": "X-1"}}, reasons="test",
        sender_key=d.sender, recipient_key=d.recipient.public, created_at=datetime.now(UTC),
        consent=Consent("not_sought", GroundId("serious-crime")), subject_informed=False)
    return body, env.header.message_id


def _publish(d: Deployed, body: bytes) -> None:
    conn = d.connection(SENDER)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("infoshare.submit", SENDER, body, pika.BasicProperties(
            user_id=amqp_user(SENDER), delivery_mode=2, type="envelope"), mandatory=True)
    finally:
        conn.close()


def _drain(d: Deployed, unit: str, settle: float) -> list[tuple[Any, bytes]]:
    """Everything that reaches ``unit``'s inbox until it has been quiet for ``settle`` s."""
    conn = d.connection(unit)
    got: list[tuple[Any, bytes]] = []
    try:
        ch = conn.channel()
        quiet_since = time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() - quiet_since < settle and time.monotonic() < deadline:
            method, props, body = ch.basic_get(inbox_name(unit), auto_ack=True)
            if method is None:
                time.sleep(0.1)
                continue
            got.append((props, body))
            quiet_since = time.monotonic()
    finally:
        conn.close()
    return got


def _log(d: Deployed) -> TransferLog:
    return TransferLog.open(f"sqlite:///{d.home / 'transfer-log.db'}",
                            signer=NoteSigner("test", SigningKeyPair.generate()),
                            origin="test")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_kill_between_append_and_publish_leaves_one_entry_and_one_delivery(
        deployed: Deployed) -> None:
    body, mid = _referral(deployed)
    crashing = _router(deployed, INFOSHARE_ROUTER_FAULT="after_append")
    try:
        _publish(deployed, body)
        status = crashing.wait(timeout=60)
    finally:
        if crashing.poll() is None:
            crashing.kill()
    assert status == 137, crashing.output.read_text()  # type: ignore[attr-defined]
    log = _log(deployed)
    assert log.size() == 1
    assert log.entry(0).message_id == mid and log.entry(0).decision == "routed"
    assert _drain(deployed, RECIPIENT, settle=1.0) == []

    router = _router(deployed)
    try:
        envelopes = [(p, b) for p, b in _drain(deployed, RECIPIENT, settle=3.0)
                     if p.type == "envelope"]
        notices = [parse_notice(b, deployed.broker_public)
                   for p, b in _drain(deployed, SENDER, settle=1.0) if p.type == "notice"]
    finally:
        assert _stop(router) == 0
    assert [b for _, b in envelopes] == [body]
    assert envelopes[0][0].headers["infoshare-seq"] == 0
    assert [(n.message_id, n.decision, n.seq) for n in notices] == [(mid, "routed", 0)]
    assert log.size() == 1
    log.close()


def test_router_stops_cleanly_on_sigterm_and_loses_nothing(deployed: Deployed) -> None:
    router = _router(deployed)
    sent = []
    try:
        for _ in range(20):
            body, mid = _referral(deployed)
            _publish(deployed, body)
            sent.append(mid)
    finally:
        assert _stop(router) == 0
    # Whatever the router had not finished comes back to the next one.
    router = _router(deployed)
    try:
        delivered = {p.message_id for p, _ in _drain(deployed, RECIPIENT, settle=3.0)
                     if p.type == "envelope"}
    finally:
        assert _stop(router) == 0
    log = _log(deployed)
    routed = [log.entry(s) for s in range(log.size())]
    assert {e.message_id for e in routed} >= set(sent)
    assert len([e for e in routed if e.message_id in sent]) == len(sent)
    log.close()
    # The inbox holds what both runs delivered: every message, by id, at least once.
    assert delivered == set(sent)
