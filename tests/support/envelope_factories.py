"""Keys, a directory and envelope factories shared by the envelope tests.

Plain functions rather than fixtures so hypothesis tests can use them too.
The world's keys are generated once per session; every envelope is new.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from keys import EncryptionKeyPair, SigningKeyPair, b64encode, key_id, seal
from protocols.envelope import CIPHER, ParsedEnvelope, build_envelope
from protocols.model import (
    Category,
    CategoryId,
    Consent,
    Directory,
    Ground,
    GroundId,
    KeyRecord,
    LegalBasis,
    Organisation,
    OrgId,
    Protocol,
    ProtocolId,
    ProtocolStatus,
    Purpose,
    PurposeId,
    Role,
    Unit,
    UnitId,
)
from protocols.policy import LoggedMessage, signing_input

T0 = datetime(2026, 11, 24, 13, 50, 41, tzinfo=UTC)
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
POLICE = "west-yorkshire-police/police-safeguarding"
FRONT_DOOR = "leeds-cc/front-door"
PROTOCOL = "wy-iisp-2016"
REFERRAL = "safeguarding-referral"
S47 = "section-47-enquiry"
CATEGORIES = ("address", "concern", "domestic-abuse", "education", "health", "household",
              "identity", "offending")
#: Personal data of the kind a record holds; tests assert it never leaks.
SECRET_NAME = "Jane Example-Secret"


@dataclass(frozen=True)
class World:
    police_sign: SigningKeyPair
    police_enc: EncryptionKeyPair
    door_sign: SigningKeyPair
    door_enc: EncryptionKeyPair
    door_manager: SigningKeyPair
    police_manager: SigningKeyPair
    broker: SigningKeyPair
    registry: SigningKeyPair
    stranger_enc: EncryptionKeyPair
    directory: Directory


class EmptyLog:
    """A transfer log with nothing in it."""

    def find(self, message_id: str) -> Sequence[LoggedMessage]:
        return ()


def _purpose(pid: str, *, opens: set[str], senders: set[str], recipients: set[str],
             categories: Sequence[str], approval: str, consent_required: bool = False,
             grounds: Sequence[str] = ("child-significant-harm",)) -> Purpose:
    return Purpose(
        id=PurposeId(pid), title=pid, description=pid, opens=frozenset(opens),  # type: ignore[arg-type]
        sender_roles=frozenset(Role(r) for r in senders),
        recipient_roles=frozenset(Role(r) for r in recipients),
        data_categories=frozenset(CategoryId(c) for c in categories),
        consent_required=consent_required, grounds=frozenset(GroundId(g) for g in grounds),
        subject_may_be_withheld=True, approval=approval,  # type: ignore[arg-type]
        legal_basis=LegalBasis(article6="6(1)(e)"),
    )


def _protocol() -> Protocol:
    return Protocol(
        id=ProtocolId(PROTOCOL), version=1, title="test protocol",
        status=ProtocolStatus.IN_FORCE, effective_from=EPOCH, ends_at=None, review_by=None,
        approved_by="test", signatories=frozenset({OrgId("leeds-cc"),
                                                  OrgId("west-yorkshire-police")}),
        grounds=(Ground(GroundId("child-significant-harm"), "csh"),),
        categories=tuple(Category(CategoryId(c), c) for c in CATEGORIES),
        purposes=(
            _purpose(REFERRAL, opens={"referral"}, senders={"*"}, recipients={"front-door"},
                     categories=CATEGORIES, approval="when_refused"),
            _purpose(S47, opens={"request"}, senders={"front-door", "police-safeguarding"},
                     recipients={"front-door", "police-safeguarding"},
                     categories=("concern", "identity"), approval="never"),
        ),
    )


def _unit_key(pair: SigningKeyPair | EncryptionKeyPair, owner: str, use: str) -> KeyRecord:
    return KeyRecord(key_id=pair.key_id, holder="unit", owner=owner, use=use,  # type: ignore[arg-type]
                     public=pair.public, valid_from=EPOCH)


def _manager_key(pair: SigningKeyPair, org: str) -> KeyRecord:
    return KeyRecord(key_id=pair.key_id, holder="manager", owner=org, use="signing",
                     public=pair.public, valid_from=EPOCH, manager=f"{org}-m1")


@cache
def world() -> World:
    keys = {name: SigningKeyPair.generate() for name in
            ("police_sign", "door_sign", "door_manager", "police_manager", "broker",
             "registry")}
    encs = {name: EncryptionKeyPair.generate() for name in
            ("police_enc", "door_enc", "stranger_enc")}
    orgs = (
        Organisation(OrgId("leeds-cc"), "Leeds", "council", (
            Unit(OrgId("leeds-cc"), UnitId("front-door"), "Front door",
                 frozenset({Role("front-door")})),)),
        Organisation(OrgId("west-yorkshire-police"), "WYP", "police", (
            Unit(OrgId("west-yorkshire-police"), UnitId("police-safeguarding"), "Safeguarding",
                 frozenset({Role("police-safeguarding")})),)),
    )
    records = (
        _unit_key(keys["police_sign"], POLICE, "signing"),
        _unit_key(encs["police_enc"], POLICE, "encryption"),
        _unit_key(keys["door_sign"], FRONT_DOOR, "signing"),
        _unit_key(encs["door_enc"], FRONT_DOOR, "encryption"),
        _manager_key(keys["door_manager"], "leeds-cc"),
        _manager_key(keys["police_manager"], "west-yorkshire-police"),
    )
    directory = Directory(version=7, issued_at=EPOCH, organisations=orgs,
                          protocols=(_protocol(),), keys=records)
    return World(**keys, **encs, directory=directory)  # type: ignore[arg-type]


def referral(w: World | None = None, **overrides: Any) -> tuple[bytes, ParsedEnvelope]:
    """A valid referral from the police unit to the front door; any argument can change."""
    w = w or world()
    args: dict[str, Any] = dict(
        kind="referral", protocol=PROTOCOL, purpose=REFERRAL, sender=POLICE,
        recipient=FRONT_DOOR,
        record={"identity": {"name": SECRET_NAME, "dob": "2015-03-01"},
                "concern": "bruising seen at school"},
        reasons="risk of significant harm; consent not sought", sender_key=w.police_sign,
        recipient_key=w.door_enc.public, created_at=T0,
        consent=Consent("not_sought", GroundId("child-significant-harm")),
        subject_informed=False,
    )
    args.update(overrides)
    return build_envelope(**args)


def header_doc(env: ParsedEnvelope) -> dict[str, Any]:
    return json.loads(env.header_bytes)


def compact(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def sign_all(header_bytes: bytes, signers: Sequence[SigningKeyPair]) -> list[dict[str, str]]:
    signed = signing_input(header_bytes)
    return [{"key": k.key_id, "sig": b64encode(k.sign(signed))} for k in signers]


def body_of(header_bytes: bytes, payload: bytes, signers: Sequence[SigningKeyPair],
            **top: Any) -> bytes:
    """An envelope body from raw header bytes, signed by ``signers``; ``top`` overrides."""
    doc: dict[str, Any] = {"version": 1, "header": b64encode(header_bytes),
                           "signatures": sign_all(header_bytes, signers),
                           "payload": b64encode(payload)}
    doc.update(top)
    return compact(doc)


def forge(*, plaintext: bytes | dict[str, Any], seal_to: bytes, header_key: bytes | None = None,
          edit: Callable[[dict[str, Any]], None] = lambda h: None,
          base: ParsedEnvelope | None = None) -> bytes:
    """Seal ``plaintext`` to ``seal_to`` under a copy of ``base``'s header, edited and re-signed.

    The header names ``header_key`` (default: ``seal_to``) as the recipient key,
    and the ciphertext's real length and hash, so only what ``open_payload``
    checks after them can fail.
    """
    w = world()
    env = base or referral()[1]
    raw = plaintext if isinstance(plaintext, bytes) else json.dumps(plaintext).encode()
    ciphertext = seal(seal_to, raw)
    h = header_doc(env)
    edit(h)
    h["payload"] = payload_ref(ciphertext, header_key or seal_to)
    return body_of(compact(h), ciphertext, [w.police_sign])


def payload_ref(ciphertext: bytes, recipient_public: bytes) -> dict[str, Any]:
    return {"cipher": CIPHER, "recipient_key": key_id(recipient_public),
            "sha256": hashlib.sha256(ciphertext).hexdigest(), "length": len(ciphertext)}


def flip_byte(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    """``data`` with the byte at ``offset`` XORed with ``mask`` (after PyNaCl's test utils)."""
    assert mask & 0xFF
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1:]
