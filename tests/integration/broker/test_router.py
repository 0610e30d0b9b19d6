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
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from router_world import (
    CHARITY,
    LEEDS_CSC,
    LEEDS_DOOR,
    LEEDS_EH,
    LEEDS_SCHOOL,
    ORIGIN,
    POLICE_HUB,
    POLICE_INTEL,
    SUSPENDED,
    World,
    running_world,
)

from broker.topology import Credentials, provision
from broker.transfer_log import TransferLog
from keys import EncryptionKeyPair, SigningKeyPair, key_id
from protocols.envelope import Notice
from protocols.loader import ProtocolFile
from protocols.merkle import leaf_hash
from protocols.model import (
    Consent,
    GroundId,
    OrgId,
    Role,
    Unit,
    UnitId,
)

pytestmark = pytest.mark.integration

VHOST = "infoshare-test-router"


@pytest.fixture(scope="module")
def world(rabbit_node: Any, management: Any, amqp_base: str, wy_protocol: ProtocolFile,
          vhost_factory: Callable[[str], Credentials],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with running_world(management_url=rabbit_node.management_url, amqp_base=amqp_base,
                       wy_protocol=wy_protocol, credentials=vhost_factory(VHOST), vhost=VHOST,
                       log_path=tmp_path_factory.mktemp("router-log") / "log.db") as w:
        yield w


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
    # A header over 16 KiB: a body over 16 MiB never reaches the router, since
    # the node refuses it (max_message_size; tests/integration/test_rabbit_node.py).
    header = b" " * (16 * 1024 + 1)
    return LEEDS_CSC, json.dumps({"version": 1, "header": base64.b64encode(header).decode(),
                                  "signatures": [], "payload": ""}).encode(), None, {}


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


def test_the_router_takes_from_a_unit_added_while_it_runs(world: World,
                                                          management: Any) -> None:
    """A unit registered (a new directory version) and then provisioned: the running
    router starts taking from its new ingress queue without a restart."""
    original = world.directory
    newcomer = "example-charity/outreach"
    charity = next(o for o in original.organisations if o.id == "example-charity")
    grown = dataclasses.replace(charity, units=(*charity.units, Unit(
        OrgId("example-charity"), UnitId("outreach"), "Outreach", frozenset({Role("x")}))))
    world.directory = dataclasses.replace(
        original, version=original.version + 1,
        organisations=tuple(grown if o is charity else o for o in original.organisations))
    try:
        # Provisioning follows the directory a while later, as an operator's would.
        deadline = time.monotonic() + 20
        while world.router._directory.current.version != original.version + 1:
            assert time.monotonic() < deadline, "the router did not pick up the new version"
            time.sleep(0.1)
        provision(management.base_url, "guest", "guest", world.directory, world.credentials,
                  vhost=world.vhost)
        body, mid = world.build(sender=newcomer)
        world.publish(newcomer, body)
        notice = world.notice(newcomer, mid)
        assert (notice.decision, notice.reason) == ("refused", "key_not_valid")
    finally:
        conn = world.connections.pop(newcomer, None)
        if conn is not None and conn.is_open:
            conn.close()  # before its user goes
        world.directory = dataclasses.replace(original, version=original.version + 2)
        provision(management.base_url, "guest", "guest", world.directory, world.credentials,
                  vhost=world.vhost)


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
