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

import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from audit.export_dir import ENTRIES, EVIDENCE, Failure, check_evidence
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

    def raise_failure(self) -> None:
        if self.failure is not None:
            message, file, line, seq = self.failure
            raise Failure(message, file=file, line=line, seq=seq)


def _lines(path: Path, span: tuple[int, int], file: str, first: int, seq_lines: bool
           ) -> list[bytes | Failure]:
    """The lines of ``path`` in ``span`` (line ``first + 1`` on), each without its
    newline, or the :class:`Failure` that a line is as ``LineReader`` reads it."""
    start, end = span
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    out: list[bytes | Failure] = []
    lines = data.split(b"\n")
    last = lines.pop()  # b"" after a final newline
    for i, line in enumerate(lines):
        if len(line) > MAX_LINE_BYTES:
            n = first + i + 1
            out.append(Failure(f"longer than {MAX_LINE_BYTES} bytes: not a line of an export",
                               file=file, line=n, seq=n - 1 if seq_lines else None))
        else:
            out.append(line)
    if last:
        n = first + len(lines) + 1
        message = (f"longer than {MAX_LINE_BYTES} bytes: not a line of an export"
                   if len(last) > MAX_LINE_BYTES
                   else "the last line does not end with a newline")
        out.append(Failure(message, file=file, line=n, seq=n - 1 if seq_lines else None))
    return out


def _check_chunk(chunk: _Chunk) -> ChunkResult:
    entries = _lines(chunk.entries, chunk.span, ENTRIES, chunk.first_seq, True)
    evidence = (None if chunk.evidence is None
                else _lines(chunk.evidence, chunk.evidence_span, EVIDENCE, chunk.first_seq,
                            False))
    leaves = bytearray()
    try:
        for i, raw in enumerate(entries):
            if isinstance(raw, Failure):
                raise raw
            ev = None if evidence is None or i >= len(evidence) else evidence[i]
            if isinstance(ev, Failure):
                raise ev
            entry = check_line(raw, ev, chunk.first_seq + i, evidence=evidence is not None)
            leaves += entry.leaf_hash
    except Failure as f:
        return ChunkResult(bytes(leaves), (str(f), f.file, f.line, f.seq), chunk.span[1])
    return ChunkResult(bytes(leaves), None, chunk.span[1])


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


def count_lines(path: Path) -> int:
    """Lines in a file, a last one without its newline included."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")
