"""The canonical entry and evidence lines of wire spec 6.1 as one regular expression each.

Pure. A line of a log has exactly one accepted spelling (compact JSON, keys
in the spec's order, ASCII), so the set of canonical lines is a regular
language apart from a few checks between fields. Matching it is what lets
``audit verify`` read an export near the speed of hashing it: one match in C
instead of a JSON parse, a dataclass's field checks and a JSON re-encoding
to compare the bytes.

This is a fast path, never a second definition: :func:`entry_values` and
:func:`evidence_values` return None for anything they do not take, and the
caller then runs the full parser of :mod:`protocols.log_format`, which
decides. What they take is exactly what that parser would accept, with the
same values (``tests/unit/protocols/test_log_grammar.py`` holds the two
together): a ``publisher`` with characters that JSON escapes, for instance,
is left to the full parser.
"""

from __future__ import annotations

import binascii
import re
from datetime import datetime
from itertools import pairwise
from typing import Any, Final

from protocols.envelope import MAX_HEADER_BYTES, MAX_SIGNATURES
from protocols.model import CONSENT_STATUSES, KINDS
from protocols.reasons import Reason

__all__ = ["entry_values", "evidence_values"]

# The characters of a name of wire spec section 1 and its length; where its hyphens
# may stand is checked on the captured text (:func:`_names_ok`), which a character
# class matches many times faster than the name's own pattern.
_NAME: Final = r"[a-z0-9-]{1,40}"
_NAME_FORM: Final = re.compile(r"[a-z0-9](?:-?[a-z0-9])*")
_UUID4: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
_HEX64: Final = r"[0-9a-f]{64}"
# Longer numbers are left to the full parser: Python converts at most 4,300 digits.
_INT: Final = r"0|[1-9][0-9]{0,18}"
# Text that canonical JSON writes as it is: printable ASCII but the quote and backslash.
_PLAIN: Final = r'[\x20\x21\x23-\x5b\x5d-\x7e]{0,255}'
_B64: Final = r"[A-Za-z0-9+/]"
# Canonical padded base64: the bits that padding drops are zero.
_BASE64: Final = rf"{_B64}*={{0,2}}"
_SIG64: Final = rf'\{{"key":"[0-9a-f]{{32}}","sig":"{_B64}{{85}}[AQgw]=="\}}'


def _one_of(values: Any) -> str:
    return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))


_ENTRY: Final = re.compile(
    rf'\{{"seq":({_INT}),'
    r'"at":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)",'
    rf'"message_id":(?:null|"({_UUID4})"),'
    rf'"kind":(?:null|"({_one_of(KINDS)})"),'
    r'"decision":"(routed|refused)",'
    rf'"reason":(?:null|"({_one_of(r.value for r in Reason)})"),'
    rf'"protocol":(?:null|"({_NAME})"),'
    rf'"purpose":(?:null|"({_NAME})"),'
    rf'"sender":(?:null|"({_NAME}/{_NAME})"),'
    rf'"recipient":(?:null|"({_NAME}/{_NAME})"),'
    rf'"in_reply_to":(?:null|"({_UUID4})"),'
    rf'"consent":(?:null|\{{"status":"({_one_of(CONSENT_STATUSES)})",'
    rf'"ground":(null|"{_NAME}")\}}),'
    r'"subject_informed":(null|true|false),'
    rf'"data_categories":(?:null|\[((?:"{_NAME}"(?:,"{_NAME}")*)?)\]),'
    rf'"header_sha256":"({_HEX64})",'
    rf'"payload_sha256":(?:null|"({_HEX64})"),'
    rf'"registry_version":({_INT}),'
    rf'"publisher":(?:null|"({_PLAIN})"),'
    rf'"evidence_sha256":"({_HEX64})"\}}')

_EVIDENCE: Final = re.compile(
    rf'\{{"seq":({_INT}),'
    rf'"header":(?:null|"({_BASE64})"),'
    rf'"signatures":(?:null|\[({_SIG64}(?:,{_SIG64})*)\]),'
    rf'"publisher":(?:null|"({_PLAIN})"),'
    rf'"body_sha256":"({_HEX64})"\}}')
_SIG_PARTS: Final = re.compile(r'"key":"([0-9a-f]{32})","sig":"([^"]*)"')

_ALL_NULL: Final = (None,) * 10
_UNREADABLE: Final = frozenset(
    {Reason.MALFORMED.value, Reason.TOO_LARGE.value, Reason.UNSUPPORTED_VERSION.value})
#: Times and names already found good: entries of one second share their time, and
#: a log holds a few dozen names. Bounded, so distinct values cannot grow it.
_SEEN: set[str] = set()
_SEEN_MAX: Final = 4096


def _seen(value: str) -> None:
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    _SEEN.add(value)


def _calendar_time(at: str) -> bool:
    if at in _SEEN:
        return True
    try:
        datetime(int(at[0:4]), int(at[5:7]), int(at[8:10]), int(at[11:13]), int(at[14:16]),
                 int(at[17:19]))
    except ValueError:
        return False
    _seen(at)
    return True


def _names_ok(*values: str | None) -> bool:
    """Each value (a name, or an address of two) has its hyphens between characters."""
    for value in values:
        if value is None or value in _SEEN:
            continue
        if not all(_NAME_FORM.fullmatch(part) for part in value.split("/")):
            return False
        _seen(value)
    return True


def _canonical_base64(text: str) -> bytes | None:
    """The bytes of canonical padded base64, or None: whole quanta, and the bits that
    padding leaves over zero."""
    if len(text) % 4 or "=" in text[:-2]:
        return None
    if text.endswith("=="):
        if text[-3] not in "AQgw":
            return None
    elif text.endswith("=") and text[-2] not in "AEIMQUYcgkosw048":
        return None
    return binascii.a2b_base64(text)


def entry_values(data: bytes) -> dict[str, Any] | None:
    """The 19 fields of a canonical entry, or None when the full parser must decide.

    The caller has refused lines longer than ``log_format.MAX_LINE_BYTES`` already.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    m = _ENTRY.fullmatch(text)
    if m is None:
        return None
    (seq, at, message_id, kind, decision, reason, protocol, purpose, sender, recipient,
     in_reply_to, status, ground, informed, categories, header_sha256, payload_sha256,
     registry_version, publisher, evidence_sha256) = m.groups()
    if (decision == "routed") != (reason is None) or not _calendar_time(at):
        return None
    cats = None if categories is None else (
        [c[1:-1] for c in categories.split(",")] if categories else [])
    if cats is not None and len(cats) > 1 and any(a >= b for a, b in pairwise(cats)):
        return None
    ground = None if ground is None or ground == "null" else ground[1:-1]
    if not _names_ok(protocol, purpose, sender, recipient, ground, *(cats or ())):
        return None
    informed_value = None if informed == "null" else informed == "true"
    header_fields = (message_id, kind, protocol, purpose, sender, recipient, status,
                     informed_value, cats, payload_sha256)
    if decision == "refused" and reason in _UNREADABLE:
        if in_reply_to is not None or header_fields != _ALL_NULL:
            return None
    elif None in (message_id, kind, protocol, purpose, sender, recipient, informed_value,
                  cats, payload_sha256):
        return None
    return {
        "seq": int(seq), "at": at, "message_id": message_id, "kind": kind,
        "decision": decision, "reason": reason, "protocol": protocol, "purpose": purpose,
        "sender": sender, "recipient": recipient, "in_reply_to": in_reply_to,
        "consent": None if status is None else {
            "status": status, "ground": ground},
        "subject_informed": informed_value,
        "data_categories": cats, "header_sha256": header_sha256,
        "payload_sha256": payload_sha256, "registry_version": int(registry_version),
        "publisher": publisher, "evidence_sha256": evidence_sha256,
    }


def evidence_values(data: bytes) -> tuple[int, bytes | None, list[dict[str, str]] | None,
                                          str | None, str] | None:
    """``(seq, header, signatures, publisher, body_sha256)`` of a canonical evidence line,
    or None when the full parser must decide."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    m = _EVIDENCE.fullmatch(text)
    if m is None:
        return None
    seq, header_b64, sigs, publisher, body_sha256 = m.groups()
    if (header_b64 is None) != (sigs is None):
        return None
    header = None
    signatures = None
    if header_b64 is not None:
        header = _canonical_base64(header_b64)
        if header is None:
            return None
        signatures = [{"key": k, "sig": s} for k, s in _SIG_PARTS.findall(sigs)]
        if len(header) > MAX_HEADER_BYTES or len(signatures) > MAX_SIGNATURES:
            return None
    return int(seq), header, signatures, publisher, body_sha256
