"""The fast path of envelope headers takes only what the full parser takes.

``protocols.header_grammar`` reads a header in the spelling ``build_header``
writes with one regular expression; ``parse_header`` uses it first and falls
back to the JSON parser for anything it does not take. Here every header it
takes, among valid headers of every shape and thousands of damaged ones, is
one the full parser accepts with the same values, and headers of another
spelling are left to the full parser.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

import pytest
from damage import damaged
from envelope_factories import FRONT_DOOR, POLICE, PROTOCOL, T0

from protocols.envelope import (
    EnvelopeRefused,
    build_header,
    parse_header,
    parse_header_json,
)
from protocols.header_grammar import header_values
from protocols.model import Consent, GroundId, Header, KeyId

KEY = KeyId("0123456789abcdef0123456789abcdef")
ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
REPLY_TO = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def _header(**overrides: object) -> bytes:
    values: dict[str, object] = {
        "message_id": ID, "kind": "referral", "protocol": PROTOCOL,
        "purpose": "safeguarding-referral", "sender": POLICE, "recipient": FRONT_DOOR,
        "created_at": T0, "in_reply_to": None,
        "consent": Consent("not_sought", GroundId("child-significant-harm")),
        "subject_informed": False, "data_categories": ["concern", "identity"],
        "recipient_key": KEY, "ciphertext": b"x" * 387}
    values.update(overrides)
    return build_header(**values)  # type: ignore[arg-type]


HEADERS = [
    _header(),
    _header(kind="request", consent=Consent("given", None), data_categories=[]),
    _header(kind="response", in_reply_to=REPLY_TO, subject_informed=True,
            consent=Consent("refused", GroundId("serious-crime")),
            data_categories=["a", "b-c", "z9"]),
    _header(kind="declined", in_reply_to=REPLY_TO, consent=None, subject_informed=True,
            data_categories=[]),
    _header(kind="receipt", in_reply_to=REPLY_TO, consent=None, subject_informed=True,
            data_categories=[], created_at=T0 + timedelta(days=400, seconds=59)),
    _header(ciphertext=b""),
]

#: What damage puts in a header (see ``test_log_grammar``).
ALPHABET = b'"{}[],:0123456789abcdefz-/ Tnultrue\\\x00\xc3'


def _full(data: bytes) -> Header | None:
    try:
        return parse_header_json(data)
    except EnvelopeRefused:
        return None


def _agree(data: bytes) -> bool:
    """Whether the fast path took the header (and, if it did, agreed with the full parser)."""
    fast = header_values(data)
    if fast is None:
        return False
    assert fast == _full(data), data
    assert parse_header(data) == fast
    return True


def test_headers_build_header_writes_take_the_fast_path_with_the_full_parsers_values() -> None:
    assert [_agree(h) for h in HEADERS] == [True] * len(HEADERS)
    # The values are those of the documented types, so code reading them cannot tell.
    fast, full = header_values(HEADERS[2]), parse_header_json(HEADERS[2])
    assert fast is not None and full is not None
    assert fast.created_at.tzinfo is full.created_at.tzinfo
    assert type(fast.data_categories) is tuple and type(fast.consent) is Consent
    assert repr(fast) == repr(full)


def test_no_damaged_header_is_taken_unless_the_full_parser_takes_it_too() -> None:
    rng = random.Random(20261130)
    taken = sum(_agree(damaged(h, rng, ALPHABET)) for h in HEADERS for _ in range(800))
    # Some damage leaves a valid header (another hash digit, another name): those are
    # taken, and agree; the rest fall through to the full parser.
    assert taken > 0


@pytest.mark.parametrize(("old", "new"), [
    (b'"kind":"referral"', b'"kind": "referral"'),
    (b'"kind":"referral"', b'"kind":"referr\\u0061l"'),
    (b'"length":387', b'"length":387.0'),
    (b'"length":387', b'"length":0000000000000000000387'),
    (b'"length":387', b'"length":' + b"1" * 19),
    (b'"length":387', b'"length":-0'),
    (b'{"message_id":"' + ID.encode() + b'","kind":"referral"',
     b'{"kind":"referral","message_id":"' + ID.encode() + b'"'),
    (b'"status":"not_sought","ground":"child-significant-harm"',
     b'"ground":"child-significant-harm","status":"not_sought"'),
])
def test_other_spellings_are_left_to_the_full_parser(old: bytes, new: bytes) -> None:
    other = HEADERS[0].replace(old, new)
    assert other != HEADERS[0]
    assert header_values(other) is None
    assert _outcome(parse_header, other) == _outcome(parse_header_json, other)


def _outcome(parse: Callable[[bytes], Header], data: bytes) -> Header | tuple[str, str]:
    try:
        return parse(data)
    except EnvelopeRefused as e:
        return e.reason.value, e.detail


@pytest.mark.parametrize(("index", "old", "new"), [
    (0, b'"ground":"child-significant-harm"', b'"ground":null'),
    (1, b'"ground":null', b'"ground":"serious-crime"'),
    (3, b'"consent":null', b'"consent":{"status":"given","ground":null}'),
    (3, b'"subject_informed":true', b'"subject_informed":false'),
    (4, b'"data_categories":[]', b'"data_categories":["concern"]'),
    (0, b'"concern","identity"', b'"identity","concern"'),
    (0, b'"concern","identity"', b'"concern","concern"'),
    (0, b'"protocol":"wy-iisp-2016"', b'"protocol":"wy--iisp-2016"'),
    (0, b'"protocol":"wy-iisp-2016"', b'"protocol":"-wy-iisp-2016"'),
    (0, b'"purpose":"safeguarding-referral"', b'"purpose":"' + b"a" * 41 + b'"'),
    (0, b'"created_at":"2026-', b'"created_at":"2026-02-30T00:00:00Z","x":"'),
    (0, b'"consent":{', b'"consent":null,"x":{'),
    (2, b'"data_categories":["a"', b'"data_categories":["A"'),
])
def test_invalid_headers_are_never_taken(index: int, old: bytes, new: bytes) -> None:
    bad = HEADERS[index].replace(old, new, 1)
    assert bad != HEADERS[index]
    assert header_values(bad) is None
    with pytest.raises(EnvelopeRefused) as refused:
        parse_header(bad)
    with pytest.raises(EnvelopeRefused) as full:
        parse_header_json(bad)
    assert (refused.value.reason, refused.value.detail) == (full.value.reason,
                                                             full.value.detail)


def test_a_calendar_date_that_does_not_exist_is_never_taken() -> None:
    created = b'"created_at":"' + T0.strftime("%Y-%m-%dT%H:%M:%SZ").encode() + b'"'
    assert created in HEADERS[0]
    bad = HEADERS[0].replace(created, b'"created_at":"2026-02-30T00:00:00Z"')
    assert header_values(bad) is None
    with pytest.raises(EnvelopeRefused, match="created_at"):
        parse_header(bad)
