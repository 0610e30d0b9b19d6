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

Its pieces serve a reader that needs no values, only a verdict (``audit
verify`` checking a chunk of lines, :mod:`audit.verify_chunks`): a match of
:data:`ENTRY` whose groups pass :func:`entry_ok` is what :func:`entry_values`
takes, and a match of :data:`EVIDENCE` whose header and signatures pass
:func:`evidence_header` is what :func:`evidence_values` takes.
"""

from __future__ import annotations

import binascii
import operator
import re
from itertools import pairwise
from typing import Any, Final

from protocols.envelope import MAX_HEADER_BYTES, MAX_SIGNATURES
from protocols.grammar_parts import CACHE_MAX, NAME, UUID4, names_ok, one_of, utc_time
from protocols.model import CONSENT_STATUSES, KINDS
from protocols.reasons import Reason

__all__ = ["ENTRY", "EVIDENCE", "entry_ok", "entry_values", "evidence_header", "evidence_values"]

# Names are matched by their characters and length; where their hyphens stand is
# checked on the captured text (``grammar_parts.names_ok``).
_NAME: Final = NAME
_UUID4: Final = UUID4
_HEX64: Final = r"[0-9a-f]{64}"
# Longer numbers are left to the full parser: Python converts at most 4,300 digits.
_INT: Final = r"0|[1-9][0-9]{0,18}"
# Text that canonical JSON writes as it is: printable ASCII but the quote and backslash.
_PLAIN: Final = r'[\x20\x21\x23-\x5b\x5d-\x7e]{0,255}'
_B64: Final = r"[A-Za-z0-9+/]"
# The header's base64, up to the quote that ends it. Which of it is canonical is left to
# :func:`_canonical_base64`, which decodes it anyway: a character class here would cost
# more than the decoding.
_BASE64: Final = r'[^"]*'
_SIG64: Final = rf'\{{"key":"[0-9a-f]{{32}}","sig":"{_B64}{{85}}[AQgw]=="\}}'


ENTRY: Final = re.compile(
    rf'\{{"seq":({_INT}),'
    r'"at":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)",'
    rf'"message_id":(?:null|"({_UUID4})"),'
    rf'"kind":(?:null|"({one_of(KINDS)})"),'
    r'"decision":"(routed|refused)",'
    rf'"reason":(?:null|"({one_of(r.value for r in Reason)})"),'
    rf'"protocol":(?:null|"({_NAME})"),'
    rf'"purpose":(?:null|"({_NAME})"),'
    rf'"sender":(?:null|"({_NAME}/{_NAME})"),'
    rf'"recipient":(?:null|"({_NAME}/{_NAME})"),'
    rf'"in_reply_to":(?:null|"({_UUID4})"),'
    rf'"consent":(?:null|\{{"status":"({one_of(CONSENT_STATUSES)})",'
    rf'"ground":(null|"{_NAME}")\}}),'
    r'"subject_informed":(null|true|false),'
    rf'"data_categories":(?:null|\[((?:"{_NAME}"(?:,"{_NAME}")*)?)\]),'
    rf'"header_sha256":"({_HEX64})",'
    rf'"payload_sha256":(?:null|"({_HEX64})"),'
    rf'"registry_version":({_INT}),'
    rf'"publisher":(?:null|"({_PLAIN})"),'
    rf'"evidence_sha256":"({_HEX64})"\}}')

EVIDENCE: Final = re.compile(
    rf'\{{"seq":({_INT}),'
    rf'"header":(?:null|"({_BASE64})"),'
    rf'"signatures":(?:null|\[({_SIG64}(?:,{_SIG64})*)\]),'
    rf'"publisher":(?:null|"({_PLAIN})"),'
    rf'"body_sha256":"({_HEX64})"\}}')
_SIG_PARTS: Final = re.compile(r'"key":"([0-9a-f]{32})","sig":"([^"]*)"')

_UNREADABLE: Final = frozenset(
    {Reason.MALFORMED.value, Reason.TOO_LARGE.value, Reason.UNSUPPORTED_VERSION.value})


def _canonical_base64(text: str) -> bytes | None:
    """The bytes of canonical padded base64, or None: the alphabet only, whole quanta,
    padding only at the end, and the bits that padding leaves over zero."""
    if len(text) % 4:
        return None
    try:
        # Strict: nothing outside the alphabet, no padding but at the end.
        data = binascii.a2b_base64(text, strict_mode=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        return None
    if text.endswith("=="):
        if text[-3] not in "AQgw":
            return None
    elif text.endswith("=") and text[-2] not in "AEIMQUYcgkosw048":
        return None
    return data


def entry_ok(groups: tuple[str | None, ...]) -> bool:
    """Whether the groups of an :data:`ENTRY` match are a canonical entry: the checks
    between fields that the pattern leaves (decision and reason, the calendar, sorted
    categories, where hyphens stand in names, the rule of 6.1 for check 1).

    Of an entry that passes, ``message_id`` is null exactly when the body was refused
    at check 1.
    """
    (_, at, message_id, _, _, _, _, _, _, _, in_reply_to, _, _, _, _, _, payload_sha256,
     _, _, _) = groups
    if utc_time(at) is None:  # type: ignore[arg-type]  # the pattern's group is never None
        return False
    shape = _SHAPE(groups)
    unreadable = _SHAPES.get(shape)
    if unreadable is None:
        unreadable = _shape_unreadable(*shape)
        if unreadable is None:
            return False
        if len(_SHAPES) >= CACHE_MAX:
            _SHAPES.clear()
        _SHAPES[shape] = unreadable
    if unreadable:
        return message_id is None and in_reply_to is None and payload_sha256 is None
    return message_id is not None and payload_sha256 is not None


#: The groups of an entry that its shape is made of: all but those unique to an entry
#: (seq, time, ids, hashes, registry version, publisher), whose form the pattern checks.
_SHAPE: Final = operator.itemgetter(3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14)
#: Shapes already found good, and whether they are of a body refused at check 1. A log
#: has a few dozen; bounded, so distinct shapes cannot grow it.
_SHAPES: dict[tuple[str | None, ...], bool] = {}


def _shape_unreadable(kind: str | None, decision: str, reason: str | None,
                      protocol: str | None, purpose: str | None, sender: str | None,
                      recipient: str | None, status: str | None, ground: str | None,
                      informed: str, categories: str | None) -> bool | None:
    """Whether an entry of this shape is of a body refused at check 1, or None when no
    entry is of this shape."""
    if (decision == "routed") != (reason is None):
        return None
    cats = _categories(categories)
    if cats is not None and len(cats) > 1 and any(a >= b for a, b in pairwise(cats)):
        return None
    if not names_ok(protocol, purpose, sender, recipient, _ground(ground), *(cats or ())):
        return None
    named = (kind, protocol, purpose, sender, recipient)
    if decision == "refused" and reason in _UNREADABLE:
        if named != (None,) * 5 or status is not None or informed != "null" or cats is not None:
            return None
        return True
    if None in named or informed == "null" or cats is None:
        return None
    return False


def _categories(group: str | None) -> list[str] | None:
    return None if group is None else [c[1:-1] for c in group.split(",")] if group else []


def _ground(group: str | None) -> str | None:
    return None if group is None or group == "null" else group[1:-1]


def entry_values(data: bytes) -> dict[str, Any] | None:
    """The 19 fields of a canonical entry, or None when the full parser must decide.

    The caller has refused lines longer than ``log_format.MAX_LINE_BYTES`` already.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    m = ENTRY.fullmatch(text)
    if m is None or not entry_ok(groups := m.groups()):
        return None
    (seq, at, message_id, kind, decision, reason, protocol, purpose, sender, recipient,
     in_reply_to, status, ground, informed, categories, header_sha256, payload_sha256,
     registry_version, publisher, evidence_sha256) = groups
    assert seq is not None and registry_version is not None  # groups the pattern requires
    return {
        "seq": int(seq), "at": at, "message_id": message_id, "kind": kind,
        "decision": decision, "reason": reason, "protocol": protocol, "purpose": purpose,
        "sender": sender, "recipient": recipient, "in_reply_to": in_reply_to,
        "consent": None if status is None else {"status": status, "ground": _ground(ground)},
        "subject_informed": None if informed == "null" else informed == "true",
        "data_categories": _categories(categories), "header_sha256": header_sha256,
        "payload_sha256": payload_sha256, "registry_version": int(registry_version),
        "publisher": publisher, "evidence_sha256": evidence_sha256,
    }


def evidence_header(header: str | None, signatures: str | None) -> tuple[bool, bytes | None]:
    """Whether the ``header`` and ``signatures`` groups of an :data:`EVIDENCE` match are
    canonical (both null, or canonical base64 of at most ``MAX_HEADER_BYTES`` with at
    most ``MAX_SIGNATURES`` signatures), and the header's bytes."""
    if header is None or signatures is None:
        return header is signatures, None
    data = _canonical_base64(header)
    if data is None or len(data) > MAX_HEADER_BYTES or signatures.count("{") > MAX_SIGNATURES:
        return False, None
    return True, data


def evidence_values(data: bytes) -> tuple[int, bytes | None, list[dict[str, str]] | None,
                                          str | None, str] | None:
    """``(seq, header, signatures, publisher, body_sha256)`` of a canonical evidence line,
    or None when the full parser must decide."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    m = EVIDENCE.fullmatch(text)
    if m is None:
        return None
    seq, header_b64, sigs, publisher, body_sha256 = m.groups()
    ok, header = evidence_header(header_b64, sigs)
    if not ok:
        return None
    signatures = None if sigs is None else [
        {"key": k, "sig": s} for k, s in _SIG_PARTS.findall(sigs)]
    assert seq is not None and body_sha256 is not None  # groups the pattern requires
    return int(seq), header, signatures, publisher, body_sha256
