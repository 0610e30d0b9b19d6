"""The gateway's API end to end: two gateways, a real router and RabbitMQ node."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_world import (
    CSC,
    EARLY_HELP,
    POLICE_HUB,
    POLICE_INTEL,
    PROTOCOL,
    SCHOOL,
    World,
    gateway_world,
)

from agency.gateway.errors import WrongPassphrase
from broker.node import RabbitNode

pytestmark = pytest.mark.integration

SECRET = "Adults not known to the family"


@pytest.fixture(scope="module")
def world(rabbit_node: RabbitNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with gateway_world(rabbit_node, tmp_path_factory.mktemp("gw"), "infoshare-test-gw") as w:
        yield w


def _intel(case: str = "LCC-C-1") -> dict[str, object]:
    return {"kind": "referral", "protocol": PROTOCOL, "purpose": "police-intelligence",
            "recipient": POLICE_INTEL, "record": {"concern": {"summary": SECRET}},
            "reasons": "Possible exploitation", "consent": "not_sought",
            "ground": "serious-crime", "subject_informed": False, "case_reference": case}


def _logged(world: World, message_id: str) -> tuple[dict[str, Any], str]:
    """The log's entry of a message and its leaf hash (wire spec 6.1)."""
    raw = [e for e in world.transfer_log.entries() if json.loads(e)["message_id"] == message_id]
    assert len(raw) == 1
    return json.loads(raw[0]), hashlib.sha256(b"\x00" + raw[0]).hexdigest()


def _early_help(case: str) -> dict[str, object]:
    return {"kind": "referral", "protocol": PROTOCOL, "purpose": "early-help",
            "recipient": EARLY_HELP, "record": {"education": {"attendance": "61%"}},
            "reasons": "attendance falling", "consent": "given", "subject_informed": True,
            "case_reference": case}


def test_permissions_come_from_the_signed_directory(world: World) -> None:
    status, doc = world.leeds.call(SCHOOL, "GET", "/permissions")
    assert status == 200 and doc["unit"] == SCHOOL
    early = next(p for p in doc["purposes"] if p["purpose"] == "early-help")
    assert early["consent_required"] is True and "leeds-cc/early-help" in early["recipients"]
    assert all(r.endswith("/early-help") for r in early["recipients"])
    assert early["subject_may_be_left_uninformed"] is False
    marac = next(p for p in doc["purposes"] if p["purpose"] == "marac-referral")
    assert marac["approval"] == "when_refused"
    assert "wy-police/marac-coordinator" in marac["recipients"]
    assert set(marac["grounds"]) == {"adult-serious-harm", "child-significant-harm"}


def test_a_referral_is_routed_opened_and_receipted(world: World,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    status, doc = world.leeds.call(CSC, "POST", "/messages", _intel("LCC-C-1"))
    assert status == 202 and doc["status"] == "queued", doc
    mid = doc["message_id"]
    routed = world.wait_status(world.leeds, CSC, mid, ("routed",))
    # The log position and leaf hash the gateway reports are those of the log itself:
    # the gateway rebuilt the entry, evidence and all, for the registry version it
    # decided with, which is the one the router decided with.
    entry, leaf = _logged(world, mid)
    assert routed["seq"] == entry["seq"]
    assert routed["leaf_hash"] == leaf
    assert routed["leaf_hash_source"] == "gateway"
    assert routed["registry_version"] == entry["registry_version"]

    status, inbox = world.police.call(POLICE_INTEL, "GET", "/inbox")
    assert status == 200 and any(m["message_id"] == mid for m in inbox)
    status, record = world.police.call(POLICE_INTEL, "GET", f"/inbox/{mid}")
    assert status == 200 and record["record"] == {"concern": {"summary": SECRET}}
    assert record["sender"] == CSC and record["seq"] == routed["seq"]
    world.wait_status(world.leeds, CSC, mid, ("receipted",))
    # Acknowledging files the record under the police's own case reference.
    status, _ = world.police.call(POLICE_INTEL, "POST", f"/inbox/{mid}/acknowledge",
                                  {"case_reference": "WYP-77"})
    assert status == 200
    status, case = world.police.call(POLICE_INTEL, "GET", "/cases/WYP-77")
    assert [m["message_id"] for m in case["messages"]] == [mid]
    status, case = world.leeds.call(CSC, "GET", "/cases/LCC-C-1")
    assert case["messages"][0]["status"] == "receipted"
    assert {"submitted", "routed", "receipted"} <= {e["type"] for e in case["events"]}
    # No record, reason or case reference in any log line.
    for r in caplog.records:
        text = r.getMessage()
        assert SECRET not in text and "LCC-C-1" not in text and "WYP-77" not in text


def test_a_referral_to_a_unit_of_the_same_gateway_arrives_with_the_brokers_leaf(
        world: World) -> None:
    status, doc = world.leeds.call(SCHOOL, "POST", "/messages", _early_help("SCH-20"))
    assert status == 202, doc
    mid = doc["message_id"]
    # The same gateway holds the recipient: the record is in its inbox, beside the
    # sender's copy of the same message id.
    deadline = time.monotonic() + 30
    while (status := world.leeds.call(EARLY_HELP, "GET", f"/inbox/{mid}")[0]) == 404:
        assert time.monotonic() < deadline, "never arrived in the early-help inbox"
        time.sleep(0.05)
    status, record = world.leeds.call(EARLY_HELP, "GET", f"/inbox/{mid}")
    assert status == 200 and record["record"] == {"education": {"attendance": "61%"}}
    # The recipient's delivery carries the broker's own leaf (infoshare-leaf), which the
    # sender's status takes as the authority.
    world.wait_status(world.leeds, SCHOOL, mid, ("routed", "receipted"))
    sent = world.wait_leaf(world.leeds, SCHOOL, mid, "broker")
    entry, leaf = _logged(world, mid)
    assert sent["leaf_hash"] == leaf and sent["seq"] == entry["seq"]


def test_a_directory_change_between_submission_and_decision(world: World) -> None:
    """The router still decides with the directory it had; the gateway with a newer one.
    The leaf the gateway computes is then not the log's, and says which version it assumed;
    where the recipient is a unit of the same gateway, the broker's leaf replaces it."""
    with world.router_directory.hold():
        router_version = world.router_directory().version
        world.admin.post("/managers", {"id": "leeds-cc-mgr-09", "org": "leeds-cc",
                                       "title": "Team manager"})
        gateway_version = world.leeds.gateway.directory.get(fresh=True).version
        assert gateway_version > router_version
        _, across = world.leeds.call(CSC, "POST", "/messages", _intel("LCC-C-21"))
        _, within = world.leeds.call(SCHOOL, "POST", "/messages", _early_help("SCH-21"))
        routed = world.wait_status(world.leeds, CSC, across["message_id"], ("routed",
                                                                            "receipted"))
        inside = world.wait_leaf(world.leeds, SCHOOL, within["message_id"], "broker")
    entry, leaf = _logged(world, across["message_id"])
    assert entry["registry_version"] == router_version
    assert routed["leaf_hash_source"] == "gateway"
    assert routed["registry_version"] == gateway_version
    assert routed["leaf_hash"] != leaf  # computed for the version the gateway decided with
    entry, leaf = _logged(world, within["message_id"])
    assert entry["registry_version"] == router_version
    assert inside["leaf_hash"] == leaf


def test_a_refusal_names_its_reason_says_what_to_change_and_is_recorded(world: World) -> None:
    body = {"kind": "referral", "protocol": PROTOCOL, "purpose": "early-help",
            "recipient": "leeds-cc/early-help", "record": {"education": {"x": "y"}},
            "reasons": "attendance", "consent": "not_sought",
            "ground": "child-significant-harm", "subject_informed": True,
            "case_reference": "SCH-9"}
    status, doc = world.leeds.call(SCHOOL, "POST", "/messages", body)
    assert status == 422 and doc["reason"] == "consent_required"
    assert "needs the consent" in doc["message"]
    status, doc = world.leeds.call(SCHOOL, "POST", "/messages",
                                   {**body, "purpose": "police-intelligence",
                                    "recipient": "wy-police/intel-bureau",
                                    "record": {"concern": "x"}, "ground": "serious-crime"})
    assert status == 422 and doc["reason"] == "recipient_not_permitted"
    assert doc["message"].startswith("wy-police/intel-bureau is not a unit of the protocol")
    status, case = world.leeds.call(SCHOOL, "GET", "/cases/SCH-9")
    assert [e["reason"] for e in case["events"] if e["type"] == "refused_locally"] == [
        "recipient_not_permitted", "consent_required"]
    status, doc = world.leeds.call(SCHOOL, "POST", "/messages", {**body, "kind": "receipt"})
    assert status == 422 and "kind" in doc["fields"]


def test_a_manager_approves_with_the_passphrase_and_a_wrong_one_signs_nothing(
        world: World) -> None:
    body = {"kind": "referral", "protocol": PROTOCOL, "purpose": "marac-referral",
            "recipient": "wy-police/marac-coordinator",
            "record": {"domestic-abuse": {"risk": "high"}}, "reasons": "DASH 16",
            "consent": "refused", "ground": "adult-serious-harm", "subject_informed": False}
    status, doc = world.leeds.call(SCHOOL, "POST", "/messages", body)
    assert status == 202 and doc["status"] == "awaiting_approval"
    mid = doc["message_id"]
    manager = world.leeds.gateway.store.account("ali.manager")
    assert manager is not None
    with pytest.raises(WrongPassphrase):
        world.leeds.gateway.approve(mid, manager, "not the passphrase")
    assert world.leeds.gateway.store.message(mid, "out").status == "awaiting_approval"  # type: ignore[union-attr]
    world.leeds.gateway.approve(mid, manager, "manager passphrase 1")
    routed = world.wait_status(world.leeds, SCHOOL, mid, ("routed", "receipted"))
    assert routed["seq"] is not None


def test_a_response_answers_a_request_from_the_inbox(world: World) -> None:
    status, doc = world.police.call(POLICE_HUB, "POST", "/messages", {
        "kind": "request", "protocol": PROTOCOL, "purpose": "section-47-enquiry",
        "recipient": "leeds-cc/front-door", "record": {"identity": {"ref": "1"}},
        "reasons": "strategy discussion", "consent": "not_sought",
        "ground": "child-significant-harm", "subject_informed": False})
    assert status == 202
    world.wait_status(world.police, POLICE_HUB, doc["message_id"], ("routed",))


def test_decisions_not_to_share_and_consent_discussions_are_recorded(world: World) -> None:
    status, _ = world.leeds.call(SCHOOL, "POST", "/consent-discussions", {
        "case_reference": "SCH-10", "asked": "mother", "asked_at": "2026-11-01",
        "response": "refused", "notes": "worried about police"})
    assert status == 201
    status, _ = world.leeds.call(SCHOOL, "POST", "/decisions-not-to-share", {
        "case_reference": "SCH-10", "reasons": "no longer a concern after the meeting"})
    assert status == 201
    status, case = world.leeds.call(SCHOOL, "GET", "/cases/SCH-10")
    types = [e["type"] for e in case["events"]]
    assert types == ["not_shared", "consent_discussion"]
    status, _doc = world.leeds.call(SCHOOL, "POST", "/decisions-not-to-share", {
        "case_reference": "SCH-10", "reasons": "   "})
    assert status == 422


def test_bad_tokens_and_bodies_get_json_errors(world: World) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{world.leeds.url}/api/v1/inbox")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401 and json.loads(e.value.read())["error"] == "unauthenticated"
    status, doc = world.leeds.call(SCHOOL, "GET", "/messages/00000000-0000-4000-8000-000000000000")
    assert status == 404 and doc["error"] == "not_found"


def test_records_are_sealed_at_rest(world: World) -> None:
    db = Path(world.leeds.home) / "gateway.db"
    data = b"".join(p.read_bytes() for p in db.parent.glob("gateway.db*"))
    assert SECRET.encode() not in data and b"LCC-C-1" not in data
    assert (db.stat().st_mode & 0o777) == 0o600
    assert (world.leeds.home.stat().st_mode & 0o777) == 0o700
