"""The router against a real RabbitMQ node: every reason code end to end.

Each case publishes one envelope as a unit's AMQP user, then waits for the
signed notice in that unit's inbox and checks the transfer log: one entry,
with the decision and reason the case expects. Routed envelopes arrive at the
recipient's inbox unchanged, with ``infoshare-seq`` and ``infoshare-leaf``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingConnection

from broker.router import DirectoryHolder, Router
from broker.topology import Credentials, amqp_url_for, inbox_name, provision
from broker.transfer_log import TransferLog
from keys import EncryptionKeyPair, NoteSigner, SigningKeyPair, key_id
from protocols.envelope import Notice, build_envelope, parse_notice
from protocols.loader import ProtocolFile
from protocols.merkle import leaf_hash
from protocols.model import (
    Consent,
    Directory,
    GroundId,
    KeyRecord,
    Manager,
    Organisation,
    OrgId,
    ProtocolId,
    ProtocolStatus,
    Role,
    Unit,
    UnitId,
    amqp_user,
)

pytestmark = pytest.mark.integration

VHOST = "infoshare-test-router"
ORIGIN = "test.example/transfer-log"
P = "wy-iisp-2016"
SUSPENDED = "wy-iisp-2016-suspended"
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
SERIOUS_CRIME = Consent("not_sought", GroundId("serious-crime"))

LEEDS_CSC = "leeds-cc/childrens-social-care"
LEEDS_DOOR = "leeds-cc/front-door"
LEEDS_EH = "leeds-cc/early-help"
LEEDS_SCHOOL = "leeds-cc/education-safeguarding"
POLICE_HUB = "wy-police/safeguarding-hub"
POLICE_INTEL = "wy-police/intelligence-bureau"
CHARITY = "example-charity/helpline"
UNITS = (LEEDS_CSC, LEEDS_DOOR, LEEDS_EH, LEEDS_SCHOOL, POLICE_HUB, POLICE_INTEL, CHARITY)


@dataclass
class Keys:
    signing: SigningKeyPair = field(default_factory=SigningKeyPair.generate)
    encryption: EncryptionKeyPair = field(default_factory=EncryptionKeyPair.generate)


@dataclass
class World:
    source: list[Directory]  # source[0] is what the router's registry serves
    keys: dict[str, Keys]
    manager: SigningKeyPair
    broker_key: SigningKeyPair
    credentials: Credentials
    amqp_base: str
    log: TransferLog
    router: Router
    connections: dict[str, BlockingConnection] = field(default_factory=dict)
    stash: dict[str, list[tuple[Any, bytes]]] = field(default_factory=dict)

    @property
    def directory(self) -> Directory:
        return self.source[0]

    @directory.setter
    def directory(self, value: Directory) -> None:
        self.source[0] = value

    def channel(self, unit: str) -> Any:
        conn = self.connections.get(unit)
        if conn is None or not conn.is_open:
            user = amqp_user(unit)
            conn = BlockingConnection(pika.URLParameters(
                amqp_url_for(self.amqp_base, user, self.credentials.password(user), VHOST)))
            self.connections[unit] = conn
        ch = conn.channel()
        ch.confirm_delivery()
        return ch

    def publish(self, unit: str, body: bytes, *, user_id: str | None = None,
                message_id: str | None = None) -> None:
        ch = self.channel(unit)
        ch.basic_publish("infoshare.submit", unit, body, pika.BasicProperties(
            user_id=user_id or amqp_user(unit), delivery_mode=2,
            content_type="application/json", type="envelope", message_id=message_id),
            mandatory=True)
        ch.close()

    def take(self, unit: str, match: Callable[[Any, bytes], bool],
             timeout: float = 20.0) -> tuple[Any, bytes]:
        """The first message in ``unit``'s inbox that ``match``es; others are kept aside."""
        kept = self.stash.setdefault(unit, [])
        for i, (props, body) in enumerate(kept):
            if match(props, body):
                return kept.pop(i)
        ch = self.channel(unit)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                method, props, body = ch.basic_get(inbox_name(unit), auto_ack=True)
                if method is None:
                    time.sleep(0.05)
                    continue
                if match(props, body):
                    return props, body
                kept.append((props, body))
        finally:
            ch.close()
        raise AssertionError(f"nothing matching arrived at {unit} within {timeout}s")

    def notice(self, unit: str, message_id: str | None) -> Notice:
        def is_it(props: Any, body: bytes) -> bool:
            return props.type == "notice" and parse_notice(
                body, self.broker_key.public).message_id == message_id
        _, body = self.take(unit, is_it)
        return parse_notice(body, self.broker_key.public)

    def envelope(self, unit: str, message_id: str) -> tuple[Any, bytes]:
        return self.take(unit, lambda p, b: p.type == "envelope" and p.message_id == message_id)

    def build(self, sender: str = LEEDS_CSC, recipient: str = POLICE_INTEL, *,
              kind: str = "referral", protocol: str = P, purpose: str = "police-intelligence",
              record: dict[str, Any] | None = None,
              consent: Consent | None = SERIOUS_CRIME,
              subject_informed: bool = False, in_reply_to: str | None = None,
              signer: SigningKeyPair | None = None,
              countersigners: tuple[SigningKeyPair, ...] = (),
              recipient_key: bytes | None = None, created_at: datetime | None = None,
              message_id: str | None = None) -> tuple[bytes, str]:
        sender_keys = self.keys.get(sender) or Keys()
        rkeys = self.keys.get(recipient) or Keys()
        body, env = build_envelope(
            kind=kind, protocol=protocol, purpose=purpose, sender=sender, recipient=recipient,
            record={"identity": {"ref": "T-1"}} if record is None else record,
            reasons="test", sender_key=signer or sender_keys.signing,
            recipient_key=recipient_key or rkeys.encryption.public,
            created_at=created_at or datetime.now(UTC), consent=consent,
            subject_informed=subject_informed, in_reply_to=in_reply_to,
            countersigners=countersigners, message_id=message_id)
        return body, env.header.message_id


def _directory(wy: ProtocolFile, keys: dict[str, Keys], manager: SigningKeyPair,
               broker_key: SigningKeyPair) -> Directory:
    suspended = dataclasses.replace(wy.protocol, id=ProtocolId(SUSPENDED),
                                    status=ProtocolStatus.SUSPENDED)
    charity = Organisation(id=OrgId("example-charity"), name="Example Charity", sector="voluntary",
                           units=(Unit(OrgId("example-charity"), UnitId("helpline"), "Helpline",
                                       frozenset({Role("front-door")})),))
    records = [KeyRecord(key_id=broker_key.key_id, holder="broker", owner="broker", use="signing",
                         public=broker_key.public, valid_from=LONG_AGO),
               KeyRecord(key_id=manager.key_id, holder="manager", owner="leeds-cc",
                         use="signing", public=manager.public, valid_from=LONG_AGO,
                         manager="leeds-mgr-1")]
    for addr, k in keys.items():
        records.append(KeyRecord(key_id=k.signing.key_id, holder="unit", owner=addr,
                                 use="signing", public=k.signing.public, valid_from=LONG_AGO))
        records.append(KeyRecord(key_id=k.encryption.key_id, holder="unit", owner=addr,
                                 use="encryption", public=k.encryption.public,
                                 valid_from=LONG_AGO))
    return Directory(version=3, issued_at=datetime.now(UTC).replace(microsecond=0),
                     organisations=(*wy.organisations, charity),
                     protocols=(wy.protocol, suspended), keys=tuple(records),
                     managers=(Manager("leeds-mgr-1", OrgId("leeds-cc"), "Service manager"),))


@pytest.fixture(scope="module")
def world(rabbit_node: Any, management: Any, amqp_base: str, wy_protocol: ProtocolFile,
          vhost_factory: Callable[[str], Credentials],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    credentials = vhost_factory(VHOST)
    keys = {u: Keys() for u in UNITS}
    manager, broker_key = SigningKeyPair.generate(), SigningKeyPair.generate()
    directory = _directory(wy_protocol, keys, manager, broker_key)
    provision(rabbit_node.management_url, "guest", "guest", directory, credentials, vhost=VHOST)
    log_path: Path = tmp_path_factory.mktemp("router-log") / "log.db"
    log = TransferLog.open(f"sqlite:///{log_path}", signer=NoteSigner(ORIGIN, broker_key),
                           origin=ORIGIN)
    source = [directory]  # what the router's registry returns; tests may swap it
    router = Router(amqp_url=amqp_url_for(amqp_base, "infoshare-broker",
                                          credentials.password("infoshare-broker"), VHOST),
                    transfer_log=log, directory=DirectoryHolder(lambda: source[0]),
                    broker_key=broker_key, directory_refresh=0.2)
    w = World(source, keys, manager, broker_key, credentials, amqp_base, log, router)
    thread = threading.Thread(target=router.run, daemon=True)
    thread.start()
    assert router.ready.wait(30), "router did not start consuming"
    yield w
    router.stop()
    thread.join(timeout=30)
    assert not thread.is_alive(), "router did not stop on request"
    for conn in w.connections.values():
        if conn.is_open:
            conn.close()
    log.close()


def _entries_for(log: TransferLog, message_id: str | None) -> list[dict[str, Any]]:
    return [e for e in (json.loads(b) for b in log.entries()) if e["message_id"] == message_id]


def _send_and_check(world: World, unit: str, body: bytes, message_id: str | None,
                    reason: str | None, **publish: Any) -> Notice:
    before = world.log.size()
    world.publish(unit, body, **publish)
    notice = world.notice(unit, message_id)
    assert (notice.decision, notice.reason) == (
        "routed" if reason is None else "refused", reason)
    entry = json.loads(world.log.entry(notice.seq).to_bytes())
    assert entry["decision"] == notice.decision and entry["reason"] == reason
    assert entry["message_id"] == message_id
    assert world.log.size() == before + 1
    return notice


def test_a_permitted_referral_is_routed_unchanged_with_seq_and_leaf(world: World) -> None:
    body, mid = world.build()
    notice = _send_and_check(world, LEEDS_CSC, body, mid, None)
    props, delivered = world.envelope(POLICE_INTEL, mid)
    assert delivered == body
    assert props.headers["infoshare-seq"] == notice.seq
    entry = world.log.entry(notice.seq)
    assert props.headers["infoshare-leaf"] == leaf_hash(entry.to_bytes()).hex()
    assert entry.registry_version == world.directory.version


def _reply_pair(world: World) -> str:
    """A routed section 47 request from the police hub to Leeds' front door."""
    body, mid = world.build(POLICE_HUB, LEEDS_DOOR, kind="request", purpose="section-47-enquiry",
                            consent=Consent("not_sought", GroundId("child-significant-harm")))
    _send_and_check(world, POLICE_HUB, body, mid, None)
    return mid


def test_a_response_to_a_routed_request_is_routed(world: World) -> None:
    request = _reply_pair(world)
    body, mid = world.build(LEEDS_DOOR, POLICE_HUB, kind="response",
                            purpose="section-47-enquiry", in_reply_to=request,
                            consent=Consent("not_sought", GroundId("child-significant-harm")),
                            record={"household": {"size": 3}})
    _send_and_check(world, LEEDS_DOOR, body, mid, None)


CG = Consent("given", None)
CSH = Consent("not_sought", GroundId("child-significant-harm"))

# reason -> (publishing unit, builder of (body, message id or None), extra publish options)
Case = Callable[[World], tuple[str, bytes, str | None, dict[str, Any]]]


def _built(unit: str = LEEDS_CSC, recipient: str = POLICE_INTEL, **kw: Any) -> Case:
    def make(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
        body, mid = w.build(unit, recipient, **kw)
        return unit, body, mid, {}
    return make


def _malformed(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
    return LEEDS_CSC, b'{"version": 1, "header": ', None, {}


def _too_large(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
    return LEEDS_CSC, b" " * (16 * 1024 * 1024 + 1), None, {}


def _unsupported(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
    body, _ = w.build()
    doc = json.loads(body)
    doc["version"] = 2
    return LEEDS_CSC, json.dumps(doc).encode(), None, {}


def _unknown_sender(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
    body, mid = w.build("leeds-cc/no-such-unit")
    return LEEDS_CSC, body, mid, {}


def _sender_mismatch(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
    # Police hub publishes (as itself, RabbitMQ checks user_id) an envelope claiming Leeds.
    body, mid = w.build(LEEDS_CSC)
    return POLICE_HUB, body, mid, {}


def _key_not_valid(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
    body, mid = w.build(signer=SigningKeyPair.generate())
    return LEEDS_CSC, body, mid, {}


def _bad_signature(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
    body, mid = w.build()
    doc = json.loads(body)
    sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
    sig[5] ^= 1
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return LEEDS_CSC, json.dumps(doc).encode(), mid, {}


def _duplicate(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
    first, mid = w.build()
    _send_and_check(w, LEEDS_CSC, first, mid, None)
    w.envelope(POLICE_INTEL, mid)
    again, _ = w.build(message_id=mid, record={"identity": {"ref": "other"}})
    return LEEDS_CSC, again, mid, {}


def _stale(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
    body, mid = w.build(created_at=datetime.now(UTC) - timedelta(hours=25))
    return LEEDS_CSC, body, mid, {}


def _payload_mismatch(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
    body, mid = w.build()
    other, _ = w.build(record={"identity": {"ref": "a different record"}})
    doc = json.loads(body)
    doc["payload"] = json.loads(other)["payload"]
    return LEEDS_CSC, json.dumps(doc).encode(), mid, {}


def _no_matching_request(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
    body, mid = w.build(LEEDS_DOOR, POLICE_HUB, kind="response", purpose="section-47-enquiry",
                        in_reply_to=str(uuid.uuid4()), consent=CSH)
    return LEEDS_DOOR, body, mid, {}


def _bad_countersignature(w: World) -> tuple[str, bytes, str | None, dict[str, Any]]:
    body, mid = w.build(LEEDS_DOOR, POLICE_HUB, purpose="dvds-right-to-know", consent=Consent(
        "not_sought", GroundId("adult-serious-harm")), record={"identity": {"r": 1}},
        countersigners=(SigningKeyPair.generate(),))
    return LEEDS_DOOR, body, mid, {}


CASES: dict[str, Case] = {
    "malformed": _malformed,
    "too_large": _too_large,
    "unsupported_version": _unsupported,
    "unknown_sender": _unknown_sender,
    "sender_mismatch": _sender_mismatch,
    "key_not_valid": _key_not_valid,
    "bad_signature": _bad_signature,
    "duplicate": _duplicate,
    "stale": _stale,
    "unknown_protocol": _built(protocol="no-such-protocol"),
    "protocol_not_in_force": _built(protocol=SUSPENDED),
    "not_signatory": _built(recipient=CHARITY, purpose="safeguarding-referral"),
    "unknown_purpose": _built(purpose="no-such-purpose"),
    "kind_not_permitted": _built(kind="request"),
    "sender_not_permitted": _built(POLICE_HUB, LEEDS_EH, purpose="early-help", consent=CG,
                                   subject_informed=True),
    "recipient_not_permitted": _built(recipient=POLICE_HUB, purpose="police-intelligence"),
    "category_not_permitted": _built(record={"health": {"x": 1}}),
    "consent_required": _built(LEEDS_SCHOOL, LEEDS_EH, purpose="early-help", consent=CSH,
                               subject_informed=True),
    "ground_not_permitted": _built(consent=CSH),
    "subject_must_be_informed": _built(LEEDS_CSC, LEEDS_SCHOOL,
                                       kind="request", purpose="child-in-need-assessment",
                                       consent=CG,
                                       subject_informed=False),
    "approval_required": _built(LEEDS_DOOR, POLICE_HUB, purpose="dvds-right-to-know",
                                consent=Consent("not_sought", GroundId("adult-serious-harm"))),
    "no_matching_request": _no_matching_request,
    "recipient_key_not_valid": _built(recipient_key=EncryptionKeyPair.generate().public),
    "payload_mismatch": _payload_mismatch,
}


@pytest.mark.parametrize("reason", list(CASES))
def test_every_reason_code_is_logged_and_noticed(world: World, reason: str) -> None:
    unit, body, mid, publish = CASES[reason](world)
    _send_and_check(world, unit, body, mid, reason, **publish)


def test_every_reason_code_of_the_spec_has_a_case() -> None:
    from protocols.reasons import Reason

    assert set(CASES) == {r.value for r in Reason}


def test_a_forged_countersignature_is_refused(world: World) -> None:
    unit, body, mid, _ = _bad_countersignature(world)
    _send_and_check(world, unit, body, mid, "approval_required")


def test_a_manager_countersignature_permits_an_approval_purpose(world: World) -> None:
    body, mid = world.build(LEEDS_DOOR, POLICE_HUB, purpose="dvds-right-to-know",
                            consent=Consent("not_sought", GroundId("adult-serious-harm")),
                            countersigners=(world.manager,))
    _send_and_check(world, LEEDS_DOOR, body, mid, None)


def test_republished_envelope_is_delivered_again_without_a_new_entry(world: World) -> None:
    body, mid = world.build()
    first = _send_and_check(world, LEEDS_CSC, body, mid, None)
    world.envelope(POLICE_INTEL, mid)
    size = world.log.size()
    world.publish(LEEDS_CSC, body)
    again = world.notice(LEEDS_CSC, mid)
    assert again.seq == first.seq and again.decision == "routed"
    _, delivered = world.envelope(POLICE_INTEL, mid)
    assert delivered == body
    assert world.log.size() == size
    assert len(_entries_for(world.log, mid)) == 1


def test_refusals_by_unauthenticated_senders_do_not_reserve_a_message_id(world: World) -> None:
    body, mid = world.build()
    # The police hub replays Leeds' envelope under its own user first.
    _send_and_check(world, POLICE_HUB, body, mid, "sender_mismatch")
    _send_and_check(world, LEEDS_CSC, body, mid, None)


def test_checkpoints_are_signed_and_cover_the_log(world: World) -> None:
    note = world.log.checkpoint(datetime.now(UTC))
    from keys import open_checkpoint

    cp = open_checkpoint(note, world.log.verifier)
    assert cp.origin == ORIGIN
    assert cp.size == world.log.size()
    assert cp.root == world.log.root()
    assert key_id(world.broker_key.public) == world.broker_key.key_id


def test_the_router_follows_registry_changes(world: World) -> None:
    """A key revoked in a newer directory version refuses what it signs from then on."""
    original = world.directory
    now = datetime.now(UTC).replace(microsecond=0)
    revoked = tuple(
        dataclasses.replace(k, revoked_at=now - timedelta(seconds=1), revocation_reason="lost")
        if k.key_id == world.keys[LEEDS_CSC].signing.key_id else k for k in original.keys)
    world.directory = dataclasses.replace(original, version=original.version + 1, keys=revoked)
    try:
        deadline = time.monotonic() + 20
        while world.router._directory.current.version != original.version + 1:
            assert time.monotonic() < deadline, "the router did not pick up the new version"
            time.sleep(0.1)
        body, mid = world.build()
        notice = _send_and_check(world, LEEDS_CSC, body, mid, "key_not_valid")
        assert world.log.entry(notice.seq).registry_version == original.version + 1
        # An older version offered later is ignored: the router never goes back.
        world.directory = original
        time.sleep(1.0)
        assert world.router._directory.current.version == original.version + 1
    finally:
        world.directory = dataclasses.replace(original, version=original.version + 2)
        deadline = time.monotonic() + 20
        while world.router._directory.current.version != original.version + 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_the_router_reconnects_when_its_connection_is_closed(world: World,
                                                             management: Any) -> None:
    def router_connections() -> list[dict[str, Any]]:
        return [c for c in management.get("/api/connections") or []
                if c.get("user") == "infoshare-broker" and c.get("vhost") == VHOST]

    deadline = time.monotonic() + 20
    while not router_connections():
        assert time.monotonic() < deadline, "the router has no connection to close"
        time.sleep(0.2)
    for c in router_connections():
        management.delete(f"/api/connections/{urllib.parse.quote(c['name'], safe='')}")
    body, mid = world.build()
    _send_and_check(world, LEEDS_CSC, body, mid, None)
    world.envelope(POLICE_INTEL, mid)
