"""The files of an audit export (wire spec 6.4, ``docs/export-format.md``) and their readers.

Shared by verify, replay, report and proofs. Readers stop at the first line
not of its form and name the file and line; messages carry seq numbers,
codes and hashes, never entry contents beyond codes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from audit.errors import AuditError
from keys import (
    Checkpoint,
    KeysError,
    NoteError,
    NoteVerifier,
    b64decode,
    open_checkpoint,
)
from protocols.log_format import Entry, EntryFormatError, Evidence

ENTRIES: Final = "entries.jsonl"
CHECKPOINTS: Final = "checkpoints.jsonl"
LOG_KEY: Final = "log-key.txt"
EVIDENCE: Final = "evidence.jsonl"
REGISTRY: Final = "registry"
REGISTRY_KEY: Final = "registry-key.pub"
README: Final = "README.txt"
EVIDENCE_FIELDS: Final = frozenset({"seq", "header", "signatures", "user_id", "body_sha256"})
#: How often (in entries) verify and replay report progress.
PROGRESS_EVERY: Final = 100_000

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
            doc = json.loads(line)
            if set(doc) != {"note"} or not isinstance(doc["note"], str):
                raise ValueError("not {note}")
        except (ValueError, TypeError) as e:
            raise AuditError(f"{path} line {n}: not {{\"note\": ...}}") from e
        notes.append(doc["note"])
    return notes


class Failure(Exception):
    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 seq: int | None = None) -> None:
        super().__init__(message)
        self.file, self.line, self.seq = file, line, seq


@dataclass
class CheckpointGroup:
    """Adjacent checkpoints of one size (more than one only if the log forked or repeats)."""

    size: int
    items: list[tuple[int, Checkpoint]]


def read_checkpoints(path: Path, verifier: NoteVerifier) -> Iterator[CheckpointGroup]:
    """Checkpoint lines, each verified, in groups of equal size; order and origin checked."""
    group: CheckpointGroup | None = None
    origin: str | None = None
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            where: dict[str, Any] = {"file": CHECKPOINTS, "line": n}
            try:
                doc = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise Failure("not a JSON line", **where) from e
            if not isinstance(doc, dict) or set(doc) != {"note"} or not isinstance(
                    doc["note"], str):
                raise Failure('not {"note": "<signed checkpoint>"}', **where)
            try:
                cp = open_checkpoint(doc["note"], verifier)
            except NoteError as e:
                raise Failure(f"the checkpoint does not verify with the log key "
                               f"{verifier.name}+{verifier.key_hash.hex()}: {e}", **where) from e
            if origin is None:
                origin = cp.origin
            elif cp.origin != origin:
                raise Failure(f"origin {cp.origin!r} differs from the first checkpoint's "
                               f"{origin!r}", **where)
            if group is not None and cp.size < group.size:
                raise Failure(f"size {cp.size} after size {group.size}: checkpoints are "
                               "listed smallest first, and a log only grows", **where)
            if group is not None and cp.size == group.size:
                group.items.append((n, cp))
                continue
            if group is not None:
                yield group
            group = CheckpointGroup(cp.size, [(n, cp)])
    if group is not None:
        yield group


@dataclass
class EvidenceReader:
    """evidence.jsonl read in step with entries.jsonl."""

    stream: IO[bytes]
    line: int = 0

    def next_for(self, entry: Entry) -> Evidence:
        raw = self.stream.readline()
        self.line += 1
        where: dict[str, Any] = {"file": EVIDENCE, "line": self.line, "seq": entry.seq}
        if not raw:
            raise Failure("evidence.jsonl ends before entries.jsonl", **where)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise Failure("not a JSON line", **where) from e
        if not isinstance(doc, dict) or set(doc) != EVIDENCE_FIELDS:
            raise Failure("not {seq, header, signatures, user_id, body_sha256}", **where)
        if doc["seq"] != entry.seq or type(doc["seq"]) is not int:
            raise Failure(f"evidence for seq {doc['seq']!r} where seq {entry.seq} belongs",
                           **where)
        try:
            header = None if doc["header"] is None else b64decode(doc["header"])
            ev = Evidence(header=header, signatures=doc["signatures"], user_id=doc["user_id"],
                          body_sha256=doc["body_sha256"])
        except (KeysError, EntryFormatError) as e:
            raise Failure(f"not evidence of the documented form: {e}", **where) from e
        if ev.header is not None:
            if hashlib.sha256(ev.header).hexdigest() != entry.header_sha256:
                raise Failure("the header in the evidence does not hash to the entry's "
                               "header_sha256", **where)
            if ev.signatures is None:
                raise Failure("a header without its signatures", **where)
        else:
            # 6.3: a body whose header cannot be read is logged with a null
            # message id and the SHA-256 of the whole body as header_sha256.
            if entry.message_id is not None or entry.header_sha256 != ev.body_sha256:
                raise Failure("no header in the evidence, but the entry names a header",
                               **where)
        return ev

    def finish(self, entries: int) -> None:
        if self.stream.readline():
            raise Failure(f"evidence.jsonl has more lines than the {entries} entries",
                           file=EVIDENCE, line=self.line + 1)


def outcome(decision: str, reason: str | None) -> str:
    return decision if reason is None else f"{decision} ({reason})"
