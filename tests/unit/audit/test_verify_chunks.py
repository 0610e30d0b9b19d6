"""A worker's check of a chunk of lines takes only what the full check of each line takes.

``audit.verify_chunks`` checks a chunk in one loop over the grammar's matches
and hands every line that loop does not take to ``check_line``, which names
the failure or takes the line. Here that loop is held to the full check: on
lines of every shape the router writes and on thousands of damaged ones, the
chunk gives the same leaf hashes and the same first failure (message, file,
line, seq) as checking every line by ``check_line`` with the JSON parser
alone, and on valid lines the loop does take them.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_export import Built, lines
from damage import JSON_LINE_ALPHABET, damaged
from log_factories import line_pairs, sha

import audit.verify_chunks
from audit.verify_chunks import ChunkResult, _check_chunk, _Chunk, check_line
from keys import b64encode
from protocols import log_format
from protocols.log_format import MAX_LINE_BYTES, canonical_json

Pairs = list[tuple[bytes, bytes]]


def _router_pairs(built: Built) -> Pairs:
    entries = [x.rstrip(b"\n") for x in lines(built.export / "entries.jsonl")]
    evidence = [x.rstrip(b"\n") for x in lines(built.export / "evidence.jsonl")]
    return list(zip(entries, evidence, strict=True))


@pytest.fixture(params=["factories", "router"])
def pairs(request: pytest.FixtureRequest, built: Built) -> Pairs:
    """Lines of every shape: made by the test factories, or decided by the router."""
    return line_pairs() if request.param == "factories" else _router_pairs(built)


class Chunks:
    """Checks one chunk of lines both ways and compares."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.monkeypatch = monkeypatch
        self.outcomes = {"taken": 0, "failed": 0}

    def fast(self, chunk: _Chunk) -> tuple[ChunkResult, int]:
        """The chunk checked as verify checks it, and how many lines ``check_line`` saw."""
        calls = 0

        def counted(*args: Any, **kwargs: Any) -> log_format.Entry:
            nonlocal calls
            calls += 1
            return check_line(*args, **kwargs)

        with self.monkeypatch.context() as m:
            m.setattr(audit.verify_chunks, "check_line", counted)
            return _check_chunk(chunk), calls

    def slow(self, chunk: _Chunk) -> ChunkResult:
        """The chunk checked line by line by ``check_line``, with the JSON parser alone."""
        with self.monkeypatch.context() as m:
            m.setattr(audit.verify_chunks, "_fast_lines", _take_nothing)
            m.setattr(log_format, "entry_values", lambda data: None)
            m.setattr(log_format, "evidence_values", lambda data: None)
            return _check_chunk(chunk)

    def agree(self, entries: bytes, evidence: bytes | None, first: int = 0,
              start: int = 0) -> tuple[ChunkResult, int]:
        """Both ways over files of these bytes, the chunk from byte ``start`` of
        entries.jsonl (and of evidence.jsonl) on, its first line seq ``first``."""
        e_path = self.tmp / "entries.jsonl"
        e_path.write_bytes(entries)
        v_path = None
        if evidence is not None:
            v_path = self.tmp / "evidence.jsonl"
            v_path.write_bytes(evidence)
        ev_start = 0 if evidence is None else _offset_of_line(evidence, _line_at(entries,
                                                                                  start))
        chunk = _Chunk(e_path, v_path, first, (start, len(entries)),
                       (ev_start, 0 if evidence is None else len(evidence)))
        fast, calls = self.fast(chunk)
        slow = self.slow(chunk)
        assert fast == slow, (entries, evidence)
        self.outcomes["failed" if fast.failure else "taken"] += 1
        return fast, calls

    def agree_lines(self, pairs: Pairs) -> tuple[ChunkResult, int]:
        return self.agree(_file(e for e, _ in pairs), _file(v for _, v in pairs))


def _take_nothing(entries: Any, evidence: Any, i: int, leaves: bytearray) -> int:
    return i


def _file(items: Iterator[bytes] | list[bytes]) -> bytes:
    return b"".join(x + b"\n" for x in items)


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset)


def _offset_of_line(data: bytes, line: int) -> int:
    pos = 0
    for _ in range(line):
        pos = data.index(b"\n", pos) + 1
    return pos


@pytest.fixture
def chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Chunks:
    return Chunks(tmp_path, monkeypatch)


def _escaped(pairs: Pairs) -> int:
    """Lines whose publisher has characters JSON escapes: the grammar leaves them to the
    full parser."""
    return sum(b"\\" in e for e, _ in pairs)


# --- valid lines -----------------------------------------------------------------------


def test_valid_lines_of_every_shape_take_the_fast_loop(chunks: Chunks, pairs: Pairs) -> None:
    result, calls = chunks.agree_lines(pairs)
    assert result.failure is None
    assert result.leaves == b"".join(hashlib.sha256(b"\x00" + e).digest() for e, _ in pairs)
    assert calls == _escaped(pairs)
    without, calls = chunks.agree(_file(e for e, _ in pairs), None)
    assert (without.leaves, without.failure, calls) == (result.leaves, None, _escaped(pairs))


def test_a_chunk_that_starts_inside_the_files(chunks: Chunks) -> None:
    pairs = line_pairs(first=4096)
    # The files hold lines from seq 4094 on; the chunk starts at its line 3, seq 4096.
    before = line_pairs(first=4094)[:2]
    entries = _file(e for e, _ in before + pairs)
    evidence = _file(v for _, v in before + pairs)
    start = _offset_of_line(entries, 2)
    result, calls = chunks.agree(entries, evidence, first=4096, start=start)
    assert (result.failure, calls) == (None, _escaped(pairs))
    assert len(result.leaves) == 32 * len(pairs)
    # The same chunk said to start one seq later: every line is out of seq.
    result, _ = chunks.agree(entries, evidence, first=4097, start=start)
    assert result.failure is not None and result.failure[1:] == ("entries.jsonl", 4098, 4097)


# --- damaged lines ---------------------------------------------------------------------


def _damaged(line: bytes, rng: random.Random) -> bytes:
    return damaged(line, rng, JSON_LINE_ALPHABET)


def _rebind(entry: bytes, old_evidence: bytes, new_evidence: bytes) -> bytes:
    """The entry bound to another evidence line, as one who holds the log key could."""
    return entry.replace(sha(old_evidence).encode(), sha(new_evidence).encode())


def _with(pairs: Pairs, k: int, entry: bytes | None = None,
          evidence: bytes | None = None) -> Pairs:
    out = list(pairs)
    e, v = out[k]
    out[k] = (e if entry is None else entry, v if evidence is None else evidence)
    return out


def test_lines_with_a_byte_changed_inserted_or_removed(chunks: Chunks, pairs: Pairs) -> None:
    rng = random.Random(20261130)
    for _ in range(700):
        k = rng.randrange(len(pairs))
        e, v = pairs[k]
        match rng.randrange(3):
            case 0:
                chunks.agree_lines(_with(pairs, k, entry=_damaged(e, rng)))
            case 1:
                chunks.agree_lines(_with(pairs, k, evidence=_damaged(v, rng)))
            case _:
                spoilt = _damaged(v, rng)
                chunks.agree_lines(_with(pairs, k, entry=_rebind(e, v, spoilt),
                                         evidence=spoilt))
    assert chunks.outcomes["failed"] > 500 and chunks.outcomes["taken"] > 0


#: Values to put in a field: of the kinds each field holds, some not of its form.
_NAMES = ["a", "a-b", "wy--iisp", "-a", "a-", "A", "a" * 40, "a" * 41, "a/b", "é"]
_SPECIAL: dict[str, list[Any]] = {
    "seq": [0, 1, -1, "1", 10**20, True],
    "at": ["2026-02-30T00:00:00Z", "2026-11-24T24:00:00Z", "2026-11-24T13:50:41",
           "2024-02-29T23:59:59Z", "2026-11-24T13:50:41.5Z", 0],
    "message_id": [None, "00000000-0000-4000-8000-00000000000A",
                   "00000000-0000-1000-8000-000000000000"],
    "kind": [None, "referral", "receipt", "Referral", ""],
    "decision": ["routed", "refused", "Refused", None],
    "reason": [None, "stale", "malformed", "too_large", "unsupported_version", "bogus"],
    "protocol": [None, *_NAMES], "purpose": [None, *_NAMES],
    "sender": [None, "a/b", "a//b", "a/-b", "a", "a/b/c", "leeds-cc/front-door"],
    "recipient": [None, "a/b", "a/b-", "leeds-cc/front-door"],
    "in_reply_to": [None, "00000000-0000-4000-8000-000000000009"],
    "consent": [None, {"status": "given", "ground": None}, {"status": "given"},
                {"ground": None, "status": "given"}, {"status": "bogus", "ground": None},
                {"status": "not_sought", "ground": "a--b"}],
    "subject_informed": [None, True, False, 0],
    "data_categories": [None, [], ["a"], ["b", "a"], ["a", "a"], ["a-"], "a", [1],
                        ["concern", "identity", "z"]],
    "header_sha256": [None, "A" * 64, "a" * 63, sha("other")],
    "payload_sha256": [None, "0" * 64, "g" * 64],
    "registry_version": [0, 7, -1, "7", True, 1.5],
    "publisher": [None, "", 'x"y', "é", "x" * 256, "leeds-cc.front-door"],
    "evidence_sha256": [sha("other"), None],
}
_EVIDENCE_SPECIAL: dict[str, list[Any]] = {
    "seq": [0, -1, "0"],
    "header": [None, "", "YWI=", "YWJ=", "YWI", "=YWI", b64encode(b"x" * 20000)],
    "signatures": [None, [], [{"key": "ab" * 16, "sig": b64encode(bytes(64))}] * 6,
                   [{"key": "ab" * 16, "sig": b64encode(bytes(63))}],
                   [{"sig": b64encode(bytes(64)), "key": "ab" * 16}]],
    "publisher": [None, "", 'x"y', "leeds-cc.front-door"],
    "body_sha256": [sha("other"), "A" * 64],
}


def _mutated(line: bytes, pairs_values: list[dict[str, Any]], special: dict[str, list[Any]],
             rng: random.Random) -> bytes:
    """The line with one field set to another line's value or to a special one, written
    canonically (so that the grammar, not the spelling, has to judge it)."""
    doc = json.loads(line)
    field = rng.choice(list(doc))
    doc[field] = rng.choice([*(d[field] for d in pairs_values), *special[field]])
    return canonical_json(doc)


def test_fields_changed_to_other_values(chunks: Chunks, pairs: Pairs) -> None:
    rng = random.Random(20261201)
    entry_docs = [json.loads(e) for e, _ in pairs]
    evidence_docs = [json.loads(v) for _, v in pairs]
    for _ in range(1000):
        k = rng.randrange(len(pairs))
        e, v = pairs[k]
        if rng.randrange(2):
            chunks.agree_lines(_with(pairs, k, entry=_mutated(e, entry_docs, _SPECIAL, rng)))
        else:
            other = _mutated(v, evidence_docs, _EVIDENCE_SPECIAL, rng)
            chunks.agree_lines(_with(pairs, k, entry=_rebind(e, v, other), evidence=other))
    assert chunks.outcomes["failed"] > 500 and chunks.outcomes["taken"] > 50


def _rehashed(pairs: Pairs, k: int, header: bytes | None, rng: random.Random) -> Pairs:
    """Entry ``k`` with another header in its evidence, its header_sha256 and
    evidence_sha256 made to agree: what a forger holding the log key writes."""
    e, v = pairs[k]
    ev = json.loads(v)
    entry = json.loads(e)
    ev["header"] = None if header is None else b64encode(header)
    if header is None:
        ev["signatures"] = None
        entry["header_sha256"] = ev["body_sha256"] if rng.randrange(2) else sha(b"x")
    else:
        ev["signatures"] = ev["signatures"] or [{"key": "ab" * 16,
                                                 "sig": b64encode(bytes(64))}]
        entry["header_sha256"] = sha(header)
    new_v = canonical_json(ev)
    entry["evidence_sha256"] = sha(new_v)
    return _with(pairs, k, entry=canonical_json(entry), evidence=new_v)


def test_evidence_and_entries_made_to_agree_or_not(chunks: Chunks, pairs: Pairs) -> None:
    rng = random.Random(20261202)
    headers = [None, b"", b'{"header":1}', *(rng.randbytes(rng.randrange(1, 40))
                                             for _ in range(5))]
    for _ in range(300):
        chunks.agree_lines(_rehashed(pairs, rng.randrange(len(pairs)), rng.choice(headers),
                                     rng))
    # Consistent lines are taken (the tree, not the line, shows the forgery); a header
    # for a body refused at check 1, or none for one that passed, is not.
    assert chunks.outcomes["failed"] > 50 and chunks.outcomes["taken"] > 50


def _structural(pairs: Pairs, rng: random.Random) -> Iterator[tuple[bytes, bytes | None]]:
    entries = [e for e, _ in pairs]
    evidence = [v for _, v in pairs]
    n = len(pairs)
    edits: list[Callable[[list[bytes], int], list[bytes]]] = [
        lambda xs, k: xs[:k] + xs[k + 1:],
        lambda xs, k: [*xs[:k], xs[k], *xs[k:]],
        lambda xs, k: [*xs[:k], xs[(k + 1) % n], xs[k], *xs[k + 2:]],
        lambda xs, k: [*xs[:k], xs[k] + b"\r", *xs[k + 1:]],
        lambda xs, k: [*xs[:k], xs[k] + b" " * MAX_LINE_BYTES, *xs[k + 1:]],
        lambda xs, k: [*xs[:k], b"", *xs[k:]],
        lambda xs, k: xs[:k],
    ]
    for edit in edits:
        for k in (0, rng.randrange(1, n - 1), n - 1):
            yield _file(edit(entries, k)), _file(evidence)
            yield _file(entries), _file(edit(evidence, k))
            yield _file(edit(entries, k)), _file(edit(evidence, k))
    for k in (0, n // 2):
        yield _file(entries)[:-1], _file(evidence)
        yield _file(entries), _file(evidence)[:-1]
        yield _file(entries)[:-1], _file(evidence[:k])
        yield _file(entries[:k]) + b"x" * (MAX_LINE_BYTES + 1), _file(evidence)
        yield _file(entries), _file(evidence[:k]) + b"x" * (MAX_LINE_BYTES + 1)
        yield _file(entries[:k]), _file(evidence)
        yield _file(entries[:k]), None
    # Numbers past Python's limit on the digits of an int.
    huge = b'{"seq":' + b"1" * 5000
    yield _file([entries[0].replace(b'{"seq":0', huge), *entries[1:]]), _file(evidence)
    yield _file(entries), _file([evidence[0].replace(b'{"seq":0', huge), *evidence[1:]])
    # A canonical entry, but longer than any line an export holds.
    doc = json.loads(entries[0])
    doc["data_categories"] = [f"c{i:05}" for i in range(MAX_LINE_BYTES // 9 + 1)]
    assert len(canonical_json(doc)) > MAX_LINE_BYTES
    yield _file([canonical_json(doc), *entries[1:]]), _file(evidence)


def test_lines_removed_inserted_swapped_spoilt_or_cut(chunks: Chunks, pairs: Pairs) -> None:
    for entries, evidence in _structural(pairs, random.Random(20261203)):
        chunks.agree(entries, evidence)
    assert chunks.outcomes["failed"] > 50 and chunks.outcomes["taken"] > 3
