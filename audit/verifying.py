"""Verifying an export: the tree, every checkpoint, seq, and the evidence (wire spec 6.4).

Streams: memory is O(log n) for the tree plus one checkpoint group and the
checkpoints the auditor holds, whatever the size of the log. It stops at the
first problem in tree order and names it (entry seq and line, or checkpoint
line).

``evidence.jsonl`` is optional (6.4): without it the integrity checks pass
on their own, with a warning that replay needs it; with it, every line must
hash to its entry's ``evidence_sha256``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.errors import AuditError
from audit.export_dir import (
    CHECKPOINTS,
    ENTRIES,
    EVIDENCE,
    LOG_KEY,
    PROGRESS_EVERY,
    CheckpointGroup,
    EvidenceReader,
    Failure,
    LineReader,
    Progress,
    read_checkpoints,
)
from keys import (
    Checkpoint,
    NoteError,
    NoteVerifier,
    b64encode,
    open_checkpoint,
)
from protocols import merkle
from protocols.log_format import Entry, EntryFormatError


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found. ``ok`` is False with ``failure`` naming the first problem."""

    ok: bool
    entries: int
    checkpoints: int
    root: bytes | None = None
    origin: str | None = None
    failure: str | None = None
    file: str | None = None
    line: int | None = None
    seq: int | None = None
    warnings: tuple[str, ...] = ()
    #: Whether evidence.jsonl was there and every line of it checked.
    evidence: bool = False

    def summary(self) -> str:
        if self.ok:
            root = b64encode(self.root) if self.root is not None else "-"
            evidence = "evidence checked" if self.evidence else "no evidence"
            return (f"ok: {self.entries} entries, {self.checkpoints} checkpoints, "
                    f"{evidence}, root {root}")
        where = []
        if self.file is not None:
            where.append(self.file + (f" line {self.line}" if self.line is not None else ""))
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        return "FAILED" + (f" at {', '.join(where)}" if where else "") + f": {self.failure}"


def verify(directory: Path | str, progress: Progress | None = None, *,
           log_key: NoteVerifier | None = None, held: Sequence[str] = ()) -> VerifyResult:
    """Verify an export: the tree, every checkpoint, seq, and the evidence (wire spec 6.4).

    ``log_key`` is the key the auditor trusts; without it the export's own
    ``log-key.txt`` is used, with a warning. ``held`` are checkpoint notes the
    auditor obtained earlier: each must verify with the same key, and the
    export must contain and match its tree (which catches a log truncated or
    rewritten together with its checkpoints).

    Raises:
        AuditError: the directory or a required file cannot be read at all.
    """
    d = Path(directory)
    warnings: list[str] = []
    counts = {"entries": 0, "checkpoints": 0}
    result: dict[str, Any] = {}
    try:
        verifier = _verifier_for(d, log_key, warnings)
        _verify(d, verifier, held, progress, counts, result)
    except Failure as f:
        return VerifyResult(ok=False, entries=counts["entries"],
                            checkpoints=counts["checkpoints"], failure=str(f), file=f.file,
                            line=f.line, seq=f.seq, warnings=tuple(warnings))
    except OSError as e:
        raise AuditError(f"{d}: cannot read the export ({e.strerror}: "
                         f"{Path(e.filename).name if e.filename else ''})") from e
    if not result["evidence"]:
        warnings.append(f"no {EVIDENCE}: the entries and checkpoints verify, but no "
                        "decision can be re-checked; audit replay needs an export that "
                        "holds the evidence")
    return VerifyResult(ok=True, entries=counts["entries"], checkpoints=counts["checkpoints"],
                        root=result["root"], origin=result.get("origin"),
                        warnings=tuple(warnings), evidence=result["evidence"])


def _verifier_for(d: Path, pinned: NoteVerifier | None, warnings: list[str]) -> NoteVerifier:
    own: NoteVerifier | None = None
    try:
        own = NoteVerifier.parse((d / LOG_KEY).read_text(encoding="utf-8"))
    except FileNotFoundError:
        if pinned is None:
            raise Failure("no log-key.txt, and no log key given", file=LOG_KEY) from None
    except (NoteError, UnicodeDecodeError) as e:
        if pinned is None:
            raise Failure(f"not a note verifier key: {e}", file=LOG_KEY) from e
    if pinned is not None:
        if own is not None and own != pinned:
            warnings.append("the export's log-key.txt names another key than the one given; "
                            "checking against the key given")
        return pinned
    assert own is not None
    warnings.append("checked against the export's own log-key.txt: anyone who rewrites the "
                    "log can replace it; give the key you trust with --log-key")
    return own


def _verify(d: Path, verifier: NoteVerifier, held_notes: Sequence[str],
            progress: Progress | None, counts: dict[str, int],
            result: dict[str, Any]) -> None:
    held: dict[int, list[tuple[int, Checkpoint]]] = {}
    for i, note in enumerate(held_notes, 1):
        try:
            cp = open_checkpoint(note, verifier)
        except NoteError as e:
            raise Failure(f"checkpoint {i} you hold does not verify with the log key "
                           f"{verifier.name}+{verifier.key_hash.hex()}: {e}",
                           file="--checkpoint") from e
        held.setdefault(cp.size, []).append((i, cp))

    groups = read_checkpoints(d / CHECKPOINTS, verifier)
    pending = next(groups, None)
    last_good = -1  # the largest size whose checkpoint matched the entries
    newest: CheckpointGroup | None = None
    cr = merkle.CompactRange()

    def settle() -> None:
        nonlocal pending, last_good, newest
        size = cr.size
        while pending is not None and pending.size == size:
            (first_line, first), *rest = pending.items
            for line, other in rest:
                if other.root != first.root:
                    raise Failure(f"lines {first_line} and {line} both sign size {size} with "
                                   "different roots: the log has forked", file=CHECKPOINTS,
                                   line=line)
            if first.root != cr.root():
                after = (f"after seq {last_good - 1}, where the previous checkpoint matched"
                         if last_good > 0 else "from seq 0")
                raise Failure(f"the checkpoint of size {size} does not match entries "
                               f"0..{size - 1}: an entry {after} up to seq {size - 1} was "
                               "changed, removed, inserted or reordered", file=CHECKPOINTS,
                               line=first_line)
            counts["checkpoints"] += len(pending.items)
            result["origin"] = first.origin
            last_good = size
            newest = pending
            pending = next(groups, None)
        for i, cp in held.get(size, ()):
            if cp.root != cr.root():
                raise Failure(f"the checkpoint you hold (size {size}) does not match entries "
                               f"0..{size - 1}: the log has been rewritten since",
                               file="--checkpoint", line=i)

    total = (d / ENTRIES).stat().st_size
    evidence_path = d / EVIDENCE
    with open(d / ENTRIES, "rb") as entries, (
            open(evidence_path, "rb") if evidence_path.exists() else nullcontext()) as ev_stream:
        reader = None if ev_stream is None else EvidenceReader(ev_stream)
        settle()
        lines = LineReader(entries, ENTRIES, seq_lines=True)
        for raw in lines:
            seq = lines.line - 1
            try:
                entry = Entry.from_bytes(raw)
            except EntryFormatError as e:
                raise lines.fail(f"not a canonical entry ({e})") from e
            if entry.seq != seq:
                raise lines.fail(f"seq {entry.seq} where seq {seq} belongs: entries were "
                                 "removed, inserted or reordered")
            if reader is not None:
                reader.next_for(entry)
            cr.append(entry.leaf_hash)
            counts["entries"] = cr.size
            settle()
            if progress is not None and lines.line % PROGRESS_EVERY == 0:
                progress(lines.line, lines.bytes_read, total)
        if reader is not None:
            reader.finish(cr.size)
    result["evidence"] = reader is not None
    size = cr.size
    if pending is not None:
        raise Failure(f"the checkpoint of size {pending.size} covers more entries than the "
                       f"{size} in entries.jsonl: entries from seq {size} on were removed",
                       file=CHECKPOINTS, line=pending.items[0][0])
    beyond = sorted(s for s in held if s > size)
    if beyond:
        raise Failure(f"the checkpoint you hold covers {beyond[0]} entries but the export "
                       f"holds {size}: the log was truncated or rolled back",
                       file="--checkpoint", line=held[beyond[0]][0][0])
    if newest is None:
        raise Failure("no checkpoint: nothing signs these entries", file=CHECKPOINTS)
    if newest.size != size:
        raise Failure(f"the newest checkpoint covers {newest.size} of {size} entries: entries "
                       f"from seq {newest.size} on are not signed", file=ENTRIES,
                       line=newest.size + 1, seq=newest.size)
    if progress is not None and size >= PROGRESS_EVERY:
        progress(size, total, total)  # the last word, after the periodic ones
    result["root"] = cr.root()
