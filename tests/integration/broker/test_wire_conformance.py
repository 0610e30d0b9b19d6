"""A real router's export, checked by a verifier written from the wire spec alone.

The router runs on the session's RabbitMQ node and decides what units
publish: a routed referral and its redelivery, a unit's envelope replayed by
another unit (``sender_mismatch``), bodies that fail check 1 (one with a
readable header, one not JSON, one with a header over 16 KiB, one of another
version), and an envelope published by a RabbitMQ user whose name is not
ASCII. A body over 16 MiB is refused by the node itself. The log is exported
as an auditor gets it, and ``spec_verifier`` (no import of the project)
checks it: 19-field canonical entries, the RFC 9162 tree, Ed25519-signed C2SP
checkpoints, seq, and each evidence line's hash in its entry.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import secrets
import shutil
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
import spec_verifier
from router_world import LEEDS_CSC, ORIGIN, POLICE_HUB, POLICE_INTEL, World, running_world

from audit import AuditError, export, replay, verify
from broker.topology import Credentials, ManagementAPI, amqp_url_for
from keys import SigningKeyPair
from protocols.directory import sign_directory
from protocols.envelope import MAX_BODY_BYTES
from protocols.loader import ProtocolFile
from protocols.log_format import Entry
from protocols.model import amqp_user

pytestmark = pytest.mark.integration

VHOST = "infoshare-test-conformance"
#: A RabbitMQ user whose name is not ASCII (RabbitMQ allows any text).
GUEST = "g\u00e4st.\u00fcnit"


@dataclass
class Scenario:
    world: World
    export: Path
    registry: SigningKeyPair
    #: case -> the seq of its entry
    seqs: dict[str, int] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)
    over_limit: pika.exceptions.ChannelClosedByBroker | None = None
    size_before_over_limit: int = -1


def _send(w: World, unit: str, body: bytes, message_id: str | None) -> int:
    w.publish(unit, body)
    return w.notice(unit, message_id).seq


def _wait_for_size(w: World, size: int) -> None:
    # No notice goes to a user that is no unit's: the log is the only sign.
    deadline = time.monotonic() + 20
    while w.log.size() < size:
        assert time.monotonic() < deadline, "the router logged nothing"
        time.sleep(0.05)


def _publish_as_guest(w: World, management: ManagementAPI, body: bytes) -> None:
    quoted = urllib.parse.quote(GUEST, safe="")
    password = secrets.token_urlsafe(16)
    management.put(f"/api/users/{quoted}", {"password": password, "tags": ""})
    try:
        management.put(f"/api/permissions/{VHOST}/{quoted}",
                       {"configure": "^$", "write": "^infoshare\\.submit$", "read": "^$"})
        conn = pika.BlockingConnection(pika.URLParameters(
            amqp_url_for(w.amqp_base, GUEST, password, VHOST)))
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.basic_publish("infoshare.submit", GUEST, body, pika.BasicProperties(
                user_id=GUEST, delivery_mode=2, content_type="application/json",
                type="envelope"), mandatory=True)
        finally:
            conn.close()
    finally:
        management.delete(f"/api/users/{quoted}")


def _run(w: World, management: ManagementAPI, out: Path) -> Scenario:
    registry = SigningKeyPair.generate()
    s = Scenario(w, out, registry)
    body, mid = w.build()
    s.seqs["routed"] = _send(w, LEEDS_CSC, body, mid)
    w.envelope(POLICE_INTEL, mid)
    assert _send(w, LEEDS_CSC, body, mid) == s.seqs["routed"]  # a redelivery: no entry
    w.envelope(POLICE_INTEL, mid)
    s.bodies["routed"] = body

    spoofed, mid = w.build()  # Leeds' envelope, published by the police hub
    s.seqs["sender_mismatch"] = _send(w, POLICE_HUB, spoofed, mid)
    s.bodies["sender_mismatch"] = spoofed

    readable, _ = w.build()
    s.bodies["readable_malformed"] = readable[:-1] + b',"extra":1}'
    s.bodies["not_json"] = b'{"version": 1, "header": '
    s.bodies["header_too_large"] = json.dumps({
        "version": 1, "header": base64.b64encode(b" " * (16 * 1024 + 1)).decode(),
        "signatures": [], "payload": ""}).encode()
    s.bodies["unsupported_version"] = json.dumps({"version": 2}).encode()
    for case in ("readable_malformed", "not_json", "header_too_large", "unsupported_version"):
        s.seqs[case] = _send(w, LEEDS_CSC, s.bodies[case], None)

    guest_body, _ = w.build()
    size = w.log.size()
    _publish_as_guest(w, management, guest_body)
    _wait_for_size(w, size + 1)
    s.seqs["non_ascii_publisher"] = size

    s.size_before_over_limit = w.log.size()
    ch = w.channel(LEEDS_CSC)
    try:
        ch.basic_publish("infoshare.submit", LEEDS_CSC, b" " * (MAX_BODY_BYTES + 1),
                         pika.BasicProperties(user_id=amqp_user(LEEDS_CSC), delivery_mode=2,
                                              type="envelope"), mandatory=True)
    except pika.exceptions.ChannelClosedByBroker as e:
        s.over_limit = e
    # The router is still deciding in order: one more message reaches the log.
    body, mid = w.build()
    s.seqs["after"] = _send(w, LEEDS_CSC, body, mid)

    document = sign_directory(w.directory, registry)
    export(w.log, out, directories=lambda version: document, registry_key=registry.public)
    return s


@pytest.fixture(scope="module")
def scenario(rabbit_node: Any, management: ManagementAPI, amqp_base: str,
             wy_protocol: ProtocolFile, vhost_factory: Callable[[str], Credentials],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    work = tmp_path_factory.mktemp("conformance")
    with running_world(management_url=rabbit_node.management_url, amqp_base=amqp_base,
                       wy_protocol=wy_protocol, credentials=vhost_factory(VHOST), vhost=VHOST,
                       log_path=work / "log.db") as w:
        yield _run(w, management, work / "export")


def _independent(d: Path, s: Scenario) -> dict[str, int]:
    return spec_verifier.verify_export(str(d), name=ORIGIN, public_key=s.world.broker_key.public)


def _entry(s: Scenario, case: str) -> Entry:
    return s.world.log.entry(s.seqs[case])


# --- the export, as an independent auditor sees it -------------------------------------


def test_an_independent_verifier_accepts_the_export(scenario: Scenario) -> None:
    counts = _independent(scenario.export, scenario)
    assert counts["entries"] == scenario.world.log.size() == scenario.seqs["after"] + 1
    assert counts["evidence"] == counts["entries"] and counts["checkpoints"] >= 1


def test_the_projects_own_audit_agrees(scenario: Scenario) -> None:
    result = verify(scenario.export, log_key=scenario.world.log.verifier)
    assert result.ok and result.evidence, result.summary()
    assert replay(scenario.export, registry_key=scenario.registry.public) == []


def test_the_spec_verifier_imports_nothing_of_the_project() -> None:
    tree = ast.parse(Path(spec_verifier.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported == {"__future__", "base64", "hashlib", "json", "nacl.exceptions",
                        "nacl.signing"}


# --- what the router wrote -------------------------------------------------------------


def test_a_routed_envelope_and_its_redelivery_make_one_entry(scenario: Scenario) -> None:
    e = _entry(scenario, "routed")
    assert e.decision == "routed" and e.publisher == amqp_user(LEEDS_CSC)
    assert [x.seq for x in scenario.world.log.find_entries(e.message_id or "")] == [e.seq]
    ev = scenario.world.log.evidence(e.seq)
    body = json.loads(scenario.bodies["routed"])
    assert base64.b64encode(ev.header or b"").decode() == body["header"]
    assert ev.signatures == body["signatures"]  # the strings as received
    assert ev.body_sha256 == hashlib.sha256(scenario.bodies["routed"]).hexdigest()


def test_a_replayed_envelope_is_logged_with_the_unit_that_published_it(
        scenario: Scenario) -> None:
    e = _entry(scenario, "sender_mismatch")
    assert (e.reason, e.sender, e.publisher) == (
        "sender_mismatch", LEEDS_CSC, amqp_user(POLICE_HUB))


@pytest.mark.parametrize(("case", "reason"), [
    ("readable_malformed", "malformed"), ("not_json", "malformed"),
    ("header_too_large", "too_large"), ("unsupported_version", "unsupported_version")])
def test_a_body_failing_check_1_names_nothing_from_its_header(
        scenario: Scenario, case: str, reason: str) -> None:
    e = _entry(scenario, case)
    body_sha = hashlib.sha256(scenario.bodies[case]).hexdigest()
    assert (e.decision, e.reason, e.header_sha256, e.publisher) == (
        "refused", reason, body_sha, amqp_user(LEEDS_CSC))
    assert all(getattr(e, f) is None for f in spec_verifier.HEADER_KEYS)
    ev = scenario.world.log.evidence(e.seq)
    assert (ev.header, ev.signatures, ev.body_sha256) == (None, None, body_sha)


def test_a_publisher_that_is_not_ascii_is_escaped_in_ascii_entries(scenario: Scenario) -> None:
    e = _entry(scenario, "non_ascii_publisher")
    assert (e.reason, e.publisher) == ("sender_mismatch", GUEST)
    data = e.to_bytes()
    assert data.isascii() and b'"publisher":"g\\u00e4st.\\u00fcnit"' in data
    line = (scenario.export / "evidence.jsonl").read_bytes().splitlines()[e.seq]
    assert line.isascii() and b'"publisher":"g\\u00e4st.\\u00fcnit"' in line


def test_a_body_over_16_mib_is_refused_by_the_node_and_never_logged(
        scenario: Scenario) -> None:
    refused = scenario.over_limit
    assert refused is not None, "RabbitMQ accepted a body over the wire limit"
    assert refused.reply_code == 406 and "max size" in refused.reply_text
    # Nothing logged between: the next message took the next seq.
    assert scenario.seqs["after"] == scenario.size_before_over_limit


# --- tampering with the evidence -------------------------------------------------------


def _tampered(scenario: Scenario, tmp_path: Path, case: str, **changes: object) -> Path:
    d = Path(shutil.copytree(scenario.export, tmp_path / "copy"))
    lines = (d / "evidence.jsonl").read_bytes().splitlines(keepends=True)
    k = scenario.seqs[case]
    doc = json.loads(lines[k])
    doc.update(changes)
    lines[k] = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
    (d / "evidence.jsonl").write_bytes(b"".join(lines))
    return d


@pytest.mark.parametrize("changes", [
    {"publisher": amqp_user(LEEDS_CSC)},  # the spoofing attempt blamed on its victim
    {"body_sha256": hashlib.sha256(b"another body").hexdigest()},
], ids=["publisher", "body_sha256"])
def test_edited_evidence_is_caught_by_both_verifiers(scenario: Scenario, tmp_path: Path,
                                                      changes: dict[str, object]) -> None:
    d = _tampered(scenario, tmp_path, "sender_mismatch", **changes)
    with pytest.raises(spec_verifier.SpecViolation, match="evidence_sha256"):
        _independent(d, scenario)
    result = verify(d, log_key=scenario.world.log.verifier)
    assert (result.ok, result.file, result.seq) == (
        False, "evidence.jsonl", scenario.seqs["sender_mismatch"])


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda e: e.replace(b'"decision":"refused"', b'"decision":"routed"'), "reason"),
    (lambda e: e.replace(b'"refused","reason":"sender_mismatch"',
                         b'"routed","reason":null'), "does not match"),
    (lambda e: e.replace(b',"registry_version":', b',"extra":1,"registry_version":'),
     "fields"),
], ids=["inconsistent", "re-decided", "a 20th field"])
def test_the_independent_verifier_catches_a_changed_entry(
        scenario: Scenario, tmp_path: Path, edit: Callable[[bytes], bytes],
        problem: str) -> None:
    d = Path(shutil.copytree(scenario.export, tmp_path / "copy"))
    lines = (d / "entries.jsonl").read_bytes().splitlines(keepends=True)
    k = scenario.seqs["sender_mismatch"]
    lines[k] = edit(lines[k])
    (d / "entries.jsonl").write_bytes(b"".join(lines))
    with pytest.raises(spec_verifier.SpecViolation, match=problem):
        _independent(d, scenario)


def test_an_export_without_evidence_verifies_but_does_not_replay(scenario: Scenario,
                                                                 tmp_path: Path) -> None:
    d = Path(shutil.copytree(scenario.export, tmp_path / "copy"))
    (d / "evidence.jsonl").unlink()
    assert _independent(d, scenario)["evidence"] == 0
    result = verify(d, log_key=scenario.world.log.verifier)
    assert result.ok and not result.evidence and any("replay" in w for w in result.warnings)
    with pytest.raises(AuditError, match=r"no evidence\.jsonl"):
        replay(d, registry_key=scenario.registry.public)
