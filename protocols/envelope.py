"""The wire format, version 1 (wire spec sections 2 to 4): envelopes, payloads and notices.

The only module that knows the envelope, payload and notice JSON. Pure functions
over bytes and keys: no I/O, no clock (times are passed in), no logging.

Invariants:

- Header bytes are kept exactly as received. They are hashed (``header_sha256``)
  and verified as received and never re-serialised: a :class:`ParsedEnvelope`
  carries the bytes beside the parsed :class:`~protocols.model.Header`.
- Parsing is strict (check 1 of wire spec 3.3). JSON must be UTF-8 without
  duplicate keys, ``NaN`` or ``Infinity``; every field is required and unknown
  fields are refused; a JSON boolean is never an integer and an integer never a
  boolean; base64 is padded and canonical; hex is lowercase. Whatever parses
  builds back to a value of the documented form, so later code need not recheck.
- Refusals name a field path and a problem, never a value received: a sender
  may have put personal data where a code belongs, and refusals reach logs.
- Builders parse what they built before returning it, so this module never
  emits what it would refuse.

Readings of the spec chosen here:

- Signatures, "At most 4": the sentence follows "Further entries are
  countersignatures", and the sender's signature is always exactly one, so the
  limit counts countersignatures. An envelope carries 1 to ``MAX_SIGNATURES``
  (5) signatures. A sender that must also pass a reader taking the stricter
  reading keeps to 3 countersignatures.
- Check 1 runs in this order: body size (before any parsing), UTF-8 and JSON,
  ``version`` (an integer other than 1 is ``unsupported_version`` whatever the
  other fields are, since another version may have another shape; a version
  that is not an integer is ``malformed``), the header (base64, at most 16 KiB
  else ``too_large``, then its fields), the set of top-level fields, the
  signatures, the payload. When the header was read but the rest of the body
  fails, :class:`EnvelopeRefused` carries the header, for a recipient's own
  record of what it rejected. The transfer log never uses it: a body that
  fails check 1 names nothing from its header (wire spec 6.1).
- ``message_id`` and ``in_reply_to`` are RFC 9562 version 4 UUIDs: version
  nibble 4 and variant bits ``10``, lowercase and hyphenated.
- Consent: ``null`` for ``declined`` and ``receipt``, an object for every other
  kind. ``given`` has ground ``null``; ``not_sought`` and ``refused`` name a
  ground of the name form. Whether the ground is one the purpose accepts is
  check 9, not decoding.
- ``data_categories`` is strictly increasing (sorted, no repeats) by code point.
- Repeated signature keys are not refused here: the spec does not forbid them,
  and check 11 verifies every countersignature anyway.
- The recipient's checks (3.2) are reported with :class:`PayloadRefused` codes.
  A receipt's record must be exactly ``{"received", "header_sha256"}`` (else
  ``malformed``), and ``received`` must equal the header's ``in_reply_to``
  (else ``binding_mismatch``): a receipt is bound to what it acknowledges. A
  ``declined`` record must be ``{}``, since its ``data_categories`` is ``[]``.
- A notice body is at most ``MAX_NOTICE_BYTES``; the spec sets no limit, but a
  notice is a few hundred bytes and a client should not parse megabytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from itertools import pairwise
from typing import Any, Final, Literal

from keys import (
    EncryptionKeyPair,
    KeyId,
    SigningKeyPair,
    b64decode,
    b64encode,
    key_id,
    seal,
    verify_signature,
)
from keys.errors import DecryptionError, KeyFormatError
from protocols import strict_json
from protocols.directory import format_time, parse_time
from protocols.header_grammar import CIPHER, header_values
from protocols.model import (
    CONSENT_STATUSES,
    KINDS,
    Address,
    CategoryId,
    Consent,
    ConsentStatus,
    GroundId,
    Header,
    Kind,
    MessageId,
    PayloadRef,
    ProtocolId,
    PurposeId,
    Signature,
    Submission,
)
from protocols.policy import signing_input
from protocols.reasons import Reason

__all__ = [
    "CIPHER",
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_NOTICE_BYTES",
    "MAX_SIGNATURES",
    "NOTICE_CONTEXT",
    "EnvelopeRefused",
    "Notice",
    "NoticeRefused",
    "ParsedEnvelope",
    "Payload",
    "PayloadRefused",
    "build_envelope",
    "build_header",
    "build_notice",
    "countersign",
    "header_bytes_for",
    "header_codes",
    "open_payload",
    "parse_envelope",
    "parse_header",
    "parse_header_json",
    "parse_notice",
    "verify_sender_signature",
]

VERSION: Final = 1
MAX_HEADER_BYTES: Final = 16 * 1024
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
#: The sender's signature and at most 4 countersignatures (see the module docstring).
MAX_SIGNATURES: Final = 5
MAX_NOTICE_BYTES: Final = 16 * 1024
NOTICE_CONTEXT: Final = b"infoshare/notice/v1\n"
SIGNATURE_BYTES: Final = 64
NAME_MAX: Final = 40

# [0-9] and [a-z] rather than \d and \w: those match non-ASCII digits and letters.
_NAME = re.compile(r"[a-z0-9](?:-?[a-z0-9])*")
_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# The spec's form exactly, checked before parse_time so that check 1 does not
# rest on strptime, which takes a lowercase "t", a space-padded day and
# non-ASCII digits unless its caller guards against them.
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")

_ENVELOPE_FIELDS = frozenset({"version", "header", "signatures", "payload"})
_HEADER_FIELDS = frozenset({
    "message_id", "kind", "protocol", "purpose", "sender", "recipient", "created_at",
    "in_reply_to", "consent", "subject_informed", "data_categories", "payload",
})
_CONSENT_FIELDS = frozenset({"status", "ground"})
_PAYLOAD_REF_FIELDS = frozenset({"cipher", "recipient_key", "sha256", "length"})
_SIGNATURE_FIELDS = frozenset({"key", "sig"})
_PLAINTEXT_FIELDS = frozenset({"message_id", "sender", "recipient", "purpose", "record",
                               "reasons"})
_RECEIPT_FIELDS = frozenset({"received", "header_sha256"})
_NOTICE_BODY_FIELDS = frozenset({"version", "notice", "signature"})
_NOTICE_FIELDS = frozenset({"message_id", "decision", "reason", "seq", "at"})

#: Kinds that carry no data: no consent, no categories, subject informed (wire spec 3).
_DATALESS: Final = frozenset({"declined", "receipt"})
_KIND_OF: dict[str, Kind] = {k: k for k in KINDS}
_STATUS_OF: dict[str, ConsentStatus] = {s: s for s in CONSENT_STATUSES}
_DECISIONS: Final = frozenset({"routed", "refused"})
_REASON_CODES: Final = frozenset(r.value for r in Reason)

PayloadProblem = Literal[
    "undecryptable", "payload_mismatch", "binding_mismatch", "category_not_permitted",
    "malformed",
]
NoticeProblem = Literal["unknown_key", "bad_signature"]


# --- errors ---------------------------------------------------------------------------


class EnvelopeRefused(Exception):
    """Check 1 of wire spec 3.3 failed: the body cannot be read as a version 1 envelope.

    ``reason`` is ``malformed``, ``too_large`` or ``unsupported_version``;
    ``detail`` names a field and a problem, never a value. ``header`` and
    ``header_bytes`` are set when the header itself was read but something
    else in the body was not.
    """

    def __init__(self, reason: Reason, detail: str, *, header: Header | None = None,
                 header_bytes: bytes | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.header = header
        self.header_bytes = header_bytes


class PayloadRefused(Exception):
    """The recipient's checks of wire spec 3.2 failed; ``code`` says which."""

    def __init__(self, code: PayloadProblem, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code: PayloadProblem = code
        self.detail = detail


class NoticeRefused(Exception):
    """A notice is not signed by the pinned broker key; ``code`` says how."""

    def __init__(self, code: NoticeProblem, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code: NoticeProblem = code
        self.detail = detail


def _malformed(path: str, problem: str) -> EnvelopeRefused:
    return EnvelopeRefused(Reason.MALFORMED, f"{path}: {problem}")


# --- strict JSON ----------------------------------------------------------------------


def _loads(data: bytes, path: str) -> object:
    """Parse strict UTF-8 JSON.

    Raises:
        EnvelopeRefused: malformed.
    """
    try:
        return strict_json.loads(data)
    except strict_json.StrictJSONError as e:
        raise _malformed(path, str(e)) from None


def _dumps(value: object) -> bytes:
    """Compact UTF-8 JSON, as this module writes every document."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _encodable(value: object) -> bool:
    """Whether every string in ``value`` is valid Unicode (JSON escapes allow lone surrogates)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    return True


# --- field readers: each returns the value in its documented form or raises malformed --


def _object(value: object, path: str, fields: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(path, "not an object")
    missing = fields - value.keys()
    if missing:
        raise _malformed(path, f"missing field {min(missing)}")
    if value.keys() - fields:
        # The unknown name is not echoed: it came from the sender.
        raise _malformed(path, "unknown field")
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _malformed(path, "not a string")
    return value


def _matching(value: object, path: str, pattern: re.Pattern[str], form: str) -> str:
    text = _string(value, path)
    if not pattern.fullmatch(text):
        raise _malformed(path, f"not {form}")
    return text


def _name(value: object, path: str) -> str:
    text = _string(value, path)
    if len(text) > NAME_MAX or not _NAME.fullmatch(text):
        raise _malformed(path, "not a name")
    return text


def _address(value: object, path: str) -> Address:
    org, slash, unit = _string(value, path).partition("/")
    if not slash:
        raise _malformed(path, "not an address")
    return Address(f"{_name(org, path)}/{_name(unit, path)}")


def _message_id(value: object, path: str) -> MessageId:
    return MessageId(_matching(value, path, _UUID4, "a lowercase UUIDv4"))


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _malformed(path, "not a boolean")
    return value


def _count(value: object, path: str) -> int:
    # bool is a subclass of int in Python; JSON true is not a number.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _malformed(path, "not an integer")
    if value < 0:
        raise _malformed(path, "negative")
    return value


def _time(value: object, path: str) -> datetime:
    text = _matching(value, path, _TIME, "a time YYYY-MM-DDTHH:MM:SSZ")
    try:
        return parse_time(text)
    except ValueError:
        raise _malformed(path, "not a valid date and time") from None


def _base64(value: object, path: str) -> bytes:
    text = _string(value, path)
    try:
        return b64decode(text)
    except KeyFormatError:
        raise _malformed(path, "not canonical padded base64") from None


# --- header ---------------------------------------------------------------------------


def header_codes(h: Header) -> dict[str, Any]:
    """A parsed header's fields as JSON values, without the payload reference.

    These are codes and ids only (section 3.2): what a record file, a log
    entry or a report may show of a message.
    """
    return {
        "message_id": h.message_id, "kind": h.kind, "protocol": h.protocol,
        "purpose": h.purpose, "sender": h.sender, "recipient": h.recipient,
        "created_at": format_time(h.created_at), "in_reply_to": h.in_reply_to,
        "consent": None if h.consent is None else {"status": h.consent.status,
                                                   "ground": h.consent.ground},
        "subject_informed": h.subject_informed, "data_categories": list(h.data_categories),
    }


def parse_header(header_bytes: bytes) -> Header:
    """Parse header bytes strictly (wire spec 3 and section 1 forms).

    Raises:
        EnvelopeRefused: ``too_large`` over 16 KiB, otherwise ``malformed``.
    """
    if len(header_bytes) <= MAX_HEADER_BYTES and (
            header := header_values(header_bytes)) is not None:
        return header
    return parse_header_json(header_bytes)


def parse_header_json(header_bytes: bytes) -> Header:
    """:func:`parse_header` through the JSON parser and every field check, without the
    fast path of :mod:`protocols.header_grammar` (which only ever takes what this takes).

    Raises:
        EnvelopeRefused: as :func:`parse_header`.
    """
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise EnvelopeRefused(Reason.TOO_LARGE, f"header: over {MAX_HEADER_BYTES} bytes")
    h = _object(_loads(header_bytes, "header"), "header", _HEADER_FIELDS)
    kind = _kind(h["kind"])
    in_reply_to = h["in_reply_to"]
    return Header(
        message_id=_message_id(h["message_id"], "header.message_id"),
        kind=kind,
        protocol=ProtocolId(_name(h["protocol"], "header.protocol")),
        purpose=PurposeId(_name(h["purpose"], "header.purpose")),
        sender=_address(h["sender"], "header.sender"),
        recipient=_address(h["recipient"], "header.recipient"),
        created_at=_time(h["created_at"], "header.created_at"),
        in_reply_to=(None if in_reply_to is None
                     else _message_id(in_reply_to, "header.in_reply_to")),
        consent=_consent(h["consent"], kind),
        subject_informed=_subject_informed(h["subject_informed"], kind),
        data_categories=_categories(h["data_categories"], kind),
        payload=_payload_ref(h["payload"]),
    )


def _kind(value: object) -> Kind:
    kind = _KIND_OF.get(_string(value, "header.kind"))
    if kind is None:
        raise _malformed("header.kind", "not a kind")
    return kind


def _consent(value: object, kind: Kind) -> Consent | None:
    if kind in _DATALESS:
        if value is not None:
            raise _malformed("header.consent", f"must be null for {kind}")
        return None
    c = _object(value, "header.consent", _CONSENT_FIELDS)
    status = _STATUS_OF.get(_string(c["status"], "header.consent.status"))
    if status is None:
        raise _malformed("header.consent.status", "not a consent status")
    if status == "given":
        if c["ground"] is not None:
            raise _malformed("header.consent.ground", "must be null when consent is given")
        return Consent(status=status, ground=None)
    return Consent(status=status, ground=GroundId(_name(c["ground"], "header.consent.ground")))


def _subject_informed(value: object, kind: Kind) -> bool:
    informed = _boolean(value, "header.subject_informed")
    if kind in _DATALESS and not informed:
        raise _malformed("header.subject_informed", f"must be true for {kind}")
    return informed


def _categories(value: object, kind: Kind) -> tuple[CategoryId, ...]:
    path = "header.data_categories"
    if not isinstance(value, list):
        raise _malformed(path, "not a list")
    names = [_name(v, path) for v in value]
    if any(a >= b for a, b in pairwise(names)):
        raise _malformed(path, "not sorted without repeats")
    if kind in _DATALESS and names:
        raise _malformed(path, f"must be empty for {kind}")
    return tuple(CategoryId(n) for n in names)


def _payload_ref(value: object) -> PayloadRef:
    p = _object(value, "header.payload", _PAYLOAD_REF_FIELDS)
    if _string(p["cipher"], "header.payload.cipher") != CIPHER:
        raise _malformed("header.payload.cipher", "not the v1 cipher")
    return PayloadRef(
        cipher=CIPHER,
        recipient_key=KeyId(_matching(p["recipient_key"], "header.payload.recipient_key",
                                      _HEX32, "a key id")),
        sha256=_matching(p["sha256"], "header.payload.sha256", _HEX64, "a SHA-256 hex digest"),
        length=_count(p["length"], "header.payload.length"),
    )


def build_header(*, message_id: str, kind: str, protocol: str, purpose: str, sender: str,
                 recipient: str, created_at: datetime, in_reply_to: str | None,
                 consent: Consent | None, subject_informed: bool,
                 data_categories: Sequence[str], recipient_key: KeyId,
                 ciphertext: bytes) -> bytes:
    """The header bytes (compact UTF-8 JSON, fields in spec order) for these values.

    ``data_categories`` is sorted here; ``created_at`` must be timezone-aware
    and loses its fraction of a second.

    Raises:
        ValueError: the values do not make a valid header (repeated categories,
            a naive time, a name not of the section 1 form, ...).
        EnvelopeRefused: ``too_large``: the header would be over 16 KiB.
    """
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    doc = {
        "message_id": message_id,
        "kind": kind,
        "protocol": protocol,
        "purpose": purpose,
        "sender": sender,
        "recipient": recipient,
        "created_at": format_time(created_at),
        "in_reply_to": in_reply_to,
        "consent": None if consent is None else {"status": consent.status,
                                                 "ground": consent.ground},
        "subject_informed": subject_informed,
        "data_categories": sorted(data_categories),
        "payload": {
            "cipher": CIPHER,
            "recipient_key": recipient_key,
            "sha256": hashlib.sha256(ciphertext).hexdigest(),
            "length": len(ciphertext),
        },
    }
    header_bytes = _dumps(doc)
    try:
        parse_header(header_bytes)
    except EnvelopeRefused as e:
        if e.reason is Reason.TOO_LARGE:
            raise  # the broker's reason code, as for a body over the limit
        raise ValueError(f"invalid header: {e.detail}") from e
    return header_bytes


#: The same function under the name some callers know it by.
header_bytes_for = build_header


# --- envelope -------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedEnvelope:
    """An envelope that passed check 1, with its header bytes exactly as received."""

    header: Header
    header_bytes: bytes
    header_sha256: str
    signatures: tuple[Signature, ...]
    payload: bytes

    @cached_property
    def payload_sha256(self) -> str:
        """Hex SHA-256 of the ciphertext as received (not the header's claim)."""
        return hashlib.sha256(self.payload).hexdigest()

    def submission(self, user_id: str | None) -> Submission:
        """What ``policy.decide`` judges; the payload is measured, not taken from the header."""
        return Submission(
            header=self.header,
            header_bytes=self.header_bytes,
            signatures=self.signatures,
            user_id=user_id,
            payload_sha256=self.payload_sha256,
            payload_length=len(self.payload),
        )


def parse_envelope(body: bytes) -> ParsedEnvelope:
    """Check 1 of wire spec 3.3: decode an AMQP body as a version 1 envelope.

    Raises:
        EnvelopeRefused: ``too_large``, ``unsupported_version`` or ``malformed``.
    """
    if len(body) > MAX_BODY_BYTES:
        raise EnvelopeRefused(Reason.TOO_LARGE, f"body: over {MAX_BODY_BYTES} bytes")
    top = _versioned(_loads(body, "body"), "body")
    if "header" not in top:
        raise _malformed("body", "missing field header")
    header_bytes = _base64(top["header"], "body.header")
    header = parse_header(header_bytes)
    try:
        _object(top, "body", _ENVELOPE_FIELDS)
        signatures = _signatures(top["signatures"])
        payload = _base64(top["payload"], "body.payload")
    except EnvelopeRefused as e:
        raise EnvelopeRefused(e.reason, e.detail, header=header,
                              header_bytes=header_bytes) from None
    return ParsedEnvelope(
        header=header,
        header_bytes=header_bytes,
        header_sha256=hashlib.sha256(header_bytes).hexdigest(),
        signatures=signatures,
        payload=payload,
    )


def _versioned(value: object, path: str) -> dict[str, Any]:
    """The top-level object, once its ``version`` is known to be 1."""
    if not isinstance(value, dict):
        raise _malformed(path, "not an object")
    if "version" not in value:
        raise _malformed(path, "missing field version")
    version = value["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise _malformed(f"{path}.version", "not an integer")
    if version != VERSION:
        raise EnvelopeRefused(Reason.UNSUPPORTED_VERSION, f"{path}.version: not {VERSION}")
    return value


def _signatures(value: object) -> tuple[Signature, ...]:
    if not isinstance(value, list):
        raise _malformed("body.signatures", "not a list")
    if not 1 <= len(value) <= MAX_SIGNATURES:
        raise _malformed("body.signatures", f"not 1 to {MAX_SIGNATURES} entries")
    return tuple(_signature(v, f"body.signatures[{i}]") for i, v in enumerate(value))


def _signature(value: object, path: str) -> Signature:
    s = _object(value, path, _SIGNATURE_FIELDS)
    kid = _matching(s["key"], f"{path}.key", _HEX32, "a key id")
    sig = _base64(s["sig"], f"{path}.sig")
    if len(sig) != SIGNATURE_BYTES:
        raise _malformed(f"{path}.sig", f"not {SIGNATURE_BYTES} bytes")
    return Signature(key=KeyId(kid), sig=sig)


def _envelope_body(header_bytes: bytes, signatures: Sequence[Signature],
                   payload: bytes) -> bytes:
    return _dumps({
        "version": VERSION,
        "header": b64encode(header_bytes),
        "signatures": [{"key": s.key, "sig": b64encode(s.sig)} for s in signatures],
        "payload": b64encode(payload),
    })


@dataclass(frozen=True)
class Payload:
    """An opened payload (wire spec 3.2). ``record`` holds personal data: never log it."""

    message_id: str
    sender: str
    recipient: str
    purpose: str
    record: dict[str, object]
    reasons: str


def build_envelope(*, kind: str, protocol: str, purpose: str, sender: str, recipient: str,
                   record: Mapping[str, object], reasons: str, sender_key: SigningKeyPair,
                   recipient_key: bytes, created_at: datetime, consent: Consent | None,
                   subject_informed: bool, in_reply_to: str | None = None,
                   countersigners: Sequence[SigningKeyPair] = (),
                   message_id: str | None = None,
                   data_categories: Sequence[str] | None = None,
                   ) -> tuple[bytes, ParsedEnvelope]:
    """Seal ``record`` to ``recipient_key`` (X25519), build and sign the header.

    ``data_categories`` defaults to the record's keys; given explicitly it must
    include them. A ``receipt``'s record is ``{"received", "header_sha256"}``
    and a ``declined`` one's is ``{}``; both have no categories. A new UUIDv4
    is drawn unless ``message_id`` is given. Returns the AMQP body and its parse.

    Raises:
        ValueError: the arguments cannot make a valid envelope.
        EnvelopeRefused: ``too_large``: the envelope would be over the limits.
    """
    mid = message_id if message_id is not None else str(uuid.uuid4())
    if len(countersigners) > MAX_SIGNATURES - 1:
        raise ValueError(f"at most {MAX_SIGNATURES - 1} countersignatures")
    categories = _categories_for(kind, record, data_categories, in_reply_to)
    plaintext = _plaintext(mid, sender, recipient, purpose, record, reasons)
    try:
        ciphertext = seal(recipient_key, plaintext)
        rkey = key_id(recipient_key)
    except KeyFormatError as e:
        raise ValueError("recipient_key is not a 32-byte X25519 public key") from e
    header_bytes = build_header(
        message_id=mid, kind=kind, protocol=protocol, purpose=purpose, sender=sender,
        recipient=recipient, created_at=created_at, in_reply_to=in_reply_to,
        consent=consent, subject_informed=subject_informed, data_categories=categories,
        recipient_key=rkey, ciphertext=ciphertext,
    )
    signed = signing_input(header_bytes)
    signatures = [Signature(key=k.key_id, sig=k.sign(signed))
                  for k in (sender_key, *countersigners)]
    body = _envelope_body(header_bytes, signatures, ciphertext)
    return body, parse_envelope(body)


def _categories_for(kind: str, record: Mapping[str, object],
                    given: Sequence[str] | None, in_reply_to: str | None) -> list[str]:
    """The header's data categories for ``record``, or ValueError if it cannot carry it."""
    if kind == "receipt":
        _check_receipt_record(record, in_reply_to)
        if given:
            raise ValueError("a receipt has no data categories")
        return []
    if kind == "declined":
        if record or given:
            raise ValueError("a declined message carries no record and no data categories")
        return []
    categories = sorted(record) if given is None else sorted(given)
    if len(set(categories)) != len(categories):
        raise ValueError("data_categories has repeats")
    if not set(record) <= set(categories):
        raise ValueError("a record key is not among data_categories")
    return categories


def _check_receipt_record(record: Mapping[str, object], in_reply_to: str | None) -> None:
    if set(record) != _RECEIPT_FIELDS:
        raise ValueError('a receipt record is {"received", "header_sha256"}')
    received, digest = record["received"], record["header_sha256"]
    if not isinstance(received, str) or received != in_reply_to:
        raise ValueError("a receipt's received must equal its in_reply_to")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise ValueError("a receipt's header_sha256 is lowercase hex SHA-256")


def _plaintext(message_id: str, sender: str, recipient: str, purpose: str,
               record: Mapping[str, object], reasons: str) -> bytes:
    doc = {"message_id": message_id, "sender": sender, "recipient": recipient,
           "purpose": purpose, "record": dict(record), "reasons": reasons}
    try:
        return _dumps(doc)
    except (TypeError, ValueError) as e:
        # Not echoed: the message would quote the record.
        raise ValueError("the record or reasons are not JSON-serialisable") from e


def countersign(body: bytes, manager_key: SigningKeyPair) -> bytes:
    """Add ``manager_key``'s countersignature (wire spec 3.4) to an envelope body.

    The header bytes and payload are carried over unchanged.

    Raises:
        EnvelopeRefused: ``body`` is not a valid envelope.
        ValueError: already signed by this key, or no room for another signature.
    """
    env = parse_envelope(body)
    if len(env.signatures) >= MAX_SIGNATURES:
        raise ValueError(f"an envelope carries at most {MAX_SIGNATURES} signatures")
    if any(s.key == manager_key.key_id for s in env.signatures):
        raise ValueError("the envelope is already signed by this key")
    extra = Signature(key=manager_key.key_id,
                      sig=manager_key.sign(signing_input(env.header_bytes)))
    return _envelope_body(env.header_bytes, (*env.signatures, extra), env.payload)


def verify_sender_signature(env: ParsedEnvelope, public_key: bytes) -> bool:
    """Whether ``signatures[0]`` names ``public_key``'s id and verifies over the header bytes.

    Never raises.
    """
    if not env.signatures:
        return False
    first = env.signatures[0]
    try:
        if first.key != key_id(public_key):
            return False
    except KeyFormatError:
        return False
    return verify_signature(public_key, signing_input(env.header_bytes), first.sig)


# --- payload (the recipient's side) ---------------------------------------------------


def open_payload(env: ParsedEnvelope, key: EncryptionKeyPair) -> Payload:
    """Check, decrypt and parse the payload, and check it against the header (wire spec 3.2).

    The caller has verified the signatures first; this binds the payload to the
    header those signatures cover.

    Raises:
        PayloadRefused: ``payload_mismatch``, ``undecryptable``, ``malformed``,
            ``binding_mismatch`` or ``category_not_permitted``, checked in that order.
    """
    ref = env.header.payload
    if len(env.payload) != ref.length or env.payload_sha256 != ref.sha256:
        raise PayloadRefused("payload_mismatch", "the ciphertext is not the one in the header")
    if ref.recipient_key != key.key_id:
        raise PayloadRefused("undecryptable", "sealed to another key")
    try:
        plaintext = key.unseal(env.payload)
    except DecryptionError:
        raise PayloadRefused("undecryptable", "the sealed box does not open") from None
    payload = _parse_plaintext(plaintext)
    _check_binding(payload, env.header)
    _check_record(payload.record, env.header)
    return payload


def _parse_plaintext(plaintext: bytes) -> Payload:
    try:
        p = _object(_loads(plaintext, "payload"), "payload", _PLAINTEXT_FIELDS)
        record = p["record"]
        if not isinstance(record, dict):
            raise _malformed("payload.record", "not an object")
        # Lone surrogates (legal as JSON escapes) would fail later, in the case system.
        if not _encodable(p):
            raise _malformed("payload", "not valid Unicode")
        payload = Payload(
            message_id=_string(p["message_id"], "payload.message_id"),
            sender=_string(p["sender"], "payload.sender"),
            recipient=_string(p["recipient"], "payload.recipient"),
            purpose=_string(p["purpose"], "payload.purpose"),
            record=record,
            reasons=_string(p["reasons"], "payload.reasons"),
        )
    except EnvelopeRefused as e:
        raise PayloadRefused("malformed", e.detail) from None
    return payload


def _check_binding(payload: Payload, header: Header) -> None:
    """The four bound fields equal the header's, so a ciphertext cannot be re-wrapped."""
    for name in ("message_id", "sender", "recipient", "purpose"):
        if getattr(payload, name) != getattr(header, name):
            raise PayloadRefused("binding_mismatch", f"payload.{name} differs from the header")


def _check_record(record: dict[str, object], header: Header) -> None:
    if header.kind == "receipt":
        _check_receipt_payload(record, header)
        return
    allowed = set(header.data_categories)
    if not record.keys() <= allowed:
        raise PayloadRefused("category_not_permitted",
                             "a record key is not among the header's data categories")


def _check_receipt_payload(record: dict[str, object], header: Header) -> None:
    if record.keys() != _RECEIPT_FIELDS:
        raise PayloadRefused("malformed", "payload.record: not a receipt record")
    received, digest = record["received"], record["header_sha256"]
    if not isinstance(received, str) or not _UUID4.fullmatch(received):
        raise PayloadRefused("malformed", "payload.record.received: not a lowercase UUIDv4")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise PayloadRefused("malformed", "payload.record.header_sha256: not a SHA-256 digest")
    if received != header.in_reply_to:
        raise PayloadRefused("binding_mismatch",
                             "payload.record.received differs from header.in_reply_to")


# --- notices (wire spec 4) ------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """The broker's decision on one envelope; ``message_id`` is None when no header was read."""

    message_id: str | None
    decision: str
    reason: str | None
    seq: int
    at: datetime


def build_notice(notice: Notice, broker_key: SigningKeyPair) -> bytes:
    """The AMQP body of a notice, signed by the broker.

    Raises:
        ValueError: the notice is not of the form of wire spec 4.
    """
    if notice.at.tzinfo is None:
        raise ValueError("notice.at must be timezone-aware")
    notice_bytes = _dumps({
        "message_id": notice.message_id,
        "decision": notice.decision,
        "reason": notice.reason,
        "seq": notice.seq,
        "at": format_time(notice.at),
    })
    try:
        _parse_notice_bytes(notice_bytes)
    except EnvelopeRefused as e:
        raise ValueError(f"invalid notice: {e.detail}") from e
    return _dumps({
        "version": VERSION,
        "notice": b64encode(notice_bytes),
        "signature": {"key": broker_key.key_id,
                      "sig": b64encode(broker_key.sign(NOTICE_CONTEXT + notice_bytes))},
    })


def parse_notice(body: bytes, broker_public_key: bytes) -> Notice:
    """Verify a notice body against the pinned broker key, then parse the notice bytes.

    Raises:
        EnvelopeRefused: ``too_large``, ``unsupported_version`` or ``malformed``.
        NoticeRefused: ``unknown_key`` (signed by another key) or ``bad_signature``.
    """
    if len(body) > MAX_NOTICE_BYTES:
        raise EnvelopeRefused(Reason.TOO_LARGE, f"notice: over {MAX_NOTICE_BYTES} bytes")
    top = _object(_versioned(_loads(body, "notice"), "notice"), "notice", _NOTICE_BODY_FIELDS)
    notice_bytes = _base64(top["notice"], "notice.notice")
    sig = _signature(top["signature"], "notice.signature")
    try:
        pinned = key_id(broker_public_key)
    except KeyFormatError:
        raise NoticeRefused("unknown_key", "the pinned broker key is not 32 bytes") from None
    if sig.key != pinned:
        raise NoticeRefused("unknown_key", "signed by a key other than the broker's")
    if not verify_signature(broker_public_key, NOTICE_CONTEXT + notice_bytes, sig.sig):
        raise NoticeRefused("bad_signature", "the notice signature does not verify")
    return _parse_notice_bytes(notice_bytes)


def _parse_notice_bytes(notice_bytes: bytes) -> Notice:
    n = _object(_loads(notice_bytes, "notice bytes"), "notice bytes", _NOTICE_FIELDS)
    mid = n["message_id"]
    decision = _string(n["decision"], "notice bytes.decision")
    if decision not in _DECISIONS:
        raise _malformed("notice bytes.decision", "not routed or refused")
    return Notice(
        message_id=None if mid is None else _message_id(mid, "notice bytes.message_id"),
        decision=decision,
        reason=_notice_reason(n["reason"], decision),
        seq=_count(n["seq"], "notice bytes.seq"),
        at=_time(n["at"], "notice bytes.at"),
    )


def _notice_reason(value: object, decision: str) -> str | None:
    path = "notice bytes.reason"
    if decision == "routed":
        if value is not None:
            raise _malformed(path, "must be null when routed")
        return None
    code = _string(value, path)
    if code not in _REASON_CODES:
        raise _malformed(path, "not a reason code")
    return code
