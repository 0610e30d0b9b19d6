"""An envelope header in the one spelling senders write (compact JSON, keys in the order of
wire spec 3) as one regular expression.

Pure. ``envelope.parse_header`` runs for every envelope the router decides
and every entry an audit replays; its JSON parse and the per-field checks
are most of its cost. A header written by :func:`protocols.envelope.build_header`
(compact, keys in spec order, ASCII) is read here by one match in C and a few
checks between fields.

This is a fast path, never a second definition: :func:`header_values` returns
None for anything it does not take, and ``parse_header`` then runs the full
parser, which decides. What it takes is exactly what the full parser accepts,
with the same values (``tests/unit/protocols/test_header_grammar.py`` holds the
two together); a header with whitespace, JSON escapes, another key order or
non-ASCII text is always left to the full parser.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Final

from protocols.grammar_parts import NAME, UUID4, bounded_put, names_ok, utc_time
from protocols.model import (
    CONSENT_STATUSES,
    KINDS,
    CategoryId,
    Consent,
    ConsentStatus,
    GroundId,
    Header,
    Kind,
    PayloadRef,
)

__all__ = ["CIPHER", "header_values"]


CIPHER: Final = "x25519-xsalsa20poly1305-sealedbox"

# Names are matched by their characters and length; where their hyphens stand is
# checked on the captured text (``grammar_parts.names_ok``).
_NAME: Final = NAME
_UUID4: Final = UUID4

_HEADER: Final = re.compile(
    rf'\{{"message_id":"({_UUID4})",'
    rf'"kind":"({"|".join(KINDS)})",'
    rf'"protocol":"({_NAME})",'
    rf'"purpose":"({_NAME})",'
    rf'"sender":"({_NAME}/{_NAME})",'
    rf'"recipient":"({_NAME}/{_NAME})",'
    r'"created_at":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)",'
    rf'"in_reply_to":(?:null|"({_UUID4})"),'
    rf'"consent":(?:null|\{{"status":"({"|".join(CONSENT_STATUSES)})",'
    rf'"ground":(null|"{_NAME}")\}}),'
    r'"subject_informed":(true|false),'
    rf'"data_categories":\[((?:"{_NAME}"(?:,"{_NAME}")*)?)\],'
    rf'"payload":\{{"cipher":"{re.escape(CIPHER)}",'
    r'"recipient_key":"([0-9a-f]{32})",'
    r'"sha256":"([0-9a-f]{64})",'
    # A longer length is left to the full parser (and to Python's limit on digits).
    r'"length":(0|[1-9][0-9]{0,17})\}\}')

_KIND_OF: Final[dict[str, Kind]] = {k: k for k in KINDS}
_DATALESS: Final = frozenset({"declined", "receipt"})
_STATUS_OF: Final[dict[str, ConsentStatus]] = {s: s for s in CONSENT_STATUSES}

#: Values already read: a log's headers share a few category lists and consents.
#: Each is bounded (``grammar_parts.bounded_put``), so distinct values cannot grow it.
_CATEGORIES: dict[str, tuple[CategoryId, ...] | None] = {}
_CONSENTS: dict[str, Consent | None] = {}


def _categories(text: str) -> tuple[CategoryId, ...] | None:
    """The names of ``"a","b"``, strictly increasing, or None."""
    if text in _CATEGORIES:
        return _CATEGORIES[text]
    names = [c[1:-1] for c in text.split(",")] if text else []
    ok = names_ok(*names) and all(a < b for a, b in pairwise(names))
    return bounded_put(_CATEGORIES, text, tuple(CategoryId(c) for c in names) if ok else None)


def _consent(status: str, ground: str) -> Consent | None:
    """The consent of ``status`` and ``ground`` (``null`` or a quoted name), or None."""
    key = f"{status} {ground}"
    if key in _CONSENTS:
        return _CONSENTS[key]
    value = None if ground == "null" else ground[1:-1]
    ok = (status == "given") == (value is None) and names_ok(value)
    consent = Consent(_STATUS_OF[status], None if value is None else GroundId(value))
    return bounded_put(_CONSENTS, key, consent if ok else None)


def header_values(data: bytes) -> Header | None:
    """The header of ``data`` in the spelling :func:`~protocols.envelope.build_header`
    writes, or None when the full parser must decide.

    The caller has refused headers over ``MAX_HEADER_BYTES`` already.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    m = _HEADER.fullmatch(text)
    if m is None:
        return None
    (message_id, kind, protocol, purpose, sender, recipient, created, in_reply_to, status,
     ground, informed, categories, recipient_key, sha256, length) = m.groups()
    if not names_ok(protocol, purpose, sender, recipient):
        return None
    cats = _categories(categories)
    created_at = utc_time(created)
    if cats is None or created_at is None:
        return None
    if kind in _DATALESS:
        if status is not None or informed != "true" or cats:
            return None
        consent = None
    else:
        if status is None or (consent := _consent(status, ground)) is None:
            return None
    # The frozen dataclasses' own __init__ sets each field through
    # object.__setattr__; these values are of their documented form already.
    payload = object.__new__(PayloadRef)
    payload.__dict__.update(cipher=CIPHER, recipient_key=recipient_key, sha256=sha256,
                            length=int(length))
    header = object.__new__(Header)
    header.__dict__.update(
        message_id=message_id, kind=_KIND_OF[kind], protocol=protocol, purpose=purpose,
        sender=sender, recipient=recipient, created_at=created_at, in_reply_to=in_reply_to,
        consent=consent, subject_informed=informed == "true", data_categories=cats,
        payload=payload)
    return header
