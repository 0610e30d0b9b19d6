"""The transfer log's entries and evidence (wire spec 6.1): their one canonical form.

Pure: no storage, no clock. The broker writes entries with these classes, the
audit reads exports with them, and both hash exactly the bytes defined here.

Invariants:

- An entry is its bytes: the compact JSON of wire spec 6.1, its 19 keys in the
  spec's order, ASCII only. There is exactly one byte string per entry;
  :meth:`Entry.from_bytes` refuses any other.
- An evidence line is its bytes too (6.1): ``{"seq", "header", "signatures",
  "publisher", "body_sha256"}``, compact, ASCII. The entry of the same seq
  holds the SHA-256 of those bytes (``evidence_sha256``), so the tree, which
  commits to the entries, commits to the evidence as well.
- A body refused at check 1 names nothing from its header: every field taken
  from the header is null, ``payload_sha256`` too, ``header_sha256`` is the
  hash of the whole body, and its evidence holds no header and no signatures.
  An entry of any other decision names all that a parsed header holds.
- Every value is a code, a hash, a UUID or a time, except ``publisher``, the
  AMQP user name, which RabbitMQ lets be any text. It is written with JSON
  escapes so that entries stay ASCII: see :func:`canonical_json`.
- Readers take one line of at most :data:`MAX_LINE_BYTES`, parse it with
  :mod:`protocols.strict_json` and accept it only if it is the canonical
  bytes again, so a line has exactly one accepted spelling.
- Messages of :class:`EntryFormatError` name fields, never their contents.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cached_property
from itertools import pairwise
from typing import Any, Final

from keys import KeysError, b64decode, b64encode
from protocols import merkle, strict_json
from protocols.directory import format_time
from protocols.envelope import MAX_HEADER_BYTES, MAX_SIGNATURES, ParsedEnvelope
from protocols.errors import ProtocolsError
from protocols.log_grammar import entry_values, evidence_values
from protocols.model import CONSENT_STATUSES, KINDS, MessageId
from protocols.policy import Decision, LoggedMessage
from protocols.reasons import Reason

__all__ = [
    "DECISIONS",
    "ENTRY_FIELDS",
    "EVIDENCE_FIELDS",
    "MAX_LINE_BYTES",
    "MAX_PUBLISHER_CHARS",
    "UNREADABLE_REASONS",
    "Entry",
    "EntryDraft",
    "EntryFormatError",
    "Evidence",
    "canonical_json",
    "publisher_of",
]

ENTRY_FIELDS: Final = (
    "seq", "at", "message_id", "kind", "decision", "reason", "protocol", "purpose", "sender",
    "recipient", "in_reply_to", "consent", "subject_informed", "data_categories",
    "header_sha256", "payload_sha256", "registry_version", "publisher", "evidence_sha256",
)
EVIDENCE_FIELDS: Final = ("seq", "header", "signatures", "publisher", "body_sha256")
#: Fields of an entry that come from the header (or, for payload_sha256, from the parsed
#: body): all null for a body refused at check 1, all set (but the nullable three) otherwise.
_FROM_HEADER: Final = ("message_id", "kind", "protocol", "purpose", "sender", "recipient",
                       "in_reply_to", "consent", "subject_informed", "data_categories",
                       "payload_sha256")
_NULLABLE_IN_HEADER: Final = frozenset({"in_reply_to", "consent"})
#: The longest line a reader of an export takes. An entry is bounded by its header
#: (16 KiB) and an evidence line by the header's base64 (under 22 KiB); anything
#: longer was not written by a log, and is refused before it is read whole.
MAX_LINE_BYTES: Final = 64 * 1024
#: An AMQP short string is at most 255 bytes, so a user name at most 255 characters.
MAX_PUBLISHER_CHARS: Final = 255
DECISIONS: Final = ("routed", "refused")
#: The reasons of check 1: the only ones possible when the header could not be read.
UNREADABLE_REASONS: Final = frozenset(
    {Reason.MALFORMED.value, Reason.TOO_LARGE.value, Reason.UNSUPPORTED_VERSION.value})
_REASONS: Final = frozenset(r.value for r in Reason)

# [0-9a-z] rather than \d and \w, which match non-ASCII digits and letters.
_NAME = re.compile(r"[a-z0-9](?:-?[a-z0-9])*")
_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_NAME_MAX = 40


_HEX32 = re.compile(r"[0-9a-f]{32}")
_SIGNATURE_BYTES = 64


class EntryFormatError(ProtocolsError, ValueError):
    """Bytes or fields that are not an entry or evidence line of wire spec 6.1 in its one
    canonical form."""

    code = "entry_format"


def canonical_json(doc: object) -> bytes:
    """The one byte string of an entry or evidence line: compact JSON, ASCII.

    Keys in the order ``doc`` holds them, no whitespace, integers in decimal.
    Text outside printable ASCII (only a ``publisher`` can hold any) is
    escaped as JSON allows: ``"`` and ``\\`` as ``\\"`` and ``\\\\``; backspace,
    form feed, newline, carriage return and tab as ``\\b \\f \\n \\r \\t``;
    other characters below U+0020, and every character from U+007F up, as
    ``\\u`` and four lowercase hex digits (characters beyond U+FFFF as a
    UTF-16 surrogate pair, as JSON has it).
    """
    return _ENCODER.encode(doc).encode("ascii")


#: One encoder for every call, as :func:`json.dumps` would build one per call.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _parse_line(data: bytes, what: str) -> Any:
    if len(data) > MAX_LINE_BYTES:
        raise EntryFormatError(f"{what}: longer than {MAX_LINE_BYTES} bytes")
    try:
        return strict_json.loads(data, ascii_only=True)
    except strict_json.StrictJSONError as e:
        raise EntryFormatError(f"{what}: {e}") from None


def publisher_of(user_id: str | bytes | None) -> str | None:
    """The ``publisher`` to log for an AMQP ``user_id`` property as a client library hands it.

    RabbitMQ names users with text, so ``user_id`` arrives as UTF-8 text and is
    logged as it is. A library that hands over bytes that are not UTF-8 (pika
    does) cannot have had them from a user RabbitMQ authenticated; such bytes
    are decoded with U+FFFD for each byte that is not UTF-8, so the decision
    is still logged, and the name never passes as a unit's user.
    """
    if isinstance(user_id, bytes | bytearray):
        return bytes(user_id).decode("utf-8", errors="replace")
    return user_id


# --- field checks ----------------------------------------------------------------------


def _bad(field: str, problem: str, what: str = "entry") -> EntryFormatError:
    return EntryFormatError(f"{what}.{field}: {problem}")


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is an int subclass and never a number here


def _check_time(value: object) -> None:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise _bad("at", "not an RFC 3339 UTC time with whole seconds")
    try:
        datetime(int(value[0:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]),
                 int(value[14:16]), int(value[17:19]))
    except ValueError as e:
        raise _bad("at", "not a calendar time") from e


#: Names and addresses already found valid. The same few dozen codes recur in
#: every entry, and verifying an export checks millions of them; bounded, so
#: a stream of distinct values cannot grow it without limit.
_VALID: set[str] = set()
_VALID_MAX = 4096


def _remember(value: str) -> None:
    if len(_VALID) >= _VALID_MAX:
        _VALID.clear()
    _VALID.add(value)


def _check_name(field: str, value: object, nullable: bool = True) -> None:
    if value is None and nullable:
        return
    if isinstance(value, str) and value in _VALID and "/" not in value:
        return
    if not isinstance(value, str) or len(value) > _NAME_MAX or not _NAME.fullmatch(value):
        raise _bad(field, "not a name of wire spec section 1")
    _remember(value)


def _check_address(field: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, str) and value in _VALID and "/" in value:
        return
    if not isinstance(value, str) or value.count("/") != 1:
        raise _bad(field, "not an address org/unit")
    org, unit = value.split("/")
    _check_name(field, org, nullable=False)
    _check_name(field, unit, nullable=False)
    _remember(value)


def _check_uuid(field: str, value: object) -> None:
    if value is not None and (not isinstance(value, str) or not _UUID4.fullmatch(value)):
        raise _bad(field, "not a lowercase UUID version 4")


def _check_hex(field: str, value: object, nullable: bool, what: str = "entry") -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise _bad(field, "not a lowercase hex SHA-256", what)


def _check_publisher(value: object, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, str) or len(value) > MAX_PUBLISHER_CHARS:
        raise _bad("publisher", f"not null or text of at most {MAX_PUBLISHER_CHARS} "
                   "characters", what)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which a JSON escape can spell
        raise _bad("publisher", "not valid Unicode", what) from None


# --- entries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryDraft:
    """An entry before the log gives it its sequence number and binds its evidence: the
    fields of 6.1 but ``seq``, ``publisher`` and ``evidence_sha256``."""

    at: str
    message_id: str | None
    kind: str | None
    decision: str
    reason: str | None
    protocol: str | None
    purpose: str | None
    sender: str | None
    recipient: str | None
    in_reply_to: str | None
    consent: dict[str, Any] | None
    subject_informed: bool | None
    data_categories: list[str] | None
    header_sha256: str
    payload_sha256: str | None
    registry_version: int

    @classmethod
    def for_envelope(cls, env: ParsedEnvelope, decision: Decision, *, at: datetime,
                     registry_version: int) -> EntryDraft:
        """The draft of a decision on an envelope that passed check 1."""
        h = env.header
        return cls(
            at=format_time(at), message_id=h.message_id, kind=h.kind,
            decision=decision.decision,
            reason=None if decision.reason is None else decision.reason.value,
            protocol=h.protocol, purpose=h.purpose, sender=h.sender, recipient=h.recipient,
            in_reply_to=h.in_reply_to,
            consent=None if h.consent is None else {"status": h.consent.status,
                                                    "ground": h.consent.ground},
            subject_informed=h.subject_informed, data_categories=list(h.data_categories),
            header_sha256=env.header_sha256, payload_sha256=env.payload_sha256,
            registry_version=registry_version)

    @classmethod
    def unreadable(cls, reason: Reason, body_sha256: str, *, at: datetime,
                   registry_version: int) -> EntryDraft:
        """The draft of a body refused at check 1 (6.1): nothing from its header, however
        much of it could be read, and the hash of the whole body as ``header_sha256``."""
        return cls(
            at=format_time(at), message_id=None, kind=None, decision="refused",
            reason=reason.value, protocol=None, purpose=None, sender=None, recipient=None,
            in_reply_to=None, consent=None, subject_informed=None, data_categories=None,
            header_sha256=body_sha256, payload_sha256=None, registry_version=registry_version)


_DRAFT_FIELDS: Final = tuple(f.name for f in fields(EntryDraft))


@dataclass(frozen=True)
class Entry:
    """One decision as logged (wire spec 6.1). Construction validates every field.

    Fields the broker could not read from a malformed envelope are ``None``;
    ``decision`` is ``routed`` exactly when ``reason`` is ``None``.

    Raises (on construction):
        EntryFormatError: a field is not of its documented form.
    """

    seq: int
    at: str
    message_id: str | None
    kind: str | None
    decision: str
    reason: str | None
    protocol: str | None
    purpose: str | None
    sender: str | None
    recipient: str | None
    in_reply_to: str | None
    consent: dict[str, Any] | None
    subject_informed: bool | None
    data_categories: list[str] | None
    header_sha256: str
    payload_sha256: str | None
    registry_version: int
    publisher: str | None
    evidence_sha256: str

    def __post_init__(self) -> None:
        if not _is_int(self.seq) or self.seq < 0:
            raise _bad("seq", "not a non-negative integer")
        _check_time(self.at)
        _check_uuid("message_id", self.message_id)
        if self.kind is not None and self.kind not in KINDS:
            raise _bad("kind", "not a kind")
        if self.decision not in DECISIONS:
            raise _bad("decision", "neither routed nor refused")
        if self.reason is not None and self.reason not in _REASONS:
            raise _bad("reason", "not a reason code of wire spec 7")
        if (self.decision == "routed") != (self.reason is None):
            raise _bad("reason", "null exactly when the decision is routed")
        _check_name("protocol", self.protocol)
        _check_name("purpose", self.purpose)
        _check_address("sender", self.sender)
        _check_address("recipient", self.recipient)
        _check_uuid("in_reply_to", self.in_reply_to)
        if self.consent is not None:
            c = self.consent
            if not isinstance(c, dict) or set(c) != {"status", "ground"}:
                raise _bad("consent", "not null or {status, ground}")
            if c["status"] not in CONSENT_STATUSES:
                raise _bad("consent.status", "not a consent status")
            _check_name("consent.ground", c["ground"])
            # Key order is part of the bytes; a dict given in another order is
            # the same consent, so it is normalised rather than refused.
            object.__setattr__(self, "consent", {"status": c["status"], "ground": c["ground"]})
        if self.subject_informed is not None and not isinstance(self.subject_informed, bool):
            raise _bad("subject_informed", "not a boolean")
        if self.data_categories is not None:
            cats = self.data_categories
            if not isinstance(cats, list | tuple):
                raise _bad("data_categories", "not a list")
            for cat in cats:
                _check_name("data_categories", cat, nullable=False)
            if any(a >= b for a, b in pairwise(cats)):
                raise _bad("data_categories", "not sorted without repeats")
            object.__setattr__(self, "data_categories", list(cats))
        _check_hex("header_sha256", self.header_sha256, nullable=False)
        _check_hex("payload_sha256", self.payload_sha256, nullable=True)
        if not _is_int(self.registry_version) or self.registry_version < 0:
            raise _bad("registry_version", "not a non-negative integer")
        _check_publisher(self.publisher, "entry")
        _check_hex("evidence_sha256", self.evidence_sha256, nullable=False)
        self._check_header_fields()

    def _check_header_fields(self) -> None:
        """The rule of 6.1 for check 1: all of the header's fields null, or none but the
        nullable ones."""
        if self.unreadable:
            named = [f for f in _FROM_HEADER if getattr(self, f) is not None]
            if named:
                raise _bad(named[0], "a body refused at check 1 names nothing from its "
                           "header (wire spec 6.1)")
            return
        missing = [f for f in _FROM_HEADER
                   if f not in _NULLABLE_IN_HEADER and getattr(self, f) is None]
        if missing:
            raise _bad(missing[0], "null only for a body refused at check 1")

    @property
    def unreadable(self) -> bool:
        """Whether the body was refused at check 1, so that nothing of its header is named."""
        return self.decision == "refused" and self.reason in UNREADABLE_REASONS

    def to_bytes(self) -> bytes:
        """The entry bytes: compact ASCII JSON, keys in the order of 6.1, no newline."""
        return self._bytes

    @cached_property
    def _bytes(self) -> bytes:
        return canonical_json({name: getattr(self, name) for name in ENTRY_FIELDS})

    @cached_property
    def leaf_hash(self) -> bytes:
        """SHA-256(0x00 || entry bytes)."""
        return merkle.leaf_hash(self._bytes)

    @property
    def time(self) -> datetime:
        """``at`` as an aware UTC datetime."""
        a = self.at  # validated: YYYY-MM-DDTHH:MM:SSZ (strptime costs ten times more)
        return datetime(int(a[0:4]), int(a[5:7]), int(a[8:10]), int(a[11:13]), int(a[14:16]),
                        int(a[17:19]), tzinfo=UTC)

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """Parse entry bytes, which must be exactly what :meth:`to_bytes` gives.

        Raises:
            EntryFormatError: not JSON, other fields or order, a field out of form,
                or not the canonical bytes (spaces, escapes, duplicate keys...).
        """
        if len(data) <= MAX_LINE_BYTES and (values := entry_values(data)) is not None:
            return cls._trusted(values, bytes(data))
        return cls.parse_json(data)

    @classmethod
    def _trusted(cls, values: dict[str, Any], data: bytes) -> Entry:
        """The entry of fields that ``log_grammar.entry_values`` read from ``data``:
        canonical and valid as they are, so the field checks are not run again."""
        entry = object.__new__(cls)
        entry.__dict__.update(values, _bytes=data)
        return entry

    @classmethod
    def parse_json(cls, data: bytes) -> Entry:
        """:meth:`from_bytes` through the JSON parser and every field check, without the
        fast path of :mod:`protocols.log_grammar` (which only ever takes what this takes).

        Raises:
            EntryFormatError: as :meth:`from_bytes`.
        """
        doc = _parse_line(data, "entry")
        if type(doc) is not dict or tuple(doc) != ENTRY_FIELDS:
            raise EntryFormatError("entry: not exactly the 19 fields of wire spec 6.1 in order")
        entry = cls(**doc)
        # Whitespace, escapes and number spellings all change the bytes: the one
        # canonical form is what was hashed.
        if entry._bytes != data:
            raise EntryFormatError("entry: not in canonical form")
        return entry

    @classmethod
    def with_evidence(cls, draft: EntryDraft, seq: int, evidence: Evidence
                      ) -> tuple[Entry, bytes]:
        """The entry ``seq`` of ``draft`` bound to ``evidence``, and the evidence line's bytes.

        Raises:
            EntryFormatError: the draft is not an entry of wire spec 6.1.
        """
        line = evidence.line(seq)
        values: dict[str, Any] = {name: getattr(draft, name) for name in _DRAFT_FIELDS}
        entry = cls(seq=seq, **values, publisher=evidence.publisher,
                    evidence_sha256=hashlib.sha256(line).hexdigest())
        if (evidence.header is None) != entry.unreadable:
            raise EntryFormatError("evidence.header: null exactly for a body refused at "
                                   "check 1")
        return entry, line

    def logged(self) -> LoggedMessage:
        """What the policy sees of this entry (for entries that name a message id)."""
        return LoggedMessage(
            message_id=MessageId(self.message_id or ""), header_sha256=self.header_sha256,
            kind=self.kind,  # type: ignore[arg-type]  # validated against KINDS
            decision=self.decision, reason=self.reason, protocol=self.protocol,
            purpose=self.purpose, sender=self.sender, recipient=self.recipient)


# --- evidence --------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """How a decided body arrived (wire spec 6.1): the header bytes and the signatures as
    received, the AMQP ``user_id`` that published it, and the SHA-256 of the whole body.
    No payload, no personal data.

    ``header`` and ``signatures`` are ``None`` when the body was refused at check 1.

    Raises (on construction):
        EntryFormatError: a field is not of its documented form.
    """

    header: bytes | None
    signatures: list[dict[str, str]] | None
    publisher: str | None
    body_sha256: str

    def __post_init__(self) -> None:
        if self.header is not None:
            if not isinstance(self.header, bytes | bytearray):
                raise _bad("header", "not bytes", "evidence")
            if len(self.header) > MAX_HEADER_BYTES:
                raise _bad("header", f"over {MAX_HEADER_BYTES} bytes", "evidence")
        if (self.header is None) != (self.signatures is None):
            raise _bad("signatures", "null exactly when the header is", "evidence")
        if self.signatures is not None:
            _check_signatures(self.signatures)
            object.__setattr__(self, "signatures",
                               [{"key": s["key"], "sig": s["sig"]} for s in self.signatures])
        _check_publisher(self.publisher, "evidence")
        _check_hex("body_sha256", self.body_sha256, nullable=False, what="evidence")

    @classmethod
    def of(cls, body_sha256: str, env: ParsedEnvelope | None,
           publisher: str | None) -> Evidence:
        """The evidence of a body: of its envelope if it passed check 1, else of its hash."""
        if env is None:
            return cls(header=None, signatures=None, publisher=publisher,
                       body_sha256=body_sha256)
        # Check 1 accepted only canonical base64, so these are the strings received.
        return cls(header=env.header_bytes,
                   signatures=[{"key": s.key, "sig": b64encode(s.sig)} for s in env.signatures],
                   publisher=publisher, body_sha256=body_sha256)

    def line(self, seq: int) -> bytes:
        """The evidence line of entry ``seq``: compact ASCII JSON in the order of 6.1."""
        if not _is_int(seq) or seq < 0:
            raise _bad("seq", "not a non-negative integer", "evidence")
        return canonical_json({
            "seq": seq,
            "header": None if self.header is None else b64encode(bytes(self.header)),
            "signatures": self.signatures,
            "publisher": self.publisher,
            "body_sha256": self.body_sha256,
        })

    @classmethod
    def from_line(cls, data: bytes) -> tuple[int, Evidence]:
        """Parse an evidence line, which must be exactly what :meth:`line` gives.

        Raises:
            EntryFormatError: not JSON, other fields or order, a field out of form, or
                not the canonical bytes.
        """
        if len(data) <= MAX_LINE_BYTES and (fast := evidence_values(data)) is not None:
            seq, header, signatures, publisher, body_sha256 = fast
            ev = object.__new__(cls)
            ev.__dict__.update(header=header, signatures=signatures, publisher=publisher,
                               body_sha256=body_sha256)
            return seq, ev
        return cls.parse_json(data)

    @classmethod
    def parse_json(cls, data: bytes) -> tuple[int, Evidence]:
        """:meth:`from_line` without the fast path of :mod:`protocols.log_grammar`.

        Raises:
            EntryFormatError: as :meth:`from_line`.
        """
        doc = _parse_line(data, "evidence")
        if type(doc) is not dict or tuple(doc) != EVIDENCE_FIELDS:
            raise EntryFormatError(
                "evidence: not exactly {seq, header, signatures, publisher, body_sha256} "
                "in that order")
        header = doc["header"]
        if header is not None:
            try:
                header = b64decode(header)
            except KeysError:
                raise _bad("header", "not canonical padded base64", "evidence") from None
        if doc["signatures"] is not None and not (
                isinstance(doc["signatures"], list)
                and all(isinstance(s, dict) and tuple(s) == ("key", "sig")
                        for s in doc["signatures"])):
            raise _bad("signatures", 'not a list of {"key", "sig"}', "evidence")
        ev = cls(header=header, signatures=doc["signatures"], publisher=doc["publisher"],
                 body_sha256=doc["body_sha256"])
        if ev.line(doc["seq"]) != data:
            raise EntryFormatError("evidence: not in canonical form")
        return doc["seq"], ev


def _check_signatures(value: object) -> None:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SIGNATURES:
        raise _bad("signatures", f"not a list of 1 to {MAX_SIGNATURES} signatures",
                   "evidence")
    for s in value:
        if not isinstance(s, dict) or set(s) != {"key", "sig"}:
            raise _bad("signatures", 'not a list of {"key", "sig"}', "evidence")
        if not isinstance(s["key"], str) or not _HEX32.fullmatch(s["key"]):
            raise _bad("signatures.key", "not a key id", "evidence")
        try:
            sig = b64decode(s["sig"])
        except KeysError:
            raise _bad("signatures.sig", "not canonical padded base64", "evidence") from None
        if len(sig) != _SIGNATURE_BYTES:
            raise _bad("signatures.sig", f"not {_SIGNATURE_BYTES} bytes", "evidence")
