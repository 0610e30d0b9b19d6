"""The files of an audit export (wire spec 6.4, ``docs/export-format.md``) and their readers.

Shared by verify, replay, report and proofs. Readers stop at the first line
not of its form and name the file and line; messages carry seq numbers,
codes and hashes, never entry contents beyond codes.

Every file is read as strictly as ``entries.jsonl``: a line ends with one
``\\n``, is at most ``MAX_LINE_BYTES`` long (a longer one is refused before it
is read whole), parses as strict JSON (no duplicate keys; a line nested too
deeply is refused, not a crash) and is exactly the canonical bytes of what it
holds, so no CR, no trailing space, no second spelling.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from audit.errors import AuditError
from keys import (
    Checkpoint,
    NoteError,
    NoteVerifier,
    open_checkpoint,
)
from protocols import strict_json
from protocols.log_format import MAX_LINE_BYTES, Entry, EntryFormatError, Evidence

ENTRIES: Final = "entries.jsonl"
CHECKPOINTS: Final = "checkpoints.jsonl"
LOG_KEY: Final = "log-key.txt"
EVIDENCE: Final = "evidence.jsonl"
REGISTRY: Final = "registry"
REGISTRY_KEY: Final = "registry-key.pub"
README: Final = "README.txt"
#: Every file of an export but the registry directories (``registry/directory-N.json``).
FIXED_FILES: Final = frozenset({ENTRIES, EVIDENCE, CHECKPOINTS, LOG_KEY, README,
                                f"{REGISTRY}/{REGISTRY_KEY}"})
#: How often (in entries) verify and replay report progress.
PROGRESS_EVERY: Final = 2_000

#: ``progress(entries done, bytes read, bytes in entries.jsonl)``.
Progress = Callable[[int, int, int], None]


def directory_file(version: int) -> str:
    return f"directory-{version}.json"


def parse_log_key(text: str) -> NoteVerifier:
    """A note verifier key from its line, or from a file holding that line.

    Raises:
        AuditError: neither a readable file nor a verifier key line.
    """
    candidate = text.strip()
    path = Path(candidate)
    if "+" not in candidate or path.is_file():
        try:
            candidate = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise AuditError(f"the log key {text!r} is neither a key line nor a readable file"
                             ) from e
    try:
        return NoteVerifier.parse(candidate)
    except NoteError as e:
        raise AuditError(f"the log key is not a note verifier key: {e}") from e


def load_checkpoint_notes(path: Path | str) -> list[str]:
    """Checkpoint notes an auditor holds: a file with one note, or lines of ``{"note": ...}``.

    The auditor's own file, so blank lines and spacing are forgiven; what is
    not a note is still named by line, never a crash.

    Raises:
        AuditError: unreadable, or neither form.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise AuditError(f"{path}: cannot read the checkpoint") from e
    if not text.lstrip().startswith("{"):
        return [text]
    notes = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            notes.append(_note_of(strict_json.loads(line.encode("utf-8"))))
        except ValueError as e:
            raise AuditError(f"{path} line {n}: not {{\"note\": ...}} ({e})") from e
    return notes


def _note_of(doc: object) -> str:
    if not isinstance(doc, dict) or set(doc) != {"note"} or not isinstance(doc["note"], str):
        raise ValueError('not {"note": "<signed checkpoint>"}')
    return doc["note"]


def checkpoint_line(note: str) -> bytes:
    """The line of ``checkpoints.jsonl`` for ``note``, without its newline: compact JSON,
    UTF-8, the note's characters as they are (its signature lines start with an em
    dash), with JSON's escapes for ``"``, ``\\`` and control characters."""
    return json.dumps({"note": note}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


class Failure(Exception):
    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 seq: int | None = None) -> None:
        super().__init__(message)
        self.file, self.line, self.seq = file, line, seq

    def where(self) -> str:
        """``file line N`` (or what of it is known), to put before the message."""
        return (self.file or "") + (f" line {self.line}" if self.line is not None else "")


class LineReader:
    """The lines of one export file, each without its ``\\n``, counted from 1.

    Raises :class:`Failure` (naming the file and line) for a line longer than
    ``MAX_LINE_BYTES``, which is skipped without being held in memory so
    that the next line is read in step, and for a last line without a
    newline. ``seq_lines`` adds ``seq = line - 1`` to failures (entries.jsonl).
    """

    def __init__(self, stream: IO[bytes], file: str, *, seq_lines: bool = False) -> None:
        self._stream = stream
        self.file = file
        self._seq_lines = seq_lines
        self.line = 0
        self.bytes_read = 0

    def fail(self, message: str) -> Failure:
        return Failure(message, file=self.file, line=self.line,
                       seq=self.line - 1 if self._seq_lines else None)

    def read(self) -> bytes | None:
        """The next line without its newline, or None at the end of the file."""
        raw = self._stream.readline(MAX_LINE_BYTES + 2)
        if not raw:
            return None
        self.line += 1
        self.bytes_read += len(raw)
        if raw.endswith(b"\n"):
            return raw[:-1]
        if len(raw) <= MAX_LINE_BYTES:
            raise self.fail("the last line does not end with a newline")
        while (rest := self._stream.readline(1 << 16)) and not rest.endswith(b"\n"):
            self.bytes_read += len(rest)
        self.bytes_read += len(rest)
        raise self.fail(f"longer than {MAX_LINE_BYTES} bytes: not a line of an export")

    def __iter__(self) -> Iterator[bytes]:
        while (data := self.read()) is not None:
            yield data


def read_entries(lines: LineReader) -> Iterator[Entry]:
    """The entries of ``entries.jsonl`` for reports, proofs and replay, which trust
    verify: a line that is not an entry fails naming its line.

    Raises:
        Failure: a line that is not an entry in its canonical form.
    """
    for raw in lines:
        try:
            yield Entry.from_bytes(raw)
        except EntryFormatError as e:
            raise lines.fail(f"{e}; run verify") from e


@dataclass
class CheckpointGroup:
    """Adjacent checkpoints of one size (more than one only if the log forked or repeats)."""

    size: int
    items: list[tuple[int, Checkpoint]]
    #: The first note of the group, as signed.
    note: str = ""


def read_checkpoints(path: Path, verifier: NoteVerifier) -> Iterator[CheckpointGroup]:
    """checkpoints.jsonl, each line verified, in groups of equal size; order and origin
    checked."""
    with open(path, "rb") as f:
        lines = LineReader(f, CHECKPOINTS)
        yield from checkpoint_groups(((lines.line, raw) for raw in lines), verifier)


def checkpoint_groups(lines: Iterable[tuple[int, bytes]], verifier: NoteVerifier, *,
                      origin: str | None = None, after: int = -1, file: str = CHECKPOINTS
                      ) -> Iterator[CheckpointGroup]:
    """Numbered checkpoint lines (``checkpoint_line`` bytes), each verified, in groups of
    equal size, never smaller than ``after``; all of one ``origin`` (the first's if None).

    Raises:
        Failure: a line that is not a canonical checkpoint line, does not verify, names
            another origin or a smaller size than the one before.
    """
    group: CheckpointGroup | None = None
    last = after
    for n, raw in lines:
        where: dict[str, Any] = {"file": file, "line": n}
        try:
            note = _note_of(strict_json.loads(raw))
        except ValueError as e:
            raise Failure(f"not a checkpoint line ({e})", **where) from e
        if checkpoint_line(note) != raw:
            raise Failure('not in canonical form: {"note":"..."}, compact, UTF-8, '
                          "nothing before or after", **where)
        try:
            cp = open_checkpoint(note, verifier)
        except NoteError as e:
            raise Failure(f"the checkpoint does not verify with the log key "
                          f"{verifier.name}+{verifier.key_hash.hex()}: {e}", **where) from e
        if origin is None:
            origin = cp.origin
        elif cp.origin != origin:
            raise Failure(f"origin {cp.origin!r} differs from the first checkpoint's "
                          f"{origin!r}", **where)
        if cp.size < last:
            raise Failure(f"size {cp.size} after size {last}: checkpoints are listed "
                          "smallest first, and a log only grows", **where)
        last = cp.size
        if group is not None and cp.size == group.size:
            group.items.append((n, cp))
            continue
        if group is not None:
            yield group
        group = CheckpointGroup(cp.size, [(n, cp)], note)
    if group is not None:
        yield group


def check_evidence(entry: Entry, raw: bytes, line: int) -> Evidence:
    """The evidence of ``entry`` from its line of evidence.jsonl (numbered ``line``).

    Raises:
        Failure: the line is not of its form, or not the entry's evidence.
    """
    where: dict[str, Any] = {"file": EVIDENCE, "line": line, "seq": entry.seq}
    try:
        seq, ev = Evidence.from_line(raw)
    except EntryFormatError as e:
        raise Failure(f"not a canonical evidence line ({e})", **where) from e
    if seq != entry.seq:
        raise Failure(f"evidence for seq {seq} where seq {entry.seq} belongs", **where)
    if hashlib.sha256(raw).hexdigest() != entry.evidence_sha256:
        raise Failure("the line does not hash to the entry's evidence_sha256: the "
                      "evidence was changed after the entry was written", **where)
    # The hash binds the line to the entry; these show that the broker wrote
    # the two in agreement.
    if ev.publisher != entry.publisher:
        raise Failure("the publisher differs from the entry's", **where)
    if ev.header is not None:
        if entry.unreadable:
            raise Failure("a header in the evidence of a body refused at check 1", **where)
        if hashlib.sha256(ev.header).hexdigest() != entry.header_sha256:
            raise Failure("the header in the evidence does not hash to the entry's "
                          "header_sha256", **where)
    elif not entry.unreadable:
        raise Failure("no header in the evidence, but the entry names a header", **where)
    elif entry.header_sha256 != ev.body_sha256:
        # 6.1: a body refused at check 1 is logged with the SHA-256 of the whole
        # body as its header_sha256.
        raise Failure("the header_sha256 of a body refused at check 1 is not the hash "
                      "of the whole body", **where)
    return ev


class EvidenceReader:
    """evidence.jsonl read in step with entries.jsonl: each line is the canonical evidence
    line (6.1) whose SHA-256 is its entry's ``evidence_sha256``, and agrees with it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._lines = LineReader(stream, EVIDENCE)

    @property
    def line(self) -> int:
        return self._lines.line

    def next_for(self, entry: Entry) -> Evidence:
        """The evidence of ``entry``, read from the next line.

        Raises:
            Failure: the line is missing, not of its form, or not the entry's evidence.
        """
        raw = self._lines.read()
        if raw is None:
            raise Failure("evidence.jsonl ends before entries.jsonl", file=EVIDENCE,
                          line=self._lines.line + 1, seq=entry.seq)
        return check_evidence(entry, raw, self._lines.line)

    def finish(self, entries: int) -> None:
        if self._lines.read() is not None:
            raise Failure(f"evidence.jsonl has more lines than the {entries} entries",
                          file=EVIDENCE, line=self._lines.line)


def outcome(decision: str, reason: str | None) -> str:
    return decision if reason is None else f"{decision} ({reason})"
