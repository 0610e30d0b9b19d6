"""``policy.decide``, table-driven: checks 2 to 13 of wire spec 3.3 on the West Yorkshire rules.

The directory is the West Yorkshire protocol file loaded by the loader, with
generated keys for every unit and one manager per organisation, plus one
organisation that is not a signatory. Envelopes are signed over the exact
header bytes with the wire spec's signing input, and every decision the
tests make through ``World.send`` is appended to an in-memory log, as the
router would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import protocols
from keys import EncryptionKeyPair, KeyId, SigningKeyPair, key_id, seal
from protocols.directory import format_time
from protocols.loader import ProtocolFile, load_protocol_file
from protocols.model import (
    Address,
    CategoryId,
    Consent,
    Directory,
    GroundId,
    Header,
    KeyRecord,
    Manager,
    MessageId,
    Organisation,
    OrgId,
    PayloadRef,
    ProtocolId,
    ProtocolStatus,
    PurposeId,
    Role,
    Signature,
    Submission,
    Unit,
    UnitId,
)
from protocols.policy import Decision, LoggedMessage, decide
from protocols.reasons import Reason

WY = Path(protocols.__file__).parent / "definitions" / "west-yorkshire-iisp-2016.yaml"
PROTOCOL = "wy-iisp-2016"
SIGNING_INPUT = b"infoshare/envelope/v1\n"
NOW = datetime(2026, 11, 24, 13, 50, 41, tzinfo=UTC)
CREATED = NOW - timedelta(minutes=1)
KEYS_FROM = datetime(2026, 1, 1, tzinfo=UTC)

LEEDS_FD = "leeds-cc/front-door"
LEEDS_CSC = "leeds-cc/childrens-social-care"
LEEDS_EH = "leeds-cc/early-help"
LEEDS_EDU = "leeds-cc/education-safeguarding"
LEEDS_HEALTH = "leeds-cc/public-health"
LEEDS_LSCP = "leeds-cc/safeguarding-partnership"
LEEDS_MARAC = "leeds-cc/marac-coordinator"
BRAD_FD = "bradford-mdc/front-door"
KIRK_EDU = "kirklees-mbc/education-safeguarding"
WAKE_HEALTH = "wakefield-mdc/public-health"
POLICE_HUB = "wy-police/safeguarding-hub"
POLICE_INTEL = "wy-police/intelligence-bureau"
POLICE_MARAC = "wy-police/marac-coordinator"
#: A registered unit of an organisation that has not signed the protocol.
OUTSIDER = "north-yorkshire-cc/front-door"

_DEFAULT: Any = object()


# --- the log ---------------------------------------------------------------------------


@dataclass
class MemoryLog:
    """The transfer log as the policy sees it, in memory."""

    entries: list[LoggedMessage] = field(default_factory=list)

    def find(self, message_id: str) -> Sequence[LoggedMessage]:
        return [e for e in self.entries if e.message_id == message_id]

    def append(self, sub: Submission, decision: Decision) -> None:
        h = sub.header
        self.entries.append(LoggedMessage(
            message_id=h.message_id, header_sha256=hashlib.sha256(sub.header_bytes).hexdigest(),
            kind=h.kind, decision=decision.decision,
            reason=None if decision.reason is None else decision.reason.value,
            protocol=h.protocol, purpose=h.purpose, sender=h.sender, recipient=h.recipient))


# --- the world: directory, keys, envelopes ---------------------------------------------


def header_bytes(h: Header) -> bytes:
    """Wire spec section 3 JSON for ``h``; decide reads the Header, the signature these bytes."""
    return json.dumps({
        "message_id": h.message_id, "kind": h.kind, "protocol": h.protocol,
        "purpose": h.purpose, "sender": h.sender, "recipient": h.recipient,
        "created_at": format_time(h.created_at), "in_reply_to": h.in_reply_to,
        "consent": None if h.consent is None else {"status": h.consent.status,
                                                   "ground": h.consent.ground},
        "subject_informed": h.subject_informed, "data_categories": list(h.data_categories),
        "payload": {"cipher": h.payload.cipher, "recipient_key": h.payload.recipient_key,
                    "sha256": h.payload.sha256, "length": h.payload.length},
    }, separators=(",", ":")).encode("utf-8")


def _org(addr: str) -> str:
    return addr.partition("/")[0]


@dataclass
class World:
    """A directory with the private halves of its keys, and a log."""

    directory: Directory
    signing: dict[str, SigningKeyPair]
    encryption: dict[str, EncryptionKeyPair]
    managers: dict[str, SigningKeyPair]
    log: MemoryLog = field(default_factory=MemoryLog)

    @classmethod
    def build(cls, loaded: ProtocolFile) -> World:
        outsider = Organisation(
            id=OrgId("north-yorkshire-cc"), name="North Yorkshire Council",
            sector="local-authority",
            units=(Unit(org=OrgId("north-yorkshire-cc"), id=UnitId("front-door"),
                        name="Children's Front Door", roles=frozenset({Role("front-door")})),))
        orgs = (*loaded.organisations, outsider)
        signing: dict[str, SigningKeyPair] = {}
        encryption: dict[str, EncryptionKeyPair] = {}
        managers: dict[str, SigningKeyPair] = {}
        records: list[KeyRecord] = []
        for o in orgs:
            for u in o.units:
                s, e = SigningKeyPair.generate(), EncryptionKeyPair.generate()
                signing[u.address], encryption[u.address] = s, e
                records.append(KeyRecord(key_id=s.key_id, holder="unit", owner=u.address,
                                         use="signing", public=s.public, valid_from=KEYS_FROM))
                records.append(KeyRecord(key_id=e.key_id, holder="unit", owner=u.address,
                                         use="encryption", public=e.public,
                                         valid_from=KEYS_FROM))
            m = SigningKeyPair.generate()
            managers[o.id] = m
            records.append(KeyRecord(key_id=m.key_id, holder="manager", owner=o.id,
                                     use="signing", public=m.public, valid_from=KEYS_FROM,
                                     manager=f"m-{o.id}"))
        directory = Directory(
            version=7, issued_at=NOW - timedelta(days=1), organisations=orgs,
            protocols=(loaded.protocol,), keys=tuple(records),
            managers=tuple(Manager(id=f"m-{o.id}", org=o.id, title="Team manager")
                           for o in orgs))
        return cls(directory=directory, signing=signing, encryption=encryption,
                   managers=managers)

    # Changes to the directory, as an administrator would make them.

    def change_key(self, kid: str, **changes: Any) -> None:
        keys = tuple(dataclasses.replace(k, **changes) if k.key_id == kid else k
                     for k in self.directory.keys)
        self.directory = dataclasses.replace(self.directory, keys=keys)

    def change_protocol(self, **changes: Any) -> None:
        self.directory = dataclasses.replace(self.directory, protocols=tuple(
            dataclasses.replace(p, **changes) for p in self.directory.protocols))

    # Envelopes.

    def envelope(
        self, kind: str, purpose: str, sender: str, recipient: str, *,
        message_id: str | None = None, in_reply_to: str | None = None,
        consent: tuple[str, str | None] | None = _DEFAULT, subject_informed: bool = True,
        categories: Sequence[str] = _DEFAULT, created_at: datetime = CREATED,
        protocol: str = PROTOCOL, user_id: str | None = _DEFAULT,
        signer: SigningKeyPair | None = _DEFAULT, signed_bytes: bytes | None = None,
        countersigners: Sequence[SigningKeyPair] = _DEFAULT,
        extra_signatures: Sequence[Signature] = (), recipient_key: str = _DEFAULT,
        received: Callable[[bytes], bytes] | None = None,
    ) -> Submission:
        """A signed submission; defaults give one every check passes for a known purpose.

        ``signed_bytes`` replaces the bytes the sender signs (to forge);
        ``received`` alters the ciphertext after the header names it.
        """
        p = self.directory.protocol(PROTOCOL)
        rule = p.purpose(purpose) if p is not None else None
        carries_data = kind not in ("declined", "receipt")
        if consent is _DEFAULT:
            if not carries_data:
                consent = None
            elif rule is None or rule.consent_required:
                consent = ("given", None)
            else:
                consent = ("not_sought", sorted(rule.grounds)[0])
        if categories is _DEFAULT:
            categories = (sorted(rule.data_categories) if rule and carries_data
                          else ["identity"] if carries_data else [])
        if countersigners is _DEFAULT:
            needs = (carries_data and rule is not None
                     and rule.approval_needed(None if consent is None else consent[0]))  # type: ignore[arg-type]
            countersigners = [self.managers[_org(sender)]] if needs else []
        if signer is _DEFAULT:
            signer = self.signing.get(sender) or SigningKeyPair.generate()
        if user_id is _DEFAULT:
            user_id = sender.replace("/", ".")
        enc = self.encryption.get(recipient)
        if recipient_key is _DEFAULT:
            recipient_key = enc.key_id if enc else key_id(EncryptionKeyPair.generate().public)
        ciphertext = seal(enc.public if enc else EncryptionKeyPair.generate().public,
                          b'{"record": {}, "reasons": "test"}')
        header = Header(
            message_id=MessageId(message_id or str(uuid.uuid4())), kind=kind,  # type: ignore[arg-type]
            protocol=ProtocolId(protocol), purpose=PurposeId(purpose),
            sender=Address(sender), recipient=Address(recipient), created_at=created_at,
            in_reply_to=None if in_reply_to is None else MessageId(in_reply_to),
            consent=None if consent is None else Consent(
                status=consent[0], ground=None if consent[1] is None else GroundId(consent[1])),  # type: ignore[arg-type]
            subject_informed=subject_informed,
            data_categories=tuple(CategoryId(c) for c in categories),
            payload=PayloadRef(cipher="x25519-xsalsa20poly1305-sealedbox",
                               recipient_key=KeyId(recipient_key),
                               sha256=hashlib.sha256(ciphertext).hexdigest(),
                               length=len(ciphertext)),
        )
        hb = header_bytes(header)
        to_sign = SIGNING_INPUT + (hb if signed_bytes is None else signed_bytes)
        sigs: list[Signature] = []
        if signer is not None:
            sigs.append(Signature(key=signer.key_id, sig=signer.sign(to_sign)))
        sigs += [Signature(key=m.key_id, sig=m.sign(SIGNING_INPUT + hb)) for m in countersigners]
        sigs += extra_signatures
        got = ciphertext if received is None else received(ciphertext)
        return Submission(header=header, header_bytes=hb, signatures=tuple(sigs),
                          user_id=user_id, payload_sha256=hashlib.sha256(got).hexdigest(),
                          payload_length=len(got))

    def decide(self, sub: Submission, now: datetime = NOW) -> Reason | None:
        return decide(sub, self.directory, self.log, now).reason

    def send(self, sub: Submission, now: datetime = NOW) -> Reason | None:
        """Decide and log, as the router does."""
        decision = decide(sub, self.directory, self.log, now)
        self.log.append(sub, decision)
        return decision.reason

    def routed(self, sub: Submission) -> Submission:
        """Send ``sub`` and insist that it was routed; for setting up replies."""
        assert self.send(sub) is None
        return sub


@pytest.fixture(scope="module")
def wy() -> ProtocolFile:
    return load_protocol_file(WY)


@pytest.fixture
def world(wy: ProtocolFile) -> World:
    """A fresh world per test: a factory for directories, keys and signed envelopes."""
    return World.build(wy)


# --- permitted: every purpose routes -----------------------------------------------------

#: For every purpose of the file: an opening kind, a sender and a recipient it permits.
OPENINGS: dict[str, list[tuple[str, str, str]]] = {
    "safeguarding-referral": [("referral", KIRK_EDU, LEEDS_FD), ("referral", POLICE_HUB, BRAD_FD)],
    "section-47-enquiry": [("request", LEEDS_FD, POLICE_HUB), ("request", POLICE_HUB, BRAD_FD)],
    "child-in-need-assessment": [("request", LEEDS_CSC, LEEDS_HEALTH),
                                 ("request", LEEDS_CSC, KIRK_EDU)],
    "early-help": [("referral", LEEDS_EDU, LEEDS_EH), ("referral", WAKE_HEALTH, LEEDS_EH)],
    "marac-referral": [("referral", POLICE_HUB, LEEDS_MARAC), ("referral", LEEDS_FD, POLICE_MARAC)],
    "police-intelligence": [("referral", LEEDS_FD, POLICE_INTEL)],
    "dvds-right-to-know": [("referral", LEEDS_MARAC, POLICE_HUB),
                           ("referral", BRAD_FD, POLICE_HUB)],
    "csod-disclosure-check": [("referral", POLICE_HUB, BRAD_FD),
                              ("request", POLICE_HUB, LEEDS_FD)],
    "case-review-records": [("request", LEEDS_LSCP, POLICE_INTEL),
                            ("request", LEEDS_LSCP, BRAD_FD)],
    "operation-encompass": [("referral", POLICE_HUB, KIRK_EDU)],
}


def test_the_table_covers_every_purpose_and_every_opening_kind(wy: ProtocolFile) -> None:
    assert set(OPENINGS) == {p.id for p in wy.protocol.purposes}
    for p in wy.protocol.purposes:
        assert {kind for kind, _, _ in OPENINGS[p.id]} == p.opens, p.id


@pytest.mark.parametrize(("purpose", "kind", "sender", "recipient"), [
    pytest.param(purpose, kind, s, r, id=f"{purpose}:{kind}:{s}->{r}")
    for purpose, rows in OPENINGS.items() for kind, s, r in rows
])
def test_every_purpose_routes(world: World, purpose: str, kind: str, sender: str,
                              recipient: str) -> None:
    assert world.decide(world.envelope(kind, purpose, sender, recipient)) is None


REQUEST_PURPOSES = [(p, s, r) for p, rows in OPENINGS.items() for k, s, r in rows
                    if k == "request"]


@pytest.mark.parametrize(("purpose", "requester", "holder"), REQUEST_PURPOSES)
def test_a_request_is_answered_and_the_answer_receipted(world: World, purpose: str,
                                                        requester: str, holder: str) -> None:
    request = world.routed(world.envelope("request", purpose, requester, holder))
    response = world.envelope("response", purpose, holder, requester,
                              in_reply_to=request.header.message_id)
    assert world.send(response) is None
    receipt = world.envelope("receipt", purpose, requester, holder,
                             in_reply_to=response.header.message_id)
    assert world.send(receipt) is None


@pytest.mark.parametrize(("purpose", "requester", "holder"), REQUEST_PURPOSES)
def test_a_request_may_be_declined(world: World, purpose: str, requester: str,
                                   holder: str) -> None:
    request = world.routed(world.envelope("request", purpose, requester, holder))
    declined = world.envelope("declined", purpose, holder, requester,
                              in_reply_to=request.header.message_id)
    assert declined.header.consent is None and declined.header.data_categories == ()
    assert world.send(declined) is None


def test_receipt_for_a_referral(world: World) -> None:
    referral = world.routed(world.envelope("referral", "safeguarding-referral", KIRK_EDU,
                                           LEEDS_FD))
    receipt = world.envelope("receipt", "safeguarding-referral", LEEDS_FD, KIRK_EDU,
                             in_reply_to=referral.header.message_id)
    assert world.decide(receipt) is None


@pytest.mark.parametrize(("consent", "countersigned"), [
    pytest.param(("given", None), False, id="consent given"),
    pytest.param(("not_sought", "serious-crime"), False, id="not sought on a ground"),
    pytest.param(("refused", "child-significant-harm"), True, id="refusal overridden, approved"),
])
def test_safeguarding_referral_consent_variants(world: World, consent: tuple[str, str | None],
                                                countersigned: bool) -> None:
    sub = world.envelope("referral", "safeguarding-referral", POLICE_HUB, LEEDS_FD,
                         consent=consent)
    assert (len(sub.signatures) == 2) is countersigned
    assert world.decide(sub) is None


@pytest.mark.parametrize("delta", [timedelta(seconds=300), -timedelta(hours=24)],
                         ids=["300 s ahead", "24 h old"])
def test_freshness_bounds_are_inclusive(world: World, delta: timedelta) -> None:
    sub = world.envelope("referral", "operation-encompass", POLICE_HUB, KIRK_EDU,
                         created_at=NOW + delta)
    assert world.decide(sub) is None


# --- refused: one or more cases per reason -------------------------------------------------

Build = Callable[[World], Submission]


def _referral(w: World, **kw: Any) -> Submission:
    return w.envelope("referral", "safeguarding-referral", KIRK_EDU, LEEDS_FD, **kw)


def _s47(w: World, **kw: Any) -> Submission:
    return w.envelope("request", "section-47-enquiry", LEEDS_FD, POLICE_HUB, **kw)


def _flip(data: bytes, at: int = 0) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def _revoke_sender_signing_key(w: World) -> Submission:
    w.change_key(w.signing[KIRK_EDU].key_id, revoked_at=NOW - timedelta(minutes=10),
                 revocation_reason="device lost")
    return _referral(w, created_at=NOW - timedelta(minutes=30))


def _sender_key_not_yet_valid(w: World) -> Submission:
    w.change_key(w.signing[KIRK_EDU].key_id, valid_from=NOW - timedelta(minutes=10))
    return _referral(w, created_at=NOW - timedelta(minutes=30))


def _sender_key_expired(w: World) -> Submission:
    w.change_key(w.signing[KIRK_EDU].key_id, valid_until=NOW - timedelta(seconds=1))
    return _referral(w, created_at=NOW - timedelta(minutes=30))


def _as_manager_key(w: World) -> Submission:
    # A manager's key of the sender's organisation is not the unit's signing key.
    return _referral(w, signer=w.managers["kirklees-mbc"])


def _encryption_key_as_signing_key(w: World) -> Submission:
    sub = _referral(w)
    first = dataclasses.replace(sub.signatures[0], key=w.encryption[KIRK_EDU].key_id)
    return dataclasses.replace(sub, signatures=(first,))


def _header_changed_after_signing(w: World) -> Submission:
    sub = _referral(w)
    return dataclasses.replace(sub, header_bytes=sub.header_bytes.replace(b'"kind"', b'"kind" '))


def _flipped_signature(w: World) -> Submission:
    sub = _referral(w)
    first = dataclasses.replace(sub.signatures[0], sig=_flip(sub.signatures[0].sig, 10))
    return dataclasses.replace(sub, signatures=(first,))


def _duplicate_of_routed(w: World) -> Submission:
    first = w.routed(_referral(w))
    return _referral(w, message_id=first.header.message_id,
                     created_at=CREATED - timedelta(seconds=1))


def _duplicate_of_refused_stale(w: World) -> Submission:
    # Refused after check 3: the sender authenticated, so the id is taken.
    first = _referral(w, created_at=NOW - timedelta(days=2))
    assert w.send(first) is Reason.STALE
    return _referral(w, message_id=first.header.message_id)


def _countersigned_by(org: str) -> Build:
    def build(w: World) -> Submission:
        return w.envelope("referral", "dvds-right-to-know", LEEDS_MARAC, POLICE_HUB,
                          countersigners=[w.managers[org]])
    return build


def _manager_key_not_valid_then(w: World) -> Submission:
    w.change_key(w.managers["leeds-cc"].key_id, valid_from=CREATED + timedelta(seconds=1))
    return w.envelope("referral", "dvds-right-to-know", LEEDS_MARAC, POLICE_HUB)


def _bad_countersignature(w: World, purpose: str, sender: str, recipient: str,
                          kind: str = "referral") -> Submission:
    m = w.managers[_org(sender)]
    forged = Signature(key=m.key_id, sig=m.sign(b"something else"))
    return w.envelope(kind, purpose, sender, recipient, extra_signatures=[forged])


def _response_to(w: World, request: Submission, sender: str, recipient: str,
                 purpose: str = "section-47-enquiry") -> Submission:
    return w.envelope("response", purpose, sender, recipient,
                      in_reply_to=request.header.message_id)


def _reply_to_refused_request(w: World) -> Submission:
    request = _s47(w, categories=["intelligence"])
    assert w.send(request) is Reason.CATEGORY_NOT_PERMITTED
    return _response_to(w, request, POLICE_HUB, LEEDS_FD)


def _reply_to_another_units_request(w: World) -> Submission:
    request = w.routed(_s47(w))
    # Bradford's front door may answer s47 requests, but this one went to the police.
    return _response_to(w, request, BRAD_FD, LEEDS_FD)


def _reply_to_the_wrong_requester(w: World) -> Submission:
    request = w.routed(_s47(w))
    return _response_to(w, request, POLICE_HUB, BRAD_FD)


def _reply_under_another_purpose(w: World) -> Submission:
    request = w.routed(w.envelope("request", "csod-disclosure-check", POLICE_HUB, BRAD_FD))
    return _response_to(w, request, BRAD_FD, POLICE_HUB, purpose="section-47-enquiry")


def _response_to_a_response(w: World) -> Submission:
    request = w.routed(_s47(w))
    response = w.routed(_response_to(w, request, POLICE_HUB, LEEDS_FD))
    return _response_to(w, response, LEEDS_FD, POLICE_HUB)


def _receipt_for_a_receipt(w: World) -> Submission:
    referral = w.routed(_referral(w))
    receipt = w.routed(w.envelope("receipt", "safeguarding-referral", LEEDS_FD, KIRK_EDU,
                                  in_reply_to=referral.header.message_id))
    return w.envelope("receipt", "safeguarding-referral", KIRK_EDU, LEEDS_FD,
                      in_reply_to=receipt.header.message_id)


def _receipt_from_a_stranger(w: World) -> Submission:
    referral = w.routed(_referral(w))
    return w.envelope("receipt", "safeguarding-referral", BRAD_FD, KIRK_EDU,
                      in_reply_to=referral.header.message_id)


def _recipient_key_revoked(w: World) -> Submission:
    w.change_key(w.encryption[LEEDS_FD].key_id, revoked_at=NOW - timedelta(minutes=1))
    return _referral(w)


def _recipient_key_expired(w: World) -> Submission:
    # The header names a key of the recipient that expired before now.
    w.change_key(w.encryption[LEEDS_FD].key_id, valid_until=NOW - timedelta(hours=1))
    return _referral(w)


def _protocol_changed(**changes: Any) -> Build:
    def build(w: World) -> Submission:
        w.change_protocol(**changes)
        return _referral(w)
    return build


CASES: list[Any] = [
    # 2. sender registered; the AMQP user is the sender's.
    pytest.param(lambda w: w.envelope("referral", "safeguarding-referral", "leeds-cc/nowhere",
                                      LEEDS_FD), Reason.UNKNOWN_SENDER, id="unknown unit"),
    pytest.param(lambda w: w.envelope("referral", "safeguarding-referral", "york-cc/front-door",
                                      LEEDS_FD), Reason.UNKNOWN_SENDER, id="unknown organisation"),
    pytest.param(lambda w: _referral(w, user_id="leeds-cc.front-door"), Reason.SENDER_MISMATCH,
                 id="published by another unit"),
    pytest.param(lambda w: _referral(w, user_id=None), Reason.SENDER_MISMATCH,
                 id="no user_id"),
    pytest.param(lambda w: _referral(w, user_id="kirklees-mbc/education-safeguarding"),
                 Reason.SENDER_MISMATCH, id="address instead of user name"),
    # 3. the first signature: a valid signing key of the sender, and it verifies.
    pytest.param(_revoke_sender_signing_key, Reason.KEY_NOT_VALID, id="key revoked before now"),
    pytest.param(_sender_key_not_yet_valid, Reason.KEY_NOT_VALID,
                 id="key not yet valid at created_at"),
    pytest.param(_sender_key_expired, Reason.KEY_NOT_VALID, id="key expired before now"),
    pytest.param(lambda w: _referral(w, signer=w.signing[LEEDS_FD]), Reason.KEY_NOT_VALID,
                 id="another unit's key"),
    pytest.param(lambda w: _referral(w, signer=SigningKeyPair.generate()), Reason.KEY_NOT_VALID,
                 id="unregistered key"),
    pytest.param(_as_manager_key, Reason.KEY_NOT_VALID, id="a manager key as first signature"),
    pytest.param(_encryption_key_as_signing_key, Reason.KEY_NOT_VALID,
                 id="the unit's encryption key id"),
    pytest.param(lambda w: _referral(w, signer=None), Reason.BAD_SIGNATURE, id="no signature"),
    pytest.param(lambda w: _referral(w, signed_bytes=b"{}"), Reason.BAD_SIGNATURE,
                 id="signed other bytes"),
    pytest.param(_flipped_signature, Reason.BAD_SIGNATURE, id="flipped signature bit"),
    pytest.param(_header_changed_after_signing, Reason.BAD_SIGNATURE,
                 id="header bytes changed after signing"),
    # 4. duplicates.
    pytest.param(_duplicate_of_routed, Reason.DUPLICATE, id="id of a routed message"),
    pytest.param(_duplicate_of_refused_stale, Reason.DUPLICATE,
                 id="id of an authenticated refusal"),
    # 5. freshness.
    pytest.param(lambda w: _referral(w, created_at=NOW + timedelta(seconds=301)), Reason.STALE,
                 id="from the future"),
    pytest.param(lambda w: _referral(w, created_at=NOW - timedelta(hours=24, seconds=1)),
                 Reason.STALE, id="older than a day"),
    pytest.param(lambda w: _referral(w, created_at=NOW - timedelta(days=2),
                                     protocol="wy-iisp-2099"),
                 Reason.STALE, id="stale is checked before the protocol"),
    # 6. protocol and signatories.
    pytest.param(lambda w: _referral(w, protocol="wy-iisp-2099"), Reason.UNKNOWN_PROTOCOL,
                 id="unknown protocol"),
    pytest.param(_protocol_changed(status=ProtocolStatus.SUSPENDED),
                 Reason.PROTOCOL_NOT_IN_FORCE, id="suspended"),
    pytest.param(_protocol_changed(status=ProtocolStatus.DRAFT),
                 Reason.PROTOCOL_NOT_IN_FORCE, id="draft"),
    pytest.param(_protocol_changed(status=ProtocolStatus.ENDED),
                 Reason.PROTOCOL_NOT_IN_FORCE, id="ended"),
    pytest.param(_protocol_changed(effective_from=NOW + timedelta(days=1)),
                 Reason.PROTOCOL_NOT_IN_FORCE, id="not yet effective"),
    pytest.param(_protocol_changed(ends_at=NOW), Reason.PROTOCOL_NOT_IN_FORCE,
                 id="past its end"),
    pytest.param(lambda w: w.envelope("referral", "safeguarding-referral", OUTSIDER, LEEDS_FD),
                 Reason.NOT_SIGNATORY, id="sender not a signatory"),
    pytest.param(lambda w: w.envelope("referral", "safeguarding-referral", LEEDS_FD, OUTSIDER),
                 Reason.NOT_SIGNATORY, id="recipient not a signatory"),
    # 7. purpose, kind, roles.
    pytest.param(lambda w: w.envelope("referral", "gossip", KIRK_EDU, LEEDS_FD),
                 Reason.UNKNOWN_PURPOSE, id="unknown purpose"),
    pytest.param(lambda w: w.envelope("referral", "section-47-enquiry", LEEDS_FD, POLICE_HUB),
                 Reason.KIND_NOT_PERMITTED, id="referral for a request purpose"),
    pytest.param(lambda w: w.envelope("request", "operation-encompass", POLICE_HUB, KIRK_EDU),
                 Reason.KIND_NOT_PERMITTED, id="request for a referral purpose"),
    pytest.param(lambda w: w.envelope("response", "early-help", LEEDS_EH, LEEDS_EDU,
                                      in_reply_to=str(uuid.uuid4())),
                 Reason.KIND_NOT_PERMITTED, id="response where nothing is requested"),
    pytest.param(lambda w: w.envelope("referral", "operation-encompass", LEEDS_FD, KIRK_EDU),
                 Reason.SENDER_NOT_PERMITTED, id="front door sends Encompass"),
    pytest.param(lambda w: w.envelope("referral", "early-help", POLICE_HUB, LEEDS_EH),
                 Reason.SENDER_NOT_PERMITTED, id="police send early help"),
    pytest.param(lambda w: w.envelope("response", "section-47-enquiry", LEEDS_EDU, LEEDS_FD,
                                      in_reply_to=str(uuid.uuid4())),
                 Reason.SENDER_NOT_PERMITTED, id="response from a unit that cannot receive"),
    pytest.param(lambda w: w.envelope("receipt", "operation-encompass", LEEDS_FD, POLICE_HUB,
                                      in_reply_to=str(uuid.uuid4())),
                 Reason.SENDER_NOT_PERMITTED, id="receipt from a unit outside the purpose"),
    pytest.param(lambda w: w.envelope("referral", "safeguarding-referral", KIRK_EDU,
                                      POLICE_INTEL),
                 Reason.RECIPIENT_NOT_PERMITTED, id="referral to intelligence"),
    pytest.param(lambda w: w.envelope("referral", "safeguarding-referral", KIRK_EDU,
                                      "leeds-cc/nowhere"),
                 Reason.RECIPIENT_NOT_PERMITTED, id="unregistered recipient unit"),
    pytest.param(lambda w: w.envelope("response", "section-47-enquiry", POLICE_HUB, LEEDS_EDU,
                                      in_reply_to=str(uuid.uuid4())),
                 Reason.RECIPIENT_NOT_PERMITTED, id="response to a unit that cannot request"),
    pytest.param(lambda w: w.envelope("request", "child-in-need-assessment", LEEDS_CSC,
                                      POLICE_HUB),
                 Reason.RECIPIENT_NOT_PERMITTED, id="s17 request to the police"),
    # 8. need to know.
    pytest.param(lambda w: _s47(w, categories=["identity", "intelligence"]),
                 Reason.CATEGORY_NOT_PERMITTED, id="intelligence in s47"),
    pytest.param(lambda w: w.envelope("referral", "early-help", LEEDS_EDU, LEEDS_EH,
                                      categories=["identity", "offending"]),
                 Reason.CATEGORY_NOT_PERMITTED, id="offending in early help"),
    pytest.param(lambda w: _referral(w, categories=["identity", "not-a-category"]),
                 Reason.CATEGORY_NOT_PERMITTED, id="undeclared category"),
    # 9. consent.
    pytest.param(lambda w: w.envelope("referral", "early-help", LEEDS_EDU, LEEDS_EH,
                                      consent=("not_sought", "child-significant-harm")),
                 Reason.CONSENT_REQUIRED, id="early help without consent"),
    pytest.param(lambda w: w.envelope("request", "child-in-need-assessment", LEEDS_CSC,
                                      LEEDS_HEALTH, consent=("refused", "serious-crime")),
                 Reason.CONSENT_REQUIRED, id="s17 with consent refused"),
    pytest.param(lambda w: w.envelope("referral", "marac-referral", POLICE_HUB, LEEDS_MARAC,
                                      consent=("not_sought", "serious-crime")),
                 Reason.GROUND_NOT_PERMITTED, id="MARAC on serious crime"),
    pytest.param(lambda w: _s47(w, consent=("not_sought", "adult-serious-harm")),
                 Reason.GROUND_NOT_PERMITTED, id="s47 on adult harm"),
    pytest.param(lambda w: _referral(w, consent=("not_sought", None)),
                 Reason.GROUND_NOT_PERMITTED, id="not sought without a ground"),
    # 10. informing the subject.
    pytest.param(lambda w: w.envelope("request", "child-in-need-assessment", LEEDS_CSC,
                                      LEEDS_HEALTH, subject_informed=False),
                 Reason.SUBJECT_MUST_BE_INFORMED, id="s17 not told"),
    pytest.param(lambda w: w.envelope("referral", "early-help", LEEDS_EDU, LEEDS_EH,
                                      subject_informed=False),
                 Reason.SUBJECT_MUST_BE_INFORMED, id="early help not told"),
    # 11. approvals.
    pytest.param(lambda w: w.envelope("referral", "dvds-right-to-know", LEEDS_MARAC, POLICE_HUB,
                                      countersigners=[]),
                 Reason.APPROVAL_REQUIRED, id="DVDS without a manager"),
    pytest.param(lambda w: _referral(w, consent=("refused", "child-significant-harm"),
                                     countersigners=[]),
                 Reason.APPROVAL_REQUIRED, id="refusal overridden without a manager"),
    pytest.param(_countersigned_by("wy-police"), Reason.APPROVAL_REQUIRED,
                 id="manager of another organisation"),
    pytest.param(lambda w: w.envelope("referral", "dvds-right-to-know", LEEDS_MARAC, POLICE_HUB,
                                      countersigners=[w.signing[LEEDS_FD]]),
                 Reason.APPROVAL_REQUIRED, id="a unit key is no manager"),
    pytest.param(_manager_key_not_valid_then, Reason.APPROVAL_REQUIRED,
                 id="manager key not valid at created_at"),
    pytest.param(lambda w: _bad_countersignature(w, "operation-encompass", POLICE_HUB, KIRK_EDU),
                 Reason.BAD_SIGNATURE, id="forged countersignature where none is needed"),
    pytest.param(lambda w: _bad_countersignature(w, "dvds-right-to-know", LEEDS_MARAC,
                                                 POLICE_HUB),
                 Reason.BAD_SIGNATURE, id="approved, plus a forged countersignature"),
    # 12. replies.
    pytest.param(lambda w: _referral(w, in_reply_to=str(uuid.uuid4())),
                 Reason.NO_MATCHING_REQUEST, id="referral in reply"),
    pytest.param(lambda w: w.envelope("response", "section-47-enquiry", POLICE_HUB, LEEDS_FD),
                 Reason.NO_MATCHING_REQUEST, id="response in reply to nothing"),
    pytest.param(lambda w: w.envelope("response", "section-47-enquiry", POLICE_HUB, LEEDS_FD,
                                      in_reply_to=str(uuid.uuid4())),
                 Reason.NO_MATCHING_REQUEST, id="response to an unknown id"),
    pytest.param(_reply_to_refused_request, Reason.NO_MATCHING_REQUEST,
                 id="reply to a refused request"),
    pytest.param(_reply_to_another_units_request, Reason.NO_MATCHING_REQUEST,
                 id="reply to another unit's request"),
    pytest.param(_reply_to_the_wrong_requester, Reason.NO_MATCHING_REQUEST,
                 id="reply to someone who did not ask"),
    pytest.param(_reply_under_another_purpose, Reason.NO_MATCHING_REQUEST,
                 id="reply under another purpose"),
    pytest.param(_response_to_a_response, Reason.NO_MATCHING_REQUEST,
                 id="response to a response"),
    pytest.param(_receipt_for_a_receipt, Reason.NO_MATCHING_REQUEST, id="receipt for a receipt"),
    pytest.param(_receipt_from_a_stranger, Reason.NO_MATCHING_REQUEST,
                 id="receipt by a unit that was not sent it"),
    # 13. payload.
    pytest.param(lambda w: _referral(w, recipient_key=w.encryption[KIRK_EDU].key_id),
                 Reason.RECIPIENT_KEY_NOT_VALID, id="sealed to the sender's key"),
    pytest.param(lambda w: _referral(w, recipient_key=w.signing[LEEDS_FD].key_id),
                 Reason.RECIPIENT_KEY_NOT_VALID, id="recipient's signing key"),
    pytest.param(_recipient_key_revoked, Reason.RECIPIENT_KEY_NOT_VALID,
                 id="recipient key revoked"),
    pytest.param(_recipient_key_expired, Reason.RECIPIENT_KEY_NOT_VALID,
                 id="recipient key expired"),
    pytest.param(lambda w: _referral(w, received=lambda c: c + b"\x00"),
                 Reason.PAYLOAD_MISMATCH, id="longer than claimed"),
    pytest.param(lambda w: _referral(w, received=lambda c: _flip(c, 40)),
                 Reason.PAYLOAD_MISMATCH, id="other bytes than claimed"),
]


@pytest.mark.parametrize(("build", "expected"), CASES)
def test_refusals(world: World, build: Build, expected: Reason) -> None:
    assert world.decide(build(world)) is expected


def test_every_reason_of_checks_2_to_13_has_a_case() -> None:
    decoding = {Reason.MALFORMED, Reason.TOO_LARGE, Reason.UNSUPPORTED_VERSION}
    assert {c.values[1] for c in CASES} == set(Reason) - decoding


# --- duplicates: which earlier entries reserve a message id ------------------------------


@pytest.mark.parametrize(("first", "reason"), [
    pytest.param(lambda w, mid: _referral(w, message_id=mid, signed_bytes=b"{}"),
                 Reason.BAD_SIGNATURE, id="bad_signature"),
    pytest.param(lambda w, mid: _referral(w, message_id=mid, user_id="leeds-cc.front-door"),
                 Reason.SENDER_MISMATCH, id="sender_mismatch"),
    pytest.param(lambda w, mid: w.envelope("referral", "safeguarding-referral",
                                           "leeds-cc/nowhere", LEEDS_FD, message_id=mid),
                 Reason.UNKNOWN_SENDER, id="unknown_sender"),
    pytest.param(lambda w, mid: _referral(w, message_id=mid, signer=w.signing[LEEDS_FD]),
                 Reason.KEY_NOT_VALID, id="key_not_valid"),
])
def test_unauthenticated_entries_do_not_reserve_the_id(
        world: World, first: Callable[[World, str], Submission], reason: Reason) -> None:
    mid = str(uuid.uuid4())
    assert world.send(first(world, mid)) is reason
    assert world.send(_referral(world, message_id=mid)) is None
    # Once routed, the id is taken.
    assert world.decide(_referral(world, message_id=mid,
                                  created_at=CREATED + timedelta(seconds=1))) is Reason.DUPLICATE


def test_unrelated_log_entries_do_not_matter(world: World) -> None:
    for _ in range(3):
        world.routed(_referral(world))
    assert world.decide(_referral(world)) is None


def test_decide_does_not_write_to_the_log(world: World) -> None:
    request = world.routed(_s47(world))
    before = list(world.log.entries)
    world.decide(_response_to(world, request, POLICE_HUB, LEEDS_FD))
    assert world.log.entries == before
