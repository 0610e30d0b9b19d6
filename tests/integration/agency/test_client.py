"""The agency client against a real RabbitMQ node, with the test playing the router.

The topology is provisioned in the module's own vhost; no router runs. The
:class:`HandRouter` below takes envelopes from ``infoshare.ingress`` as the
broker's user, decides with the real ``protocols.policy.decide`` (so what the
client sends must pass the broker's checks), forwards the body unchanged to
``infoshare.deliver`` and publishes a signed notice to the sender.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from click.testing import CliRunner
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

import agency.client_cli
from agency.bundle import Bundle, write_bundle
from agency.client import AgencyClient, Received
from agency.client_state import RECEIPT_PENDING, RECEIPT_SENT
from agency.errors import ConnectionFailed, LocalRefusal, PublishFailed
from broker.topology import (
    DELIVER,
    Credentials,
    ManagementAPI,
    amqp_url_for,
    inbox_name,
    ingress_name,
    provision,
)
from keys import (
    EncryptionKeyPair,
    SigningKeyPair,
    b64decode,
    b64encode,
    key_id,
    public_key_text,
    write_private_key,
)
from protocols.envelope import (
    MAX_BODY_BYTES,
    Notice,
    ParsedEnvelope,
    build_envelope,
    build_notice,
    open_payload,
    parse_envelope,
)
from protocols.loader import ProtocolFile
from protocols.model import (
    Consent,
    Directory,
    GroundId,
    KeyRecord,
    Manager,
    OrgId,
    amqp_user,
)
from protocols.policy import LoggedMessage, decide

pytestmark = pytest.mark.integration

Connect = Callable[[str, str, str], BlockingConnection]

VHOST = "infoshare-test-client"
BROKER = "infoshare-broker"
PROTOCOL = "wy-iisp-2016"
POLICE = "wy-police/safeguarding-hub"
DOOR = "leeds-cc/front-door"
SCHOOL = "leeds-cc/education-safeguarding"
EARLY_HELP = "leeds-cc/early-help"
INTEL = "wy-police/intelligence-bureau"
KEYLESS = "bradford-mdc/front-door"  # registered, with no keys
UNITS = (POLICE, DOOR, SCHOOL, EARLY_HELP, INTEL)
#: Personal data of the kind a record holds: it must reach the record file and nowhere else.
SECRET = "Jane Example-Secret"
RECORD = {"identity": {"name": SECRET, "dob": "2015-03-01"},
          "concern": {"summary": f"bruising seen at school on {SECRET}"}}
NOT_SOUGHT = Consent("not_sought", GroundId("child-significant-harm"))


@dataclass(frozen=True)
class World:
    directory: Directory
    credentials: Credentials
    signing: dict[str, SigningKeyPair]
    encryption: dict[str, EncryptionKeyPair]
    manager: SigningKeyPair
    broker_key: SigningKeyPair
    amqp_base: str


def _unit_key(owner: str, use: str, public: bytes, since: datetime) -> KeyRecord:
    return KeyRecord(key_id=key_id(public), holder="unit", owner=owner, use=use,  # type: ignore[arg-type]
                     public=public, valid_from=since)


@pytest.fixture(scope="module")
def world(management: ManagementAPI, wy_protocol: ProtocolFile, amqp_base: str,
          vhost_factory: Callable[[str], Credentials]) -> World:
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    signing = {a: SigningKeyPair.generate() for a in UNITS}
    encryption = {a: EncryptionKeyPair.generate() for a in UNITS}
    manager = SigningKeyPair.generate()
    records = [_unit_key(a, "signing", signing[a].public, since) for a in UNITS]
    records += [_unit_key(a, "encryption", encryption[a].public, since) for a in UNITS]
    records.append(KeyRecord(key_id=manager.key_id, holder="manager", owner="leeds-cc",
                             use="signing", public=manager.public, valid_from=since,
                             manager="leeds-cc-mgr-01"))
    directory = Directory(version=3, issued_at=since, organisations=wy_protocol.organisations,
                          protocols=(wy_protocol.protocol,), keys=tuple(records),
                          managers=(Manager("leeds-cc-mgr-01", OrgId("leeds-cc"), "Head"),))
    credentials = vhost_factory(VHOST)
    provision(management.base_url, "guest", "guest", directory, credentials, vhost=VHOST)
    return World(directory, credentials, signing, encryption, manager,
                 SigningKeyPair.generate(), amqp_base)


@pytest.fixture(autouse=True)
def empty_queues(world: World, management: ManagementAPI) -> Iterator[None]:
    """Every test starts and ends with ingress and the inboxes empty."""
    def purge() -> None:
        for queue in (*(ingress_name(u.address) for u in world.directory.units()),
                      *(inbox_name(u.address) for u in world.directory.units())):
            management.delete(f"/api/queues/{VHOST}/{queue}/contents")
    purge()
    yield
    purge()


# --- the router, played by hand --------------------------------------------------------


@dataclass
class HandRouter:
    """Ingress -> decide -> deliver + notice, one message at a time, as the broker user."""

    channel: BlockingChannel
    directory: Directory
    key: SigningKeyPair
    log: list[LoggedMessage] = field(default_factory=list)
    seq: int = 0

    def find(self, message_id: str) -> Sequence[LoggedMessage]:
        return [e for e in self.log if e.message_id == message_id]

    def take(self) -> tuple[bytes, pika.BasicProperties] | None:
        """The next message in any unit's ingress queue."""
        for unit in self.directory.units():
            method, props, body = self.channel.basic_get(ingress_name(unit.address),
                                                         auto_ack=True)
            if method is not None:
                return body, props
        return None

    def take_all(self) -> list[tuple[bytes, pika.BasicProperties]]:
        out = []
        while (got := self.take()) is not None:
            out.append(got)
        return out

    def route(self) -> tuple[ParsedEnvelope, str | None]:
        """Decide on the next ingress message; returns it and the refusal reason, if any."""
        got = self.take()
        assert got is not None, "nothing in ingress"
        body, props = got
        env = parse_envelope(body)
        now = datetime.now(UTC).replace(microsecond=0)
        decision = decide(env.submission(props.user_id), self.directory, self, now)
        h = env.header
        seq = self.seq
        self.seq += 1
        self.log.append(LoggedMessage(h.message_id, env.header_sha256, h.kind,
                                      decision.decision, decision.reason, h.protocol,
                                      h.purpose, h.sender, h.recipient))
        if decision.routed:
            self.forward(body, h.recipient, seq)
        self.notify(props.user_id, Notice(h.message_id, decision.decision,
                                          None if decision.reason is None
                                          else decision.reason.value, seq, now))
        return env, None if decision.reason is None else decision.reason.value

    def forward(self, body: bytes, recipient: str, seq: int = 0) -> None:
        self.channel.basic_publish(DELIVER, recipient, body, pika.BasicProperties(
            delivery_mode=2, content_type="application/json", type="envelope",
            message_id=parse_envelope(body).header.message_id,
            headers={"infoshare-seq": seq, "infoshare-leaf": "00" * 32}), mandatory=True)

    def notify(self, user_id: str, notice: Notice, key: SigningKeyPair | None = None) -> None:
        sender = next(u.address for u in self.directory.units()
                      if amqp_user(u.address) == user_id)
        self.channel.basic_publish(DELIVER, sender, build_notice(notice, key or self.key),
                                   pika.BasicProperties(delivery_mode=2, type="notice",
                                                        content_type="application/json"),
                                   mandatory=True)


@pytest.fixture
def router(world: World, connect: Connect) -> HandRouter:
    channel = connect(BROKER, world.credentials.password(BROKER), VHOST).channel()
    channel.confirm_delivery()
    return HandRouter(channel, world.directory, world.broker_key)


Make = Callable[..., AgencyClient]


@pytest.fixture
def make_client(world: World, tmp_path: Path) -> Iterator[Make]:
    """``make_client(address)``: a client with its own state; a second call with the same
    address is the same unit after a restart (same state directory)."""
    made: list[AgencyClient] = []

    def _make(address: str, **overrides: Any) -> AgencyClient:
        user = amqp_user(address)
        args: dict[str, Any] = dict(
            unit=address,
            amqp_url=amqp_url_for(world.amqp_base, user, world.credentials.password(user),
                                  VHOST),
            signing_key=world.signing[address], encryption_keys=[world.encryption[address]],
            directory=lambda: world.directory, broker_key=world.broker_key.public,
            state_dir=tmp_path / user / "state")
        args.update(overrides)
        client = AgencyClient(**args)
        made.append(client)
        return client

    yield _make
    for client in made:
        client.close()


def _referral(client: AgencyClient, **overrides: Any) -> Any:
    args: dict[str, Any] = dict(kind="referral", protocol=PROTOCOL,
                                purpose="safeguarding-referral", recipient=DOOR, record=RECORD,
                                reasons=f"risk of significant harm to {SECRET}",
                                consent=NOT_SOUGHT, subject_informed=False)
    args.update(overrides)
    return client.send(**args)


def _receive(client: AgencyClient, out: Path, count: int) -> list[Received]:
    """Take exactly ``count`` deliveries (envelopes and notices); the idle bound is a
    safety net, not an expectation."""
    return client.receive(out, max_messages=count, idle_timeout=10.0)


def _state_bytes(client: AgencyClient) -> bytes:
    return b"".join(p.read_bytes() for p in client.state_dir.iterdir() if p.is_file())


# --- sending and receiving -------------------------------------------------------------


def test_a_referral_goes_through_and_is_acknowledged(
        make_client: Make, router: HandRouter, world: World, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    police, door = make_client(POLICE), make_client(DOOR)
    sent = _referral(police)

    body, props = router.take() or pytest.fail("nothing published")
    assert (props.user_id, props.type, props.delivery_mode, props.content_type,
            props.message_id) == (amqp_user(POLICE), "envelope", 2, "application/json",
                                  sent.message_id)
    env = parse_envelope(body)
    assert env.header_sha256 == sent.header_sha256
    router.forward(body, DOOR, seq=0)
    router.notify(props.user_id, Notice(sent.message_id, "routed", None, 0,
                                        datetime.now(UTC).replace(microsecond=0)))

    out = tmp_path / "door-inbox"
    [got] = _receive(door, out, 1)
    assert (got.status, got.kind, got.sender, got.purpose, got.seq) == (
        "accepted", "referral", POLICE, "safeguarding-referral", 0)
    assert got.path == out / f"{sent.message_id}.json"
    assert stat.S_IMODE(os.stat(got.path).st_mode) == 0o600
    doc = json.loads(got.path.read_text())
    assert doc["payload"]["record"] == RECORD
    assert doc["payload"]["reasons"] == f"risk of significant harm to {SECRET}"
    assert doc["header"]["header_sha256"] == sent.header_sha256
    assert doc["header"]["consent"] == {"status": "not_sought",
                                        "ground": "child-significant-harm"}
    assert [p.name for p in out.iterdir()] == [got.path.name]  # no temporary file left

    # The receipt went to submit: signed by the door, sealed to the police, bound
    # to the referral, and one the broker's policy routes.
    rbody, rprops = router.take() or pytest.fail("no receipt published")
    receipt = parse_envelope(rbody)
    h = receipt.header
    assert (rprops.user_id, h.kind, h.sender, h.recipient, h.in_reply_to, h.purpose) == (
        amqp_user(DOOR), "receipt", DOOR, POLICE, sent.message_id, "safeguarding-referral")
    opened = open_payload(receipt, world.encryption[POLICE])
    assert opened.record == {"received": sent.message_id, "header_sha256": sent.header_sha256}
    router.log.append(LoggedMessage(env.header.message_id, env.header_sha256, "referral",
                                    "routed", None, PROTOCOL, "safeguarding-referral", POLICE,
                                    DOOR))
    assert decide(receipt.submission(rprops.user_id), world.directory, router,
                  datetime.now(UTC)).routed
    assert door.store.receipt_state(sent.message_id) == RECEIPT_SENT
    assert door.store.sent(h.message_id) == ("receipt", receipt.header_sha256)

    # The police see the broker's notice.
    police.receive(tmp_path / "police-inbox", max_messages=1, idle_timeout=10.0)
    [notice] = police.notices(sent.message_id)
    assert (notice.decision, notice.reason, notice.seq) == ("routed", None, 0)
    assert police.store.sent(sent.message_id) == ("referral", sent.header_sha256)

    # Codes and ids only, outside the record file.
    assert SECRET not in caplog.text
    assert SECRET.encode() not in _state_bytes(door)
    assert SECRET.encode() not in _state_bytes(police)


def test_units_publish_with_their_own_address_as_routing_key(
        make_client: Make, router: HandRouter, tmp_path: Path) -> None:
    # Wire spec 5: each unit has its own ingress queue, which its address as key reaches.
    police, door = make_client(POLICE), make_client(DOOR)
    sent = _referral(police)
    method, props, body = router.channel.basic_get(ingress_name(POLICE), auto_ack=True)
    assert method is not None, "nothing published"
    assert (method.exchange, method.routing_key, props.message_id) == (
        "infoshare.submit", POLICE, sent.message_id)
    router.forward(body, DOOR)
    _receive(door, tmp_path / "door-inbox", 1)  # accepts it and sends the receipt
    method, _, receipt = router.channel.basic_get(ingress_name(DOOR), auto_ack=True)
    assert method is not None, "no receipt published"
    assert method.routing_key == DOOR and parse_envelope(receipt).header.kind == "receipt"


def test_an_envelope_over_the_wire_limit_is_refused_locally_as_too_large(
        make_client: Make, router: HandRouter) -> None:
    police = make_client(POLICE)
    with pytest.raises(LocalRefusal) as caught:
        _referral(police, record={"concern": {"summary": "x" * (MAX_BODY_BYTES // 4 * 3)}})
    assert caught.value.reason == "too_large"
    # The last gate before RabbitMQ, which receipts from the outbox pass too.
    with pytest.raises(LocalRefusal) as caught:
        police._publish(b" " * (MAX_BODY_BYTES + 1), str(uuid.uuid4()))
    assert caught.value.reason == "too_large"
    assert router.take() is None
    assert police.store._query("SELECT count(*) FROM sent") == [(0,)]


def test_request_response_and_receipts_pass_the_broker_policy(
        make_client: Make, router: HandRouter, tmp_path: Path) -> None:
    police, door = make_client(POLICE), make_client(DOOR)
    request = police.send(kind="request", protocol=PROTOCOL, purpose="section-47-enquiry",
                          recipient=DOOR, record={"identity": {"ref": "WYP-C-778"}},
                          reasons="strategy discussion", consent=NOT_SOUGHT,
                          subject_informed=False)
    assert router.route()[1] is None
    assert [r.status for r in _receive(door, tmp_path / "door", 1)] == ["accepted"]
    assert router.route()[1] is None  # the door's receipt for the request

    # The door's local log knows the request, so the response passes check 12.
    response = door.send(kind="response", protocol=PROTOCOL, purpose="section-47-enquiry",
                         recipient=POLICE, in_reply_to=request.message_id,
                         record={"household": {"members": 4}}, reasons="relevant",
                         consent=NOT_SOUGHT, subject_informed=False)
    env, reason = router.route()
    assert reason is None and env.header.message_id == response.message_id
    # The police take: the notice of the request, the door's receipt, its response.
    results = _receive(police, tmp_path / "police", 3)
    assert [(r.status, r.kind) for r in results] == [("accepted", "receipt"),
                                                     ("accepted", "response")]
    env, reason = router.route()  # the police's receipt for the response, none for the receipt
    assert (env.header.kind, env.header.in_reply_to, reason) == (
        "receipt", response.message_id, None)
    assert router.take() is None
    assert [n.decision for n in police.notices(request.message_id)] == ["routed"]


def test_a_redelivered_message_is_processed_once(
        make_client: Make, router: HandRouter, tmp_path: Path) -> None:
    police, door = make_client(POLICE), make_client(DOOR)
    sent = _referral(police)
    body, _ = router.take() or pytest.fail("nothing published")
    router.forward(body, DOOR)
    router.forward(body, DOOR)  # the router crashed after publishing, and published again
    out = tmp_path / "inbox"
    results = _receive(door, out, 2)
    assert [r.status for r in results] == ["accepted", "duplicate"]
    assert [p.name for p in out.iterdir()] == [f"{sent.message_id}.json"]
    receipts = router.take_all()
    assert len(receipts) == 1

    # After a restart the message id is still known: not written again.
    (out / f"{sent.message_id}.json").unlink()
    router.forward(body, DOOR)
    restarted = make_client(DOOR)
    assert [r.status for r in _receive(restarted, out, 1)] == ["duplicate"]
    assert list(out.iterdir()) == []
    assert router.take_all() == []


def _tamper(body: bytes, field_name: str, change: Callable[[bytes], bytes]) -> bytes:
    doc = json.loads(body)
    doc[field_name] = b64encode(change(b64decode(doc[field_name])))
    return json.dumps(doc, separators=(",", ":")).encode()


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


@pytest.mark.parametrize(("tamper", "code"), [
    (lambda b: _tamper(b, "payload", _flip_last), "payload_mismatch"),
    (lambda b: _tamper(b, "header", lambda h: h.replace(b'"subject_informed":false',
                                                        b'"subject_informed":true')),
     "bad_signature"),
    (lambda b: b[:-2], "malformed"),
], ids=["ciphertext", "header", "truncated"])
def test_a_tampered_envelope_is_rejected_by_code_and_does_not_block_the_real_one(
        make_client: Make, router: HandRouter, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, tamper: Callable[[bytes], bytes],
        code: str) -> None:
    caplog.set_level("DEBUG")
    police, door = make_client(POLICE), make_client(DOOR)
    sent = _referral(police)
    body, _ = router.take() or pytest.fail("nothing published")
    bad = tamper(body)
    router.channel.basic_publish(DELIVER, DOOR, bad, pika.BasicProperties(type="envelope"),
                                 mandatory=True)
    out = tmp_path / "inbox"
    [rejected] = _receive(door, out, 1)
    assert (rejected.status, rejected.reason, rejected.path) == ("rejected", code, None)
    assert list(out.iterdir()) == []
    assert router.take_all() == []  # no receipt for what was not opened
    assert f"reason={code}" in caplog.text
    assert SECRET not in caplog.text

    router.forward(body, DOOR)
    [accepted] = _receive(door, out, 1)
    assert (accepted.status, accepted.message_id) == ("accepted", sent.message_id)


def test_an_envelope_from_an_unregistered_key_is_rejected(
        make_client: Make, router: HandRouter, world: World, tmp_path: Path) -> None:
    impostor = make_client(POLICE, signing_key=SigningKeyPair.generate(),
                           state_dir=tmp_path / "impostor")
    # It passes no local check (key_not_valid); the test publishes it by hand.
    with pytest.raises(LocalRefusal) as caught:
        _referral(impostor)
    assert caught.value.reason == "key_not_valid"
    body, _ = build_envelope(
        kind="referral", protocol=PROTOCOL, purpose="safeguarding-referral", sender=POLICE,
        recipient=DOOR, record=RECORD, reasons="x", sender_key=SigningKeyPair.generate(),
        recipient_key=world.encryption[DOOR].public,
        created_at=datetime.now(UTC).replace(microsecond=0), consent=NOT_SOUGHT,
        subject_informed=False)
    router.forward(body, DOOR)
    [got] = _receive(make_client(DOOR), tmp_path / "inbox", 1)
    assert (got.status, got.reason) == ("rejected", "key_not_valid")


def test_notices_are_verified_and_stored_once(make_client: Make, router: HandRouter,
                                              world: World, tmp_path: Path) -> None:
    school = make_client(SCHOOL)
    # precheck=False: let the broker refuse it, as the demo does.
    sent = school.send(kind="referral", protocol=PROTOCOL, purpose="early-help",
                       recipient=EARLY_HELP, record={"education": {"attendance": "falling"}},
                       reasons="attendance", consent=NOT_SOUGHT, subject_informed=True,
                       precheck=False)
    _, reason = router.route()
    assert reason == "consent_required"
    user = amqp_user(SCHOOL)
    at = datetime.now(UTC).replace(microsecond=0)
    router.notify(user, Notice(sent.message_id, "refused", "consent_required", 0, at))
    router.notify(user, Notice(sent.message_id, "routed", None, 99, at),
                  key=SigningKeyPair.generate())  # forged
    assert _receive(school, tmp_path / "inbox", 3) == []
    [notice] = school.notices(sent.message_id)
    assert (notice.decision, notice.reason, notice.seq) == ("refused", "consent_required", 0)
    assert school.notices() == [notice]
    assert school.notices("3f0a3f7e-6a6c-4d9e-8f43-5d8a2b1c9e70") == []


def test_messages_of_unknown_type_are_acked_and_ignored(
        make_client: Make, router: HandRouter, tmp_path: Path) -> None:
    router.channel.basic_publish(DELIVER, DOOR, b"hello", pika.BasicProperties(type="other"),
                                 mandatory=True)
    door = make_client(DOOR)
    assert _receive(door, tmp_path / "inbox", 1) == []
    assert door.receive(tmp_path / "inbox", idle_timeout=0.3) == []


# --- local refusals --------------------------------------------------------------------


@pytest.mark.parametrize(("sender", "overrides", "reason"), [
    (SCHOOL, dict(purpose="early-help", recipient=EARLY_HELP,
                  record={"education": {"attendance": "falling"}}, subject_informed=True),
     "consent_required"),
    (SCHOOL, dict(record={"intelligence": {"note": "x"}}), "category_not_permitted"),
    (SCHOOL, dict(recipient=INTEL), "recipient_not_permitted"),
    (SCHOOL, dict(recipient=KEYLESS), "recipient_key_not_valid"),
    (SCHOOL, dict(purpose="no-such-purpose"), "unknown_purpose"),
    (SCHOOL, dict(consent=Consent("refused", GroundId("child-significant-harm"))),
     "approval_required"),
    (DOOR, dict(kind="response", purpose="section-47-enquiry", recipient=POLICE,
                in_reply_to=str(uuid.uuid4())), "no_matching_request"),
    (DOOR, dict(purpose="dvds-right-to-know", recipient=POLICE,
                consent=Consent("not_sought", GroundId("adult-serious-harm"))),
     "approval_required"),
], ids=["no-consent", "category", "recipient-role", "recipient-key", "purpose",
        "refused-consent-unapproved", "reply-to-nothing", "dvds-unapproved"])
def test_what_the_broker_would_refuse_is_refused_locally_and_not_published(
        make_client: Make, router: HandRouter, sender: str, overrides: dict[str, Any],
        reason: str) -> None:
    client = make_client(sender)
    with pytest.raises(LocalRefusal) as caught:
        _referral(client, **overrides)
    assert caught.value.reason == reason
    assert router.take() is None
    assert client.store._query("SELECT count(*) FROM sent") == [(0,)]


def test_a_manager_approval_lets_it_through(make_client: Make, router: HandRouter,
                                            world: World) -> None:
    door = make_client(DOOR)
    sent = _referral(door, purpose="dvds-right-to-know", recipient=POLICE,
                     consent=Consent("not_sought", GroundId("adult-serious-harm")),
                     approvals=[world.manager])
    env, reason = router.route()
    assert reason is None and env.header.message_id == sent.message_id
    assert [s.key for s in env.signatures] == [world.signing[DOOR].key_id,
                                               world.manager.key_id]


# --- crashes, restarts and lost connections --------------------------------------------


def test_a_receipt_left_pending_is_sent_on_the_next_run(
        make_client: Make, router: HandRouter, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    police = make_client(POLICE)
    sent = _referral(police)
    body, _ = router.take() or pytest.fail("nothing published")
    router.forward(body, DOOR)

    door = make_client(DOOR)

    def lost(body: bytes, message_id: str) -> None:
        raise PublishFailed("connection_lost")

    monkeypatch.setattr(door, "_publish", lost)
    [got] = _receive(door, tmp_path / "inbox", 1)
    assert got.status == "accepted"
    assert router.take() is None
    assert door.store.receipt_state(sent.message_id) == RECEIPT_PENDING
    door.close()

    restarted = make_client(DOOR)
    assert restarted.receive(tmp_path / "inbox", idle_timeout=0.3) == []
    rbody, _ = router.take() or pytest.fail("the pending receipt was not sent")
    receipt = parse_envelope(rbody)
    assert (receipt.header.kind, receipt.header.in_reply_to) == ("receipt", sent.message_id)
    assert restarted.store.receipt_state(sent.message_id) == RECEIPT_SENT
    assert restarted.store.outbox() == []


def test_stopping_after_max_messages_hands_nothing_back(
        make_client: Make, router: HandRouter, connect: Connect, world: World,
        tmp_path: Path) -> None:
    police = make_client(POLICE)
    for _ in range(3):
        _referral(police)
        body, _ = router.take() or pytest.fail("nothing published")
        router.forward(body, DOOR)
    door = make_client(DOOR)
    assert [r.status for r in _receive(door, tmp_path / "inbox", 2)] == ["accepted"] * 2
    # The third was never delivered to the client, so it is not marked redelivered
    # (every hand-back would count towards the inbox's delivery limit).
    user = amqp_user(DOOR)
    channel = connect(user, world.credentials.password(user), VHOST).channel()
    method, props, _ = channel.basic_get(inbox_name(DOOR), auto_ack=False)
    assert method is not None and method.redelivered is False
    assert (props.headers or {}).get("x-delivery-count", 0) == 0
    channel.basic_nack(method.delivery_tag, requeue=True)


def test_a_registry_outage_costs_a_waiting_message_at_most_one_delivery(
        make_client: Make, router: HandRouter, connect: Connect, world: World,
        tmp_path: Path) -> None:
    police = make_client(POLICE)
    _referral(police)
    body, _ = router.take() or pytest.fail("nothing published")
    router.forward(body, DOOR)

    class RegistryAway(Exception):
        pass

    def away() -> Directory:
        raise RegistryAway

    door = make_client(DOOR, directory=away)
    for _ in range(5):  # a recipient trying again while the registry is away
        with pytest.raises(RegistryAway):
            door.receive(tmp_path / "inbox", idle_timeout=0.3)
    # Taken once (the first try could not know the registry was away), handed back
    # once, and not taken again: the inbox's delivery limit is not spent on an outage.
    user = amqp_user(DOOR)
    channel = connect(user, world.credentials.password(user), VHOST).channel()
    method, props, _ = channel.basic_get(inbox_name(DOOR), auto_ack=False)
    assert method is not None
    assert (props.headers or {}).get("x-delivery-count", 0) <= 1
    channel.basic_nack(method.delivery_tag, requeue=True)


def test_send_reconnects_after_the_server_closed_the_connection(
        make_client: Make, router: HandRouter, management: ManagementAPI) -> None:
    police = make_client(POLICE)
    _referral(police)
    assert router.take() is not None
    # Every connection of the police unit is closed by the server.
    user = amqp_user(POLICE)
    assert management.delete(f"/api/connections/username/{user}")
    sent = _referral(police)
    bodies = router.take_all()
    assert bodies, "the second message was not published"
    assert {parse_envelope(b).header.message_id for b, _ in bodies} == {sent.message_id}


def test_a_wrong_password_is_a_connection_error_not_a_retry_loop(
        make_client: Make, world: World) -> None:
    user = amqp_user(POLICE)
    client = make_client(POLICE, amqp_url=amqp_url_for(world.amqp_base, user, "wrong", VHOST))
    with pytest.raises(ConnectionFailed, match="refused"):
        _referral(client)


def test_the_url_must_carry_the_units_own_user(world: World, tmp_path: Path) -> None:
    user = amqp_user(DOOR)
    with pytest.raises(ValueError, match=amqp_user(POLICE)):
        AgencyClient(unit=POLICE,  # type: ignore[arg-type]
                     amqp_url=amqp_url_for(world.amqp_base, user, "x", VHOST),
                     signing_key=world.signing[POLICE],
                     encryption_keys=[world.encryption[POLICE]],
                     directory=lambda: world.directory, broker_key=world.broker_key.public,
                     state_dir=tmp_path)


# --- the command line ------------------------------------------------------------------


@pytest.fixture
def cli_home(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A deployment home with key files for the school and the door; the registry is
    replaced by the test's directory (its HTTP client is tested with the registry)."""
    home = tmp_path / "home"
    keys_dir = home / "keys"
    keys_dir.mkdir(parents=True)
    monkeypatch.setenv("INFOSHARE_PASSPHRASE", "correct horse")
    for address in (SCHOOL, DOOR):
        stem = amqp_user(address)
        s, e = world.signing[address], world.encryption[address]
        write_private_key(keys_dir / f"{stem}.signing.key", kind="signing", owner=address,
                          private=s.seed, public=s.public, passphrase=b"correct horse")
        write_private_key(keys_dir / f"{stem}.encryption.key", kind="encryption",
                          owner=address, private=e.secret, public=e.public,
                          passphrase=b"correct horse")
    registry_key = SigningKeyPair.generate()
    org = SCHOOL.split("/")[0]
    assert DOOR.startswith(f"{org}/")
    units = {a: world.credentials.password(amqp_user(a)) for a in (SCHOOL, DOOR)}
    write_bundle(home / "bundle.json", Bundle(
        org=org, units=units, amqp_nodes=(world.amqp_base,), vhost=VHOST,
        registry_url="http://registry.invalid",
        registry_key=public_key_text(registry_key.public),
        broker_key=public_key_text(world.broker_key.public)))
    monkeypatch.setenv("INFOSHARE_TOKEN", "token")

    class Registry:
        def __init__(self, base_url: str, token: str, pinned_key: bytes) -> None:
            assert pinned_key == registry_key.public

        def directory(self) -> Directory:
            return world.directory

    monkeypatch.setattr(agency.client_cli, "RegistryClient", Registry)
    return home


def _cli(command: Any, *args: str | Path) -> Any:
    return CliRunner().invoke(command, [str(a) for a in args])


def test_cli_refusal_prints_the_code_and_exits_3(cli_home: Path, router: HandRouter,
                                                 tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"education": {"attendance": "falling"}}))
    result = _cli(agency.client_cli.send, "--home", cli_home, "--unit", SCHOOL,
                  "--keys", cli_home / "keys", "--kind", "referral", "--protocol", PROTOCOL,
                  "--purpose", "early-help", "--to", EARLY_HELP, "--record", record,
                  "--reasons", "attendance", "--consent", "not_sought",
                  "--ground", "child-significant-harm", "--subject-informed")
    assert result.exit_code == 3  # refused by policy
    assert "refused: consent_required" in result.output
    assert "Traceback" not in result.output and result.exc_info[0] is SystemExit
    assert router.take() is None


def test_cli_send_receive_and_notices(cli_home: Path, router: HandRouter,
                                      tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    record.write_text(json.dumps(RECORD))
    reasons = tmp_path / "reasons.txt"
    reasons.write_text(f"concern about {SECRET}")
    result = _cli(agency.client_cli.send, "--home", cli_home, "--unit", SCHOOL,
                  "--keys", cli_home / "keys", "--kind", "referral", "--protocol", PROTOCOL,
                  "--purpose", "safeguarding-referral", "--to", DOOR, "--record", record,
                  "--reasons-file", reasons, "--consent", "given", "--subject-informed")
    assert result.exit_code == 0, result.output
    message_id = result.output.split()[1]
    env, reason = router.route()
    assert reason is None and env.header.message_id == message_id

    out = tmp_path / "door-out"
    result = _cli(agency.client_cli.receive, "--home", cli_home, "--unit", DOOR,
                  "--keys", cli_home / "keys", "--out", out, "--max", "1", "--idle", "10")
    assert result.exit_code == 0, result.output
    assert f"accepted  {message_id} referral from {SCHOOL}" in result.output
    assert SECRET not in result.output
    assert json.loads((out / f"{message_id}.json").read_text())["payload"]["record"] == RECORD

    result = _cli(agency.client_cli.notices, "--home", cli_home, "--unit", SCHOOL,
                  "--keys", cli_home / "keys", "--message-id", message_id)
    assert result.exit_code == 0, result.output
    assert f"seq 0 {message_id} routed" in result.output


def test_cli_errors_are_one_line_without_traceback(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFOSHARE_PASSPHRASE", "x")
    (tmp_path / "keys").mkdir()
    result = _cli(agency.client_cli.receive, "--home", tmp_path / "nowhere", "--unit", DOOR,
                  "--keys", tmp_path / "keys")
    assert result.exit_code == 1
    assert "bundle.json not found" in result.output
    assert "Traceback" not in result.output
