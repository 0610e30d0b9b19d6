"""Verifying an export's lines in worker processes, a chunk of lines each.

What each line needs checked (its canonical form, its seq, its evidence and
its leaf hash) depends on that line alone; only the tree and the checkpoints
depend on everything before. So workers check chunks of lines and hand back
their leaf hashes, and the verifying process, in order, grows the tree from
them and meets the checkpoints as it always does (``verifying.TreeCheck``).
The first problem in tree order is still the one named: a chunk's failure is
raised only after the leaves before it were added, and so after every
checkpoint they complete.

Memory stays flat: a chunk is a few megabytes, and only a few chunks per
worker are in flight at a time.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from audit.export_dir import ENTRIES, EVIDENCE, Failure, check_evidence
from protocols import log_grammar, merkle
from protocols.log_format import MAX_LINE_BYTES, Entry, EntryFormatError

#: Lines per chunk: about 8 MiB of entries and evidence.
CHUNK: Final = 4096
#: Chunks in flight per worker.
_AHEAD: Final = 3
_BLOCK: Final = 1 << 22


def check_line(raw: bytes, evidence_line: bytes | None, seq: int, *, evidence: bool,
               entries_file: str = ENTRIES) -> Entry:
    """Check one entry line (and its evidence line when the log has evidence).

    Raises:
        Failure: not a canonical entry, out of seq, or evidence that is not its own.
    """
    where: dict[str, Any] = {"file": entries_file, "line": seq + 1, "seq": seq}
    try:
        entry = Entry.from_bytes(raw)
    except EntryFormatError as e:
        raise Failure(f"not a canonical entry ({e})", **where) from e
    if entry.seq != seq:
        raise Failure(f"seq {entry.seq} where seq {seq} belongs: entries were removed, "
                      "inserted or reordered", **where)
    if evidence:
        if evidence_line is None:
            raise Failure("evidence.jsonl ends before entries.jsonl", file=EVIDENCE,
                          line=seq + 1, seq=seq)
        check_evidence(entry, evidence_line, seq + 1)
    return entry


def chunk_offsets(path: Path, every: int) -> Iterator[int]:
    """The byte offsets of lines 0, ``every``, 2 * ``every``... of a file, then its size
    (a line past the last newline counts as a line)."""
    yield 0
    pos = 0
    lines = 0  # newlines since the last offset yielded
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            start = 0
            while True:
                want = every - lines
                n = block.count(b"\n", start)
                if n < want:
                    lines += n
                    break
                for _ in range(want):
                    start = block.index(b"\n", start) + 1
                yield pos + start
                lines = 0
            pos += len(block)
    yield pos


@dataclass(frozen=True)
class _Chunk:
    entries: Path
    evidence: Path | None
    first_seq: int
    span: tuple[int, int]
    evidence_span: tuple[int, int]


@dataclass(frozen=True)
class ChunkResult:
    """The leaf hashes of a chunk's lines up to its first failure, and the failure."""

    leaves: bytes
    failure: tuple[str, str | None, int | None, int | None] | None
    #: Where the chunk ends in entries.jsonl.
    end: int
    #: Where the evidence lines of its entries end in evidence.jsonl (0 without it).
    evidence_end: int = 0

    def raise_failure(self) -> None:
        if self.failure is not None:
            message, file, line, seq = self.failure
            raise Failure(message, file=file, line=line, seq=seq)


class _Span:
    """A span of an export file read whole, and the line after those taken so far.

    Its lines are not split out one by one: the fast loop matches and hashes them
    where they lie, which spares a copy of every line.
    """

    def __init__(self, path: Path, span: tuple[int, int], file: str, first: int,
                 seq_lines: bool) -> None:
        start, end = span
        with open(path, "rb") as f:
            f.seek(start)
            self.data = f.read(end - start)
        #: The same as text, when it is all ASCII (as every canonical line is).
        self.text = self.data.decode("ascii") if self.data.isascii() else None
        self.view = memoryview(self.data)
        self.pos = 0
        self.file = file
        self.first = first
        self._seq_lines = seq_lines

    def take(self, i: int) -> bytes | Failure | None:
        """Line ``i`` of the span, which starts at ``pos``, without its newline (moving
        past it); or the :class:`Failure` that it is as ``LineReader`` reads it; or None
        at the end of the span."""
        data, pos = self.data, self.pos
        if pos >= len(data):
            return None
        end = data.find(b"\n", pos)
        self.pos = len(data) if end < 0 else end + 1
        if end >= 0 and end - pos <= MAX_LINE_BYTES:
            return data[pos:end]
        n = self.first + i + 1
        message = (f"longer than {MAX_LINE_BYTES} bytes: not a line of an export"
                   if (len(data) if end < 0 else end) - pos > MAX_LINE_BYTES
                   else "the last line does not end with a newline")
        return Failure(message, file=self.file, line=n, seq=n - 1 if self._seq_lines else None)


def _check_chunk(chunk: _Chunk) -> ChunkResult:
    first = chunk.first_seq
    entries = _Span(chunk.entries, chunk.span, ENTRIES, first, True)
    evidence = (None if chunk.evidence is None
                else _Span(chunk.evidence, chunk.evidence_span, EVIDENCE, first, False))
    leaves = bytearray()
    i = 0
    try:
        while True:
            i = _fast_lines(entries, evidence, i, leaves)
            # What the fast loop does not take, the full check of its line decides: it
            # raises the failure, or takes the line (a publisher with JSON escapes).
            raw = entries.take(i)
            if raw is None:
                break
            if isinstance(raw, Failure):
                raise raw
            ev = None if evidence is None else evidence.take(i)
            if isinstance(ev, Failure):
                raise ev
            leaves += check_line(raw, ev, first + i, evidence=evidence is not None).leaf_hash
            i += 1
    except Failure as f:
        return ChunkResult(bytes(leaves), (str(f), f.file, f.line, f.seq), chunk.span[1])
    return ChunkResult(bytes(leaves), None, chunk.span[1], 0 if evidence is None
                       else chunk.evidence_span[0] + evidence.pos)


def _fast_lines(entries: _Span, evidence: _Span | None, i: int, leaves: bytearray) -> int:
    """Take line ``i`` and those after it while each is plainly good, adding their leaf
    hashes to ``leaves``; returns the index of the first line not taken.

    Takes only what :func:`check_line` takes, without building an entry: a match of
    the grammar of :mod:`protocols.log_grammar` for each line, then the checks of
    ``check_evidence`` on the groups. Anything else is left to :func:`check_line`,
    which names the failure (or, for what the grammar leaves to the full parser,
    takes the line).
    """
    text, view, pos = entries.text, entries.view, entries.pos
    if evidence is None:
        ev_text, ev_view, ev_pos = None, view, 0
    else:
        ev_text, ev_view, ev_pos = evidence.text, evidence.view, evidence.pos
        if ev_text is None:
            return i
    if text is None:
        return i
    entry_match = log_grammar.ENTRY.fullmatch
    evidence_match = log_grammar.EVIDENCE.fullmatch
    entry_ok = log_grammar.entry_ok
    evidence_header = log_grammar.evidence_header
    sha256 = hashlib.sha256
    leaf_hash = merkle.leaf_hash
    seq_of_i = entries.first
    while True:
        end = text.find("\n", pos)
        if not 0 <= end - pos <= MAX_LINE_BYTES:
            break
        m = entry_match(text, pos, end)
        if m is None:
            break
        groups = m.groups()
        (seq, _, message_id, _, _, _, _, _, _, _, _, _, _, _, _, header_sha256, _, _,
         publisher, evidence_sha256) = groups
        if int(seq) != seq_of_i + i or not entry_ok(groups):
            break
        if ev_text is not None:
            ev_end = ev_text.find("\n", ev_pos)
            # No evidence line the grammar takes is longer than MAX_LINE_BYTES: its
            # header, seq, signatures and publisher are all bounded.
            e = None if ev_end < 0 else evidence_match(ev_text, ev_pos, ev_end)
            if e is None:
                break
            ev_seq, header_b64, signatures, ev_publisher, body_sha256 = e.groups()
            # Both canonical: equal text is equal value.
            if ev_seq != seq or ev_publisher != publisher:
                break
            if sha256(ev_view[ev_pos:ev_end]).hexdigest() != evidence_sha256:
                break
            ok, header = evidence_header(header_b64, signatures)
            if not ok:
                break
            # A canonical entry names no message id exactly when its body was
            # refused at check 1 (``entry_ok``).
            if header is None:
                if message_id is not None or header_sha256 != body_sha256:
                    break
            elif message_id is None or sha256(header).hexdigest() != header_sha256:
                break
            ev_pos = ev_end + 1
        leaves += leaf_hash(view[pos:end])
        pos = end + 1
        i += 1
    entries.pos = pos
    if evidence is not None:
        evidence.pos = ev_pos
    return i


def checked_chunks(d: Path, *, evidence: bool, jobs: int) -> Iterator[ChunkResult]:
    """The leaf hashes of every line of ``d``'s entries.jsonl, a chunk at a time and in
    order, checked by ``jobs`` worker processes."""
    entries = d / ENTRIES
    ev_path = d / EVIDENCE if evidence else None
    ev_offsets = None if ev_path is None else chunk_offsets(ev_path, CHUNK)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        waiting: deque[Future[ChunkResult]] = deque()
        offsets = chunk_offsets(entries, CHUNK)
        start = next(offsets)
        ev_start = 0 if ev_offsets is None else next(ev_offsets)
        first = 0
        for end in offsets:
            if end == start:
                break
            # Evidence that ends early gives the last chunks fewer lines, or none.
            ev_end = ev_start if ev_offsets is None else next(ev_offsets, ev_start)
            waiting.append(pool.submit(_check_chunk, _Chunk(
                entries, ev_path, first, (start, end), (ev_start, ev_end))))
            first += CHUNK
            start, ev_start = end, ev_end
            while len(waiting) > _AHEAD * jobs:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()
