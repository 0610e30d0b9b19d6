"""The fast path of entry and evidence lines takes only what the full parser takes.

``protocols.log_grammar`` matches canonical lines with one regular expression;
``Entry.from_bytes`` and ``Evidence.from_line`` use it first and fall back to
the JSON parser for anything it does not take. Here every line it takes,
among valid lines of every shape and many thousands of damaged ones, is one
the full parser accepts with the same fields, and valid lines of the common
shapes do take the fast path.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
from typing import Any

import pytest
from damage import JSON_LINE_ALPHABET, damaged
from log_factories import line_pairs

from protocols.log_format import Entry, EntryFormatError, Evidence
from protocols.log_grammar import entry_values, evidence_values

LINES = line_pairs()


def _entry_full(data: bytes) -> dict[str, Any] | None:
    try:
        return dataclasses.asdict(Entry.parse_json(data))
    except EntryFormatError:
        return None


def _evidence_full(data: bytes) -> tuple[Any, ...] | None:
    try:
        seq, ev = Evidence.parse_json(data)
    except EntryFormatError:
        return None
    return seq, ev.header, ev.signatures, ev.publisher, ev.body_sha256


def _agree_entry(data: bytes) -> bool:
    """Whether the fast path took the line (and, if it did, agreed with the full parser)."""
    fast = entry_values(data)
    if fast is None:
        return False
    assert fast == _entry_full(data), data
    assert dataclasses.asdict(Entry.from_bytes(data)) == fast
    assert Entry.from_bytes(data).to_bytes() == data
    return True


def _agree_evidence(data: bytes) -> bool:
    fast = evidence_values(data)
    if fast is None:
        return False
    assert fast == _evidence_full(data), data
    return True


def test_valid_lines_of_plain_text_take_the_fast_path_with_the_full_parsers_fields() -> None:
    taken = [_agree_entry(entry) for entry, _ in LINES]
    # Only a publisher with characters JSON escapes is left to the full parser.
    assert taken == [b"\\" not in entry for entry, _ in LINES]
    assert taken.count(False) == 2
    assert [_agree_evidence(ev) for _, ev in LINES] == taken


@pytest.mark.parametrize("which", ["entry", "evidence"])
def test_no_damaged_line_is_taken_unless_the_full_parser_takes_it_too(which: str) -> None:
    rng = random.Random(20261130)
    agree = _agree_entry if which == "entry" else _agree_evidence
    taken = 0
    for entry, ev in LINES:
        line = entry if which == "entry" else ev
        for _ in range(600):
            taken += agree(damaged(line, rng, JSON_LINE_ALPHABET))
    # Some damage leaves a valid line (another hash digit, another name): those are
    # taken, and agree; the rest fall through to the full parser, which refuses them.
    assert taken > 0


def test_lines_the_fast_path_refuses_to_judge_are_left_to_the_full_parser() -> None:
    entry, ev = LINES[0]
    for bad in (entry.replace(b'"seq":0', b'"seq":00'),
                entry.replace(b'"at":"2026-11-24', b'"at":"2026-02-30'),
                entry.replace(b'"concern","identity"', b'"identity","concern"'),
                entry.replace(b"wy-iisp-2016", b"wy--iisp-2016"),
                entry.replace(b"wy-iisp-2016", b"-wy-iisp-2016"),
                entry.replace(b'"decision":"routed"', b'"decision":"refused"'),
                entry + b" "):
        assert entry_values(bad) is None
        with pytest.raises(EntryFormatError):
            Entry.from_bytes(bad)
    padded = LINES[8][1]  # its header, "ab", is "YWI=" in base64
    assert b'"YWI="' in padded
    for bad in (padded.replace(b'"YWI="', b'"YWJ="'), padded.replace(b'"YWI="', b'"YWI"'),
                padded.replace(b'"YWI="', b'"YW=I"'), ev.replace(b'"seq":0', b'"seq":-0')):
        assert evidence_values(bad) is None
        with pytest.raises(EntryFormatError):
            Evidence.from_line(bad)


def test_the_header_is_taken_in_exactly_the_spellings_the_full_parser_takes() -> None:
    # The grammar leaves the header's alphabet and padding to a strict decoder; here
    # both sides judge the same thousands of spellings, canonical or nearly so.
    rng = random.Random(20261130)
    _, line = LINES[8]
    assert b'"header":"YWI=",' in line
    alphabet = "AQgwYWIab+/====\\\n -_\x00é"
    taken = 0
    for _ in range(3000):
        text = base64.b64encode(rng.randbytes(rng.randrange(9))).decode()
        if rng.random() < 0.7:
            i = rng.randrange(len(text) + 1)
            text = text[:i] + rng.choice(alphabet) + text[i + rng.randrange(2):]
        spelled = line.replace(b'"YWI="', json.dumps(text).encode())
        fast = _agree_evidence(spelled)
        assert fast == (_evidence_full(spelled) is not None), spelled
        taken += fast
    assert 0 < taken < 3000


def test_a_number_too_long_for_python_is_refused_as_a_line_not_of_its_form() -> None:
    # Python converts at most 4,300 digits to an int; past that it raises a bare
    # ValueError, which would have escaped readers as a crash.
    entry, ev = LINES[0]
    long_seq = b'"seq":' + b"1" * 5000
    for bad, parse in ((entry.replace(b'"seq":0', long_seq), Entry.from_bytes),
                       (entry.replace(b'"registry_version":7', b'"registry_version":'
                                      + b"1" * 5000), Entry.from_bytes),
                       (ev.replace(b'"seq":0', long_seq), Evidence.from_line)):
        with pytest.raises(EntryFormatError):
            parse(bad)  # type: ignore[operator]
