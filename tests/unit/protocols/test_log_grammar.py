"""The fast path of entry and evidence lines takes only what the full parser takes.

``protocols.log_grammar`` matches canonical lines with one regular expression;
``Entry.from_bytes`` and ``Evidence.from_line`` use it first and fall back to
the JSON parser for anything it does not take. Here every line it takes,
among valid lines of every shape and many thousands of damaged ones, is one
the full parser accepts with the same fields, and valid lines of the common
shapes do take the fast path.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from damage import damaged
from log_factories import POLICE_USER, SIG, UNREADABLE, draft, evidence, mid, sha

from keys import b64encode
from protocols.log_format import Entry, EntryFormatError, Evidence
from protocols.log_grammar import entry_values, evidence_values


def _lines() -> list[tuple[bytes, bytes]]:
    shapes: list[tuple[dict[str, Any], Evidence]] = [
        ({}, evidence(1)),
        ({"decision": "refused", "reason": "stale"}, evidence(2)),
        ({"in_reply_to": mid(9), "kind": "response", "consent": None}, evidence(3)),
        ({"consent": {"status": "given", "ground": None}, "data_categories": []},
         evidence(4, publisher="")),
        ({"subject_informed": True, "data_categories": ["a", "b-c", "z9"]},
         evidence(5, publisher=None)),
        ({**UNREADABLE, "header_sha256": sha("body 6")},
         Evidence(header=None, signatures=None, publisher=POLICE_USER,
                  body_sha256=sha("body 6"))),
        ({"reason": "too_large", "decision": "refused", **{
            k: v for k, v in UNREADABLE.items() if k != "reason"},
          "header_sha256": sha("body 7")},
         Evidence(header=None, signatures=None, publisher="odd \"user\"\\ é",
                  body_sha256=sha("body 7"))),
        ({}, evidence(8, header=b"", signatures=[SIG, {"key": "cd" * 16,
                                                        "sig": b64encode(b"\x01" * 64)}])),
        ({}, evidence(9, header=b"ab")),
        ({}, evidence(10, header=b"abcd")),
    ]
    out = []
    for seq, (overrides, ev) in enumerate(shapes):
        e, line = Entry.with_evidence(draft(seq, **overrides), seq, ev)
        out.append((e.to_bytes(), line))
    return out


LINES = _lines()
#: What damage puts in a line: JSON's punctuation, digits, hex, base64 and the
#: letters of null and true, a space, a backslash, a NUL and a non-ASCII byte.
ALPHABET = b'"{}[],:0123456789abcdefz-/=+ACQ AZnultrue\\\x00\xc3'


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
    # Only the publisher with characters JSON escapes is left to the full parser.
    assert taken == [True] * 6 + [False] + [True] * 3
    assert [_agree_evidence(ev) for _, ev in LINES] == taken


@pytest.mark.parametrize("which", ["entry", "evidence"])
def test_no_damaged_line_is_taken_unless_the_full_parser_takes_it_too(which: str) -> None:
    rng = random.Random(20261130)
    agree = _agree_entry if which == "entry" else _agree_evidence
    taken = 0
    for entry, ev in LINES:
        line = entry if which == "entry" else ev
        for _ in range(600):
            taken += agree(damaged(line, rng, ALPHABET))
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
