"""The transfer log's entries and evidence (wire spec 6.1): their one canonical form.

Pure: no storage, no clock. The broker writes entries with these classes, the
audit reads exports with them, and both hash exactly the bytes defined here.

Invariants:

- An entry is its bytes: the compact JSON of wire spec 6.1, keys in the
  spec's order, ASCII only (every value is a code, a hash or a time). There is
  exactly one byte string per entry; :meth:`Entry.from_bytes` refuses any
  other.
- Messages of :class:`EntryFormatError` name fields, never their contents.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cached_property
from itertools import pairwise
from typing import Any, Final

from protocols import merkle
from protocols.errors import ProtocolsError
from protocols.model import CONSENT_STATUSES, KINDS, MessageId
from protocols.policy import LoggedMessage
from protocols.reasons import Reason

__all__ = [
    "DECISIONS",
    "ENTRY_FIELDS",
    "UNREADABLE_REASONS",
    "Entry",
    "EntryDraft",
    "EntryFormatError",
    "Evidence",
]

ENTRY_FIELDS: Final = (
    "seq", "at", "message_id", "kind", "decision", "reason", "protocol", "purpose", "sender",
    "recipient", "in_reply_to", "consent", "subject_informed", "data_categories",
    "header_sha256", "payload_sha256", "registry_version",
)
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


class EntryFormatError(ProtocolsError, ValueError):
    """Bytes or fields that are not an entry of wire spec 6.1 in its one canonical form."""

    code = "entry_format"




# --- entries ---------------------------------------------------------------------------


def _bad(field: str, problem: str) -> EntryFormatError:
    return EntryFormatError(f"entry.{field}: {problem}")


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


def _check_hex(field: str, value: object, nullable: bool) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise _bad(field, "not a lowercase hex SHA-256")


@dataclass(frozen=True)
class EntryDraft:
    """An entry before the log gives it its sequence number: the fields of 6.1 but ``seq``."""

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
        if self.message_id is None and (self.decision != "refused"
                                        or self.reason not in UNREADABLE_REASONS):
            raise _bad("message_id", "null only for a body refused at check 1")

    def to_bytes(self) -> bytes:
        """The entry bytes: compact UTF-8 JSON, keys in the order of 6.1, no newline."""
        return self._bytes

    @cached_property
    def _bytes(self) -> bytes:
        doc = {name: getattr(self, name) for name in ENTRY_FIELDS}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode("ascii")

    @cached_property
    def leaf_hash(self) -> bytes:
        """SHA-256(0x00 || entry bytes)."""
        return merkle.leaf_hash(self._bytes)

    @property
    def time(self) -> datetime:
        """``at`` as an aware UTC datetime."""
        return datetime.strptime(self.at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """Parse entry bytes, which must be exactly what :meth:`to_bytes` gives.

        Raises:
            EntryFormatError: not JSON, other fields or order, a field out of form,
                or not the canonical bytes (spaces, escapes, duplicate keys...).
        """
        try:
            doc = json.loads(bytes(data).decode("ascii"))
        except (UnicodeDecodeError, ValueError) as e:
            raise EntryFormatError("entry: not ASCII JSON") from e
        if type(doc) is not dict or tuple(doc) != ENTRY_FIELDS:
            raise EntryFormatError("entry: not exactly the fields of wire spec 6.1 in order")
        entry = cls(**doc)
        # Duplicate keys, whitespace, escapes and number spellings all change
        # the bytes: the one canonical form is what was hashed.
        if entry._bytes != data:
            raise EntryFormatError("entry: not in canonical form")
        return entry

    @classmethod
    def from_draft(cls, draft: EntryDraft, seq: int) -> Entry:
        return cls(seq, *(getattr(draft, name) for name in _DRAFT_FIELDS))

    def logged(self) -> LoggedMessage:
        """What the policy sees of this entry (for entries that name a message id)."""
        return LoggedMessage(
            message_id=MessageId(self.message_id or ""), header_sha256=self.header_sha256,
            kind=self.kind,  # type: ignore[arg-type]  # validated against KINDS
            decision=self.decision, reason=self.reason, protocol=self.protocol,
            purpose=self.purpose, sender=self.sender, recipient=self.recipient)


@dataclass(frozen=True)
class Evidence:
    """How a decided envelope arrived: header bytes and signatures as received, the
    AMQP ``user_id``, and the SHA-256 of the whole body. No payload, no personal data.

    ``header`` and ``signatures`` are ``None`` when the body could not be read.
    """

    header: bytes | None
    signatures: list[dict[str, str]] | None
    user_id: str | None
    body_sha256: str

    def __post_init__(self) -> None:
        if self.header is not None and not isinstance(self.header, bytes | bytearray):
            raise EntryFormatError("evidence.header: not bytes")
        if self.signatures is not None and (not isinstance(self.signatures, list) or not all(
                isinstance(s, dict) and set(s) == {"key", "sig"}
                and all(isinstance(v, str) for v in s.values()) for s in self.signatures)):
            raise EntryFormatError("evidence.signatures: not a list of {key, sig}")
        if self.user_id is not None and not isinstance(self.user_id, str):
            raise EntryFormatError("evidence.user_id: not text")
        if not isinstance(self.body_sha256, str) or not _HEX64.fullmatch(self.body_sha256):
            raise EntryFormatError("evidence.body_sha256: not a lowercase hex SHA-256")
