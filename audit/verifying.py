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

import itertools
import os
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from audit.errors import AuditError
from audit.export_dir import (
    CHECKPOINTS,
    ENTRIES,
    EVIDENCE,
    LOG_KEY,
    PROGRESS_EVERY,
    CheckpointGroup,
    Failure,
    LineReader,
    Progress,
    read_checkpoints,
)
from audit.verify_chunks import check_line, checked_chunks
from keys import (
    Checkpoint,
    NoteError,
    NoteVerifier,
    b64encode,
    open_checkpoint,
)
from protocols import merkle
from protocols.log_format import Entry

#: The size of entries.jsonl from which ``verify`` checks lines in worker processes.
PARALLEL_FROM: Final = 8 << 20


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
           log_key: NoteVerifier | None = None, held: Sequence[str] = (),
           jobs: int | None = None) -> VerifyResult:
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
        _verify(d, verifier, held, progress, counts, result, jobs)
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


class TreeCheck:
    """The checks of wire spec 6.4 over a log read in seq order, one entry at a time.

    Holds O(log n) hashes (a compact range) and the checkpoint groups not yet
    reached. ``verify`` runs it over an export's files; the log server runs it
    over the served log as it grows, feeding the checkpoints as they come
    (:meth:`add_checkpoints`). Every method raises :class:`Failure` at the
    first problem, naming where.
    """

    def __init__(self, verifier: NoteVerifier, *, evidence: bool,
                 held: Sequence[str] = (), entries_file: str = ENTRIES,
                 checkpoints_file: str = CHECKPOINTS) -> None:
        self.verifier = verifier
        self.checkpoints_file = checkpoints_file
        self.evidence = evidence
        self.entries_file = entries_file
        self.cr = merkle.CompactRange()
        self.checkpoints = 0
        self.origin: str | None = None
        self.last_good = -1  # the largest size whose checkpoint matched the entries
        self.newest: CheckpointGroup | None = None
        self._groups: Iterator[CheckpointGroup] = iter(())
        self._pending: CheckpointGroup | None = None
        self._held: dict[int, list[tuple[int, Checkpoint]]] = {}
        for i, note in enumerate(held, 1):
            try:
                cp = open_checkpoint(note, verifier)
            except NoteError as e:
                raise Failure(f"checkpoint {i} you hold does not verify with the log key "
                              f"{verifier.name}+{verifier.key_hash.hex()}: {e}",
                              file="--checkpoint") from e
            self._held.setdefault(cp.size, []).append((i, cp))

    @classmethod
    def resume(cls, verifier: NoteVerifier, frontier: merkle.CompactRange,
               newest: CheckpointGroup, *, evidence: bool, checkpoints: int,
               entries_file: str = ENTRIES, checkpoints_file: str = CHECKPOINTS) -> TreeCheck:
        """Go on from a tree checked before: ``frontier`` is its compact range and
        ``newest`` the checkpoint it matched, signed by ``verifier``'s key.

        Raises:
            Failure: the frontier is not the tree that checkpoint signs.
        """
        (line, first), *_ = newest.items
        if newest.size != frontier.size or first.root != frontier.root():
            raise Failure(f"the tree checked before does not match the checkpoint of size "
                          f"{newest.size}", file=checkpoints_file, line=line)
        check = cls(verifier, evidence=evidence, entries_file=entries_file,
                    checkpoints_file=checkpoints_file)
        check.cr = frontier
        check.checkpoints = checkpoints
        check.origin = first.origin
        check.last_good = newest.size
        check.newest = newest
        return check

    @property
    def size(self) -> int:
        return self.cr.size

    def add_checkpoints(self, groups: Iterator[CheckpointGroup]) -> None:
        """Checkpoints to meet as the entries grow, smallest first, after any given before."""
        self._groups = itertools.chain(self._groups, groups)
        if self._pending is None:
            self._pending = next(self._groups, None)
        self.settle()

    @property
    def newest_note(self) -> str | None:
        """The newest checkpoint that matched the entries, as signed."""
        return None if self.newest is None else self.newest.note

    def add(self, raw: bytes, evidence_line: bytes | None = None) -> Entry:
        """Check the next entry (its exact bytes) and, when the log has evidence, its line.

        Raises:
            Failure: not a canonical entry, out of seq, evidence that is not its own, or
                a checkpoint this entry completes does not match.
        """
        entry = self.take(raw, evidence_line)
        self.settle()
        return entry

    def take(self, raw: bytes, evidence_line: bytes | None = None) -> Entry:
        """:meth:`add` without meeting the checkpoints it completes; call :meth:`settle`.

        Raises:
            Failure: not a canonical entry, out of seq, or evidence that is not its own.
        """
        entry = check_line(raw, evidence_line, self.cr.size, evidence=self.evidence,
                           entries_file=self.entries_file)
        self.cr.append(entry.leaf_hash)
        return entry

    def add_leaves(self, leaves: bytes) -> None:
        """Add the leaf hashes of entries checked elsewhere (``check_line``), meeting the
        checkpoints they complete.

        Raises:
            Failure: such a checkpoint does not match, or the log forked.
        """
        for i in range(0, len(leaves), merkle.HASH_SIZE):
            self.cr.append(leaves[i:i + merkle.HASH_SIZE])
            self.settle()

    def settle(self) -> None:
        """Meet the checkpoints whose size the entries have reached.

        Raises:
            Failure: such a checkpoint does not match, or the log forked.
        """
        size = self.cr.size
        while self._pending is not None and self._pending.size <= size:
            group = self._pending
            (first_line, first), *rest = group.items
            if group.size < size:
                raise Failure(f"the checkpoint of size {group.size} comes after entries "
                              f"0..{size - 1} were read: checkpoints are listed smallest "
                              "first", file=self.checkpoints_file, line=first_line)
            for line, other in rest:
                if other.root != first.root:
                    raise Failure(f"lines {first_line} and {line} both sign size {size} with "
                                  "different roots: the log has forked", file=self.checkpoints_file,
                                  line=line)
            if first.root != self.cr.root():
                after = (f"after seq {self.last_good - 1}, where the previous checkpoint "
                         "matched" if self.last_good > 0 else "from seq 0")
                raise Failure(f"the checkpoint of size {size} does not match entries "
                              f"0..{size - 1}: an entry {after} up to seq {size - 1} was "
                              "changed, removed, inserted or reordered",
                              file=self.checkpoints_file, line=first_line)
            self.checkpoints += len(group.items)
            self.origin = first.origin
            self.last_good = size
            self.newest = group
            self._pending = next(self._groups, None)
        for i, cp in self._held.get(size, ()):
            if cp.root != self.cr.root():
                raise Failure(f"the checkpoint you hold (size {size}) does not match entries "
                              f"0..{size - 1}: the log has been rewritten since",
                              file="--checkpoint", line=i)

    def finish(self) -> bytes:
        """The last checks, once every entry is read: coverage (6.4). Returns the root.

        Raises:
            Failure: a checkpoint or held checkpoint beyond the entries, no checkpoint, or
                entries the newest checkpoint does not cover.
        """
        size = self.cr.size
        if self._pending is not None:
            raise Failure(f"the checkpoint of size {self._pending.size} covers more entries "
                          f"than the {size} in entries.jsonl: entries from seq {size} on "
                          "were removed", file=CHECKPOINTS,
                          line=self._pending.items[0][0])
        beyond = sorted(s for s in self._held if s > size)
        if beyond:
            raise Failure(f"the checkpoint you hold covers {beyond[0]} entries but the export "
                          f"holds {size}: the log was truncated or rolled back",
                          file="--checkpoint", line=self._held[beyond[0]][0][0])
        if self.newest is None:
            raise Failure("no checkpoint: nothing signs these entries", file=CHECKPOINTS)
        if self.newest.size != size:
            raise Failure(f"the newest checkpoint covers {self.newest.size} of {size} "
                          f"entries: entries from seq {self.newest.size} on are not signed",
                          file=self.entries_file, line=self.newest.size + 1,
                          seq=self.newest.size)
        return self.cr.root()


def _verify_here(d: Path, check: TreeCheck, progress: Progress | None,
                 counts: dict[str, int], total: int) -> None:
    evidence_path = d / EVIDENCE
    with open(d / ENTRIES, "rb") as entries, (
            open(evidence_path, "rb") if check.evidence else nullcontext()) as ev_stream:
        ev_lines = None if ev_stream is None else LineReader(ev_stream, EVIDENCE)
        lines = LineReader(entries, ENTRIES, seq_lines=True)
        for raw in lines:
            check.add(raw, None if ev_lines is None else ev_lines.read())
            counts["entries"] = check.size
            counts["checkpoints"] = check.checkpoints
            if progress is not None and lines.line % PROGRESS_EVERY == 0:
                progress(lines.line, lines.bytes_read, total)
        if ev_lines is not None and ev_lines.read() is not None:
            raise Failure(f"evidence.jsonl has more lines than the {check.size} entries",
                          file=EVIDENCE, line=ev_lines.line)


def _verify_in_workers(d: Path, check: TreeCheck, jobs: int, progress: Progress | None,
                       counts: dict[str, int], total: int) -> None:
    """The lines checked by ``jobs`` processes (:mod:`audit.verify_chunks`); the tree and
    the checkpoints here, in order."""
    evidence_end = 0
    for chunk in checked_chunks(d, evidence=check.evidence, jobs=jobs):
        evidence_end = chunk.evidence_end
        before = check.size
        check.add_leaves(chunk.leaves)
        counts["entries"] = check.size
        counts["checkpoints"] = check.checkpoints
        chunk.raise_failure()
        if progress is not None:
            for n in range(before - before % PROGRESS_EVERY + PROGRESS_EVERY, check.size + 1,
                           PROGRESS_EVERY):
                progress(n, chunk.end, total)
    # Every chunk took as many evidence lines as it has entries: anything after the
    # last of them is a line more than the entries.
    if check.evidence and (d / EVIDENCE).stat().st_size > evidence_end:
        raise Failure(f"evidence.jsonl has more lines than the {check.size} entries",
                      file=EVIDENCE, line=check.size + 1)


def _verify(d: Path, verifier: NoteVerifier, held_notes: Sequence[str],
            progress: Progress | None, counts: dict[str, int],
            result: dict[str, Any], jobs: int | None) -> None:
    evidence_path = d / EVIDENCE
    check = TreeCheck(verifier, evidence=evidence_path.exists(), held=held_notes)
    check.add_checkpoints(read_checkpoints(d / CHECKPOINTS, verifier))
    total = (d / ENTRIES).stat().st_size
    if jobs is None:
        # A small export is checked here: starting processes would cost more.
        jobs = 1 if total < PARALLEL_FROM else os.cpu_count() or 1
    if jobs > 1:
        _verify_in_workers(d, check, jobs, progress, counts, total)
    else:
        _verify_here(d, check, progress, counts, total)
    result["evidence"] = check.evidence
    result["root"] = check.finish()
    result["origin"] = check.origin
    counts["checkpoints"] = check.checkpoints
    if progress is not None and check.size >= PROGRESS_EVERY:
        progress(check.size, total, total)  # the last word, after the periodic ones
