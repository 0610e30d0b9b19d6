"""Audit of the transfer log: export, verify, replay, report and inclusion proofs (wire spec 6.4).

An export is a directory an auditor can check without this project's code
(``docs/export-format.md`` describes it; a ``README.txt`` in every export
says the same in short):

- ``entries.jsonl``: the exact entry bytes, one per line, ``seq`` order;
- ``checkpoints.jsonl``: ``{"note": ...}`` per line, smallest size first; the
  last covers every entry;
- ``log-key.txt``: the note verifier key of the checkpoints;
- ``evidence.jsonl``: per entry, the header bytes and signatures as received,
  the AMQP ``user_id`` and the body's SHA-256;
- ``registry/registry-key.pub`` and ``registry/directory-<version>.json``: the
  signed directory of every registry version an entry names, as served.

Invariants:

- :func:`verify` streams: memory is O(log n) for the tree (a
  :class:`~broker.merkle.CompactRange`) plus one checkpoint group and the
  checkpoints the auditor holds, whatever the size of the log. It stops at
  the first problem in tree order and names it (entry seq and line, or
  checkpoint line).
- :func:`replay` re-runs ``protocols.policy.decide`` with what decided: the
  directory version named by the entry, the evidence, the entries before it,
  and the entry's time. Anything it cannot re-run is a mismatch, never a
  silent pass.
- Nothing here writes to the log except the fresh checkpoint :func:`export`
  signs when it holds the log's key.
- Messages name seq numbers, line numbers, message ids, codes and hashes,
  never entry contents beyond codes: the log holds no personal data, and
  neither do its errors.

Readings of the spec chosen here are listed in ``docs/export-format.md``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

from broker import merkle
from broker.envelope import EnvelopeRefused, header_codes, parse_header
from broker.errors import BrokerError
from broker.transfer_log import (
    UNREADABLE_REASONS,
    Entry,
    EntryFormatError,
    Evidence,
    TransferLog,
)
from keys import (
    Checkpoint,
    KeyId,
    KeysError,
    NoteError,
    NoteVerifier,
    b64decode,
    b64encode,
    open_checkpoint,
    parse_public_key_text,
    public_key_text,
)
from protocols.directory import verify_directory
from protocols.errors import DirectoryError
from protocols.model import Directory, Signature, Submission
from protocols.policy import Decision, LoggedMessage, decide

__all__ = [
    "PROOF_FORMAT",
    "AuditError",
    "ExportSummary",
    "Mismatch",
    "ProofCheck",
    "Report",
    "ReportFilters",
    "ReportRow",
    "VerifyResult",
    "check_proof",
    "export",
    "load_checkpoint_notes",
    "parse_log_key",
    "prove",
    "replay",
    "report",
    "verify",
]

ENTRIES: Final = "entries.jsonl"
CHECKPOINTS: Final = "checkpoints.jsonl"
LOG_KEY: Final = "log-key.txt"
EVIDENCE: Final = "evidence.jsonl"
REGISTRY: Final = "registry"
REGISTRY_KEY: Final = "registry-key.pub"
README: Final = "README.txt"
PROOF_FORMAT: Final = "infoshare-inclusion-proof/v1"
_EVIDENCE_FIELDS: Final = frozenset({"seq", "header", "signatures", "user_id", "body_sha256"})
#: How often (in entries) verify and replay report progress.
PROGRESS_EVERY: Final = 100_000

#: ``progress(entries done, bytes read, bytes in entries.jsonl)``.
Progress = Callable[[int, int, int], None]


class AuditError(BrokerError):
    """An export cannot be written or read as a whole (a missing file, an unusable key).

    A log that reads but does not verify is not an error: :func:`verify`
    returns a failed :class:`VerifyResult`, :func:`replay` a list of mismatches.
    """

    code = "audit_error"


def _directory_file(version: int) -> str:
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


# --- export ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    size: int
    checkpoints: int
    registry_versions: tuple[int, ...]


_README_TEXT = """\
infoshare transfer log export
=============================

This directory is an export of an infoshare transfer log (wire format v1,
section 6). It holds no personal data: entries and evidence carry codes,
hashes and times only.

entries.jsonl      one entry per line: the exact entry bytes (compact JSON, keys
                   in the order of wire spec 6.1), then "\\n". Line k holds seq k-1.
                   leaf hash = SHA-256(0x00 || entry bytes).
checkpoints.jsonl  one {"note": "<signed checkpoint>"} per line, smallest tree
                   size first. A note is a C2SP tlog-checkpoint signed as a
                   C2SP signed note: origin, tree size, base64 root, a blank
                   line, signature lines. The last covers every entry.
log-key.txt        the verifier key of the checkpoints:
                   <name>+<hex key hash>+<base64(0x01 || Ed25519 public key)>.
                   Compare it with the key you obtained from the log's operator.
evidence.jsonl     per entry, in seq order: {"seq", "header" (base64 of the
                   header bytes as received, or null when the body could not be
                   read), "signatures" ([{"key","sig"}] as in the envelope, or
                   null), "user_id" (the AMQP user that published), "body_sha256"}.
                   SHA-256(header bytes) equals the entry's header_sha256.
registry/registry-key.pub          the registry's Ed25519 public key (base64).
registry/directory-<version>.json  the signed registry directory of every
                   version an entry names (its registry_version), as served.

To verify: recompute the RFC 9162 Merkle tree over the lines of entries.jsonl
(node hash SHA-256(0x01 || left || right), empty tree SHA-256("")), check that
seq runs 0..n-1, that every checkpoint verifies with the log key you trust and
that its root equals the recomputed root at its size, and that the last
checkpoint's size is n. `infoshare audit verify DIR --log-key KEY` does this;
`infoshare audit replay DIR` re-runs every decision. docs/export-format.md in
the infoshare sources describes the format in full.
"""


def export(log: TransferLog, out_dir: Path | str, *, directories: Callable[[int], bytes],
           registry_key: bytes, now: datetime | None = None,
           log_key: NoteVerifier | None = None) -> ExportSummary:
    """Write an export of ``log`` to ``out_dir`` (which must not exist or be empty).

    With the log's key a fresh checkpoint is signed first, so the export holds
    every entry; without it (``log_key`` given) the export holds the entries
    the newest checkpoint covers. ``directories(version)`` returns the signed
    directory document of a registry version, which must verify against
    ``registry_key``. The export is written beside ``out_dir`` and renamed into
    place, so a failed export leaves nothing that looks complete.

    Raises:
        AuditError: the directory exists and is not empty, no checkpoint, the
            log does not match its checkpoint, a directory version is missing or
            not signed by the registry key, or a file cannot be written.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AuditError(f"{out}: exists and is not an empty directory")
    if log.can_sign:
        verifier = log.verifier
        note = log.checkpoint(now or datetime.now(UTC))
    else:
        if log_key is None:
            raise AuditError("without the log's key, the export needs the log's verifier key")
        verifier = log_key
        latest = log.latest_checkpoint()
        if latest is None:
            raise AuditError("the log has no checkpoint yet")
        note = latest
    try:
        newest = open_checkpoint(note, verifier)
    except NoteError as e:
        raise AuditError(f"the log's newest checkpoint does not verify with its key: {e}") from e
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise AuditError(f"{out}: cannot create the export ({e.strerror})") from e
    try:
        versions = _write_entries(log, work, newest)
        _write_evidence(log, work, newest.size)
        notes = log.checkpoints(upto=newest.size)
        with open(work / CHECKPOINTS, "w", encoding="utf-8", newline="\n") as f:
            for n in notes:
                f.write(json.dumps({"note": n}, ensure_ascii=False, separators=(",", ":")))
                f.write("\n")
        (work / LOG_KEY).write_text(verifier.line() + "\n", encoding="utf-8")
        _write_registry(work / REGISTRY, versions, directories, registry_key)
        (work / README).write_text(_README_TEXT, encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(work, out)
    except OSError as e:
        shutil.rmtree(work, ignore_errors=True)
        raise AuditError(f"{out}: cannot write the export ({e.strerror})") from e
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportSummary(path=out, size=newest.size, checkpoints=len(notes),
                         registry_versions=tuple(sorted(versions)))


def _write_entries(log: TransferLog, work: Path, newest: Checkpoint) -> set[int]:
    """Write entries 0..size-1 and check them against the checkpoint being exported."""
    versions: set[int] = set()
    cr = merkle.CompactRange()
    with open(work / ENTRIES, "wb") as f:
        for data in log.entries(0, newest.size):
            entry = Entry.from_bytes(data)
            if entry.seq != cr.size:
                raise AuditError(f"the log holds seq {entry.seq} where {cr.size} belongs")
            versions.add(entry.registry_version)
            cr.append(entry.leaf_hash)
            f.write(data)
            f.write(b"\n")
    if cr.root() != newest.root:
        # Never hand out an export the log's own checkpoint contradicts.
        raise AuditError(f"the log's entries 0..{newest.size - 1} do not match its checkpoint")
    return versions


def _write_evidence(log: TransferLog, work: Path, size: int) -> None:
    with open(work / EVIDENCE, "w", encoding="utf-8", newline="\n") as f:
        for seq, ev in log.evidences(0, size):
            f.write(json.dumps({
                "seq": seq,
                "header": None if ev.header is None else b64encode(ev.header),
                "signatures": ev.signatures, "user_id": ev.user_id,
                "body_sha256": ev.body_sha256}, separators=(",", ":")))
            f.write("\n")


def _write_registry(path: Path, versions: set[int], directories: Callable[[int], bytes],
                    registry_key: bytes) -> None:
    path.mkdir()
    try:
        key_text = public_key_text(registry_key)
    except KeysError as e:
        raise AuditError("the registry key is not a 32-byte Ed25519 public key") from e
    (path / REGISTRY_KEY).write_text(key_text + "\n", encoding="ascii")
    for v in sorted(versions):
        try:
            document = directories(v)
        except (BrokerError, KeysError, DirectoryError, OSError) as e:
            raise AuditError(f"registry directory version {v}: cannot fetch it ({e})") from e
        except Exception as e:  # the callable is the caller's: its errors name their cause
            raise AuditError(f"registry directory version {v}: cannot fetch it "
                             f"({type(e).__name__}: {e})") from e
        try:
            d = verify_directory(document, registry_key)
        except DirectoryError as e:
            raise AuditError(f"registry directory version {v}: {e}") from e
        if d.version != v:
            raise AuditError(f"asked the registry for directory version {v}, got {d.version}")
        (path / _directory_file(v)).write_bytes(document)


# --- verify ----------------------------------------------------------------------------


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

    def summary(self) -> str:
        if self.ok:
            root = b64encode(self.root) if self.root is not None else "-"
            return (f"ok: {self.entries} entries, {self.checkpoints} checkpoints, "
                    f"root {root}")
        where = []
        if self.file is not None:
            where.append(self.file + (f" line {self.line}" if self.line is not None else ""))
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        return "FAILED" + (f" at {', '.join(where)}" if where else "") + f": {self.failure}"


class _Failure(Exception):
    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 seq: int | None = None) -> None:
        super().__init__(message)
        self.file, self.line, self.seq = file, line, seq


@dataclass
class _Group:
    """Adjacent checkpoints of one size (more than one only if the log forked or repeats)."""

    size: int
    items: list[tuple[int, Checkpoint]]


def _read_checkpoints(path: Path, verifier: NoteVerifier) -> Iterator[_Group]:
    """Checkpoint lines, each verified, in groups of equal size; order and origin checked."""
    group: _Group | None = None
    origin: str | None = None
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            where: dict[str, Any] = {"file": CHECKPOINTS, "line": n}
            try:
                doc = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise _Failure("not a JSON line", **where) from e
            if not isinstance(doc, dict) or set(doc) != {"note"} or not isinstance(
                    doc["note"], str):
                raise _Failure('not {"note": "<signed checkpoint>"}', **where)
            try:
                cp = open_checkpoint(doc["note"], verifier)
            except NoteError as e:
                raise _Failure(f"the checkpoint does not verify with the log key "
                               f"{verifier.name}+{verifier.key_hash.hex()}: {e}", **where) from e
            if origin is None:
                origin = cp.origin
            elif cp.origin != origin:
                raise _Failure(f"origin {cp.origin!r} differs from the first checkpoint's "
                               f"{origin!r}", **where)
            if group is not None and cp.size < group.size:
                raise _Failure(f"size {cp.size} after size {group.size}: checkpoints are "
                               "listed smallest first, and a log only grows", **where)
            if group is not None and cp.size == group.size:
                group.items.append((n, cp))
                continue
            if group is not None:
                yield group
            group = _Group(cp.size, [(n, cp)])
    if group is not None:
        yield group


@dataclass
class _EvidenceReader:
    """evidence.jsonl read in step with entries.jsonl."""

    stream: IO[bytes]
    line: int = 0

    def next_for(self, entry: Entry) -> Evidence:
        raw = self.stream.readline()
        self.line += 1
        where: dict[str, Any] = {"file": EVIDENCE, "line": self.line, "seq": entry.seq}
        if not raw:
            raise _Failure("evidence.jsonl ends before entries.jsonl", **where)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _Failure("not a JSON line", **where) from e
        if not isinstance(doc, dict) or set(doc) != _EVIDENCE_FIELDS:
            raise _Failure("not {seq, header, signatures, user_id, body_sha256}", **where)
        if doc["seq"] != entry.seq or type(doc["seq"]) is not int:
            raise _Failure(f"evidence for seq {doc['seq']!r} where seq {entry.seq} belongs",
                           **where)
        try:
            header = None if doc["header"] is None else b64decode(doc["header"])
            ev = Evidence(header=header, signatures=doc["signatures"], user_id=doc["user_id"],
                          body_sha256=doc["body_sha256"])
        except (KeysError, EntryFormatError) as e:
            raise _Failure(f"not evidence of the documented form: {e}", **where) from e
        if ev.header is not None:
            if hashlib.sha256(ev.header).hexdigest() != entry.header_sha256:
                raise _Failure("the header in the evidence does not hash to the entry's "
                               "header_sha256", **where)
            if ev.signatures is None:
                raise _Failure("a header without its signatures", **where)
        else:
            # 6.3: a body whose header cannot be read is logged with a null
            # message id and the SHA-256 of the whole body as header_sha256.
            if entry.message_id is not None or entry.header_sha256 != ev.body_sha256:
                raise _Failure("no header in the evidence, but the entry names a header",
                               **where)
        return ev

    def finish(self, entries: int) -> None:
        if self.stream.readline():
            raise _Failure(f"evidence.jsonl has more lines than the {entries} entries",
                           file=EVIDENCE, line=self.line + 1)


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
    except _Failure as f:
        return VerifyResult(ok=False, entries=counts["entries"],
                            checkpoints=counts["checkpoints"], failure=str(f), file=f.file,
                            line=f.line, seq=f.seq, warnings=tuple(warnings))
    except OSError as e:
        raise AuditError(f"{d}: cannot read the export ({e.strerror}: "
                         f"{Path(e.filename).name if e.filename else ''})") from e
    return VerifyResult(ok=True, entries=counts["entries"], checkpoints=counts["checkpoints"],
                        root=result["root"], origin=result.get("origin"),
                        warnings=tuple(warnings))


def _verifier_for(d: Path, pinned: NoteVerifier | None, warnings: list[str]) -> NoteVerifier:
    own: NoteVerifier | None = None
    try:
        own = NoteVerifier.parse((d / LOG_KEY).read_text(encoding="utf-8"))
    except FileNotFoundError:
        if pinned is None:
            raise _Failure("no log-key.txt, and no log key given", file=LOG_KEY) from None
    except (NoteError, UnicodeDecodeError) as e:
        if pinned is None:
            raise _Failure(f"not a note verifier key: {e}", file=LOG_KEY) from e
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
            raise _Failure(f"checkpoint {i} you hold does not verify with the log key "
                           f"{verifier.name}+{verifier.key_hash.hex()}: {e}",
                           file="--checkpoint") from e
        held.setdefault(cp.size, []).append((i, cp))

    groups = _read_checkpoints(d / CHECKPOINTS, verifier)
    pending = next(groups, None)
    last_good = -1  # the largest size whose checkpoint matched the entries
    newest: _Group | None = None
    cr = merkle.CompactRange()

    def settle() -> None:
        nonlocal pending, last_good, newest
        size = cr.size
        while pending is not None and pending.size == size:
            (first_line, first), *rest = pending.items
            for line, other in rest:
                if other.root != first.root:
                    raise _Failure(f"lines {first_line} and {line} both sign size {size} with "
                                   "different roots: the log has forked", file=CHECKPOINTS,
                                   line=line)
            if first.root != cr.root():
                after = (f"after seq {last_good - 1}, where the previous checkpoint matched"
                         if last_good > 0 else "from seq 0")
                raise _Failure(f"the checkpoint of size {size} does not match entries "
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
                raise _Failure(f"the checkpoint you hold (size {size}) does not match entries "
                               f"0..{size - 1}: the log has been rewritten since",
                               file="--checkpoint", line=i)

    total = (d / ENTRIES).stat().st_size
    evidence_path = d / EVIDENCE
    with open(d / ENTRIES, "rb") as entries, (
            open(evidence_path, "rb") if evidence_path.exists() else io.BytesIO()) as ev_stream:
        reader = _EvidenceReader(ev_stream) if evidence_path.exists() else None
        settle()
        done = 0
        for n, raw in enumerate(entries, 1):
            done += len(raw)
            seq = n - 1
            if not raw.endswith(b"\n"):
                raise _Failure("the last line does not end with a newline", file=ENTRIES,
                               line=n, seq=seq)
            try:
                entry = Entry.from_bytes(raw[:-1])
            except EntryFormatError as e:
                raise _Failure(f"not a canonical entry ({e})", file=ENTRIES, line=n,
                               seq=seq) from e
            if entry.seq != seq:
                raise _Failure(f"seq {entry.seq} where seq {seq} belongs: entries were removed, "
                               "inserted or reordered", file=ENTRIES, line=n, seq=seq)
            if reader is not None:
                reader.next_for(entry)
            cr.append(entry.leaf_hash)
            counts["entries"] = cr.size
            settle()
            if progress is not None and n % PROGRESS_EVERY == 0:
                progress(n, done, total)
        if reader is not None:
            reader.finish(cr.size)
    size = cr.size
    if pending is not None:
        raise _Failure(f"the checkpoint of size {pending.size} covers more entries than the "
                       f"{size} in entries.jsonl: entries from seq {size} on were removed",
                       file=CHECKPOINTS, line=pending.items[0][0])
    beyond = sorted(s for s in held if s > size)
    if beyond:
        raise _Failure(f"the checkpoint you hold covers {beyond[0]} entries but the export "
                       f"holds {size}: the log was truncated or rolled back",
                       file="--checkpoint", line=held[beyond[0]][0][0])
    if newest is None:
        raise _Failure("no checkpoint: nothing signs these entries", file=CHECKPOINTS)
    if newest.size != size:
        raise _Failure(f"the newest checkpoint covers {newest.size} of {size} entries: entries "
                       f"from seq {newest.size} on are not signed", file=ENTRIES,
                       line=newest.size + 1, seq=newest.size)
    if reader is None:
        raise _Failure("no evidence.jsonl: the decisions cannot be re-checked", file=EVIDENCE)
    if progress is not None and size >= PROGRESS_EVERY:
        progress(size, total, total)  # the last word, after the periodic ones
    result["root"] = cr.root()


# --- replay ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """An entry whose recorded decision the replay does not reproduce."""

    seq: int
    message_id: str | None
    recorded: str
    replayed: str | None
    detail: str

    def __str__(self) -> str:
        got = "" if self.replayed is None else f"; replay: {self.replayed}"
        return (f"seq {self.seq} message {self.message_id or '-'}: recorded {self.recorded}"
                f"{got}: {self.detail}")


def _outcome(decision: str, reason: str | None) -> str:
    return decision if reason is None else f"{decision} ({reason})"


class _History:
    """The entries before the one being replayed, by message id (a ``policy.LogView``)."""

    def __init__(self) -> None:
        self._by_id: dict[str, list[LoggedMessage]] = {}
        self._strings: dict[str, str] = {}

    def _s(self, value: str | None) -> str | None:
        # Senders, purposes and codes repeat on every entry: keep one copy each.
        return None if value is None else self._strings.setdefault(value, value)

    def add(self, e: Entry) -> None:
        if e.message_id is None:
            return
        m = e.logged()
        self._by_id.setdefault(e.message_id, []).append(LoggedMessage(
            message_id=m.message_id, header_sha256=None, kind=m.kind,
            decision=self._s(m.decision) or "", reason=self._s(m.reason),
            protocol=self._s(m.protocol), purpose=self._s(m.purpose),
            sender=self._s(m.sender), recipient=self._s(m.recipient)))

    def find(self, message_id: str) -> list[LoggedMessage]:
        return self._by_id.get(message_id, [])


class _Directories:
    """Signed directory versions of the export, verified once each."""

    def __init__(self, path: Path, key: bytes) -> None:
        self._path = path
        self._key = key
        self._cache: dict[int, Directory | str] = {}

    def get(self, version: int) -> Directory | str:
        if version not in self._cache:
            self._cache[version] = self._load(version)
        return self._cache[version]

    def _load(self, version: int) -> Directory | str:
        name = _directory_file(version)
        try:
            document = (self._path / name).read_bytes()
        except OSError:
            return f"registry/{name} is missing from the export"
        try:
            d = verify_directory(document, self._key)
        except DirectoryError as e:
            return f"registry/{name}: {e}"
        if d.version != version:
            return f"registry/{name} holds version {d.version}"
        return d


_HEADER_FIELDS: Final = ("message_id", "kind", "protocol", "purpose", "sender", "recipient",
                         "in_reply_to", "consent", "subject_informed", "data_categories")


def _signatures(raw: list[dict[str, str]]) -> tuple[Signature, ...] | None:
    out = []
    for s in raw:
        try:
            out.append(Signature(key=KeyId(s["key"]), sig=b64decode(s["sig"])))
        except (KeyError, KeysError):
            return None
    return tuple(out)


#: ``at`` has whole seconds; the router decided at some instant within that second.
_WITHIN_SECOND: Final = timedelta(microseconds=999_999)


def _replay_one(entry: Entry, ev: Evidence, history: _History,
                directories: _Directories) -> Mismatch | None:
    recorded = _outcome(entry.decision, entry.reason)

    def mismatch(detail: str, replayed: str | None = None) -> Mismatch:
        return Mismatch(entry.seq, entry.message_id, recorded, replayed, detail)

    if ev.header is None:
        if entry.decision == "refused" and entry.reason in UNREADABLE_REASONS:
            return None  # nothing to re-run: the body itself was refused at check 1
        return mismatch("the evidence holds no header, so only a refusal at check 1 "
                        "(malformed, too_large, unsupported_version) fits")
    try:
        header = parse_header(ev.header)
    except EnvelopeRefused as e:
        if entry.decision == "refused" and entry.reason in UNREADABLE_REASONS:
            return None
        return mismatch("the header in the evidence cannot be read", f"refused ({e.reason})")
    view = header_codes(header)
    differ = [name for name in _HEADER_FIELDS if getattr(entry, name) != view[name]]
    if differ:
        return mismatch(f"the entry's {', '.join(differ)} differ from its header")
    if entry.decision == "refused" and entry.reason in UNREADABLE_REASONS:
        # The header reads; a check-1 refusal came from the rest of the body,
        # which the evidence does not keep. Accepted as recorded.
        return None
    sigs = _signatures(ev.signatures or [])
    if sigs is None:
        return mismatch("the signatures in the evidence are not of the envelope's form")
    directory = directories.get(entry.registry_version)
    if isinstance(directory, str):
        return mismatch(f"cannot replay: {directory}")
    if entry.payload_sha256 is None:
        return mismatch("the entry records no payload hash")
    # The router measured the ciphertext; the entry keeps its hash, and the
    # header its claimed length. A length that differed would have changed
    # the hash too, so check 13 comes out the same.
    sub = Submission(header=header, header_bytes=ev.header, signatures=sigs,
                     user_id=ev.user_id, payload_sha256=entry.payload_sha256,
                     payload_length=header.payload.length)
    now = entry.time
    got = decide(sub, directory, history, now)
    if _matches(got, entry):
        return None
    # Only the 24 h freshness bound is not aligned to whole seconds; the end
    # of the second shows whether the router's instant explains the entry.
    late = decide(sub, directory, history, now + _WITHIN_SECOND)
    if _matches(late, entry):
        return None
    return mismatch("the policy decides otherwise", _outcome(got.decision, _reason(got)))


def _reason(d: Decision) -> str | None:
    return None if d.reason is None else d.reason.value


def _matches(d: Decision, e: Entry) -> bool:
    return d.decision == e.decision and _reason(d) == e.reason


def replay(directory: Path | str, *, registry_key: bytes | None = None,
           progress: Progress | None = None) -> list[Mismatch]:
    """Re-run every decision of an export; return the entries it does not reproduce.

    Run :func:`verify` first: replay trusts that the entries are the log's.
    ``registry_key`` pins the registry's key; without it the export's
    ``registry/registry-key.pub`` is used.

    Raises:
        AuditError: entries.jsonl, evidence.jsonl or the registry key cannot be read,
            or an entry or evidence line is not of its form (verify reports which).
    """
    d = Path(directory)
    if registry_key is None:
        try:
            registry_key = parse_public_key_text(
                (d / REGISTRY / REGISTRY_KEY).read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError, KeysError) as e:
            raise AuditError(f"{d}: no usable registry/{REGISTRY_KEY}") from e
    directories = _Directories(d / REGISTRY, registry_key)
    history = _History()
    out: list[Mismatch] = []
    try:
        total = (d / ENTRIES).stat().st_size
        with open(d / ENTRIES, "rb") as entries, open(d / EVIDENCE, "rb") as ev_stream:
            reader = _EvidenceReader(ev_stream)
            done = 0
            for n, raw in enumerate(entries, 1):
                done += len(raw)
                entry = Entry.from_bytes(raw.rstrip(b"\n"))
                if entry.seq != n - 1:
                    raise AuditError(f"entries.jsonl line {n}: seq {entry.seq}; run verify")
                try:
                    ev = reader.next_for(entry)
                except _Failure as f:
                    out.append(Mismatch(entry.seq, entry.message_id,
                                        _outcome(entry.decision, entry.reason), None,
                                        f"cannot replay: evidence.jsonl line {f.line}: {f}"))
                    history.add(entry)
                    continue
                found = _replay_one(entry, ev, history, directories)
                if found is not None:
                    out.append(found)
                history.add(entry)
                if progress is not None and n % PROGRESS_EVERY == 0:
                    progress(n, done, total)
    except OSError as e:
        raise AuditError(f"{d}: cannot read the export ({e.strerror})") from e
    except EntryFormatError as e:
        raise AuditError(f"{d}: {e}; run verify") from e
    return out


# --- report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFilters:
    """Which entries a report covers; every filter given must hold. Dates are inclusive."""

    date_from: date | None = None
    date_to: date | None = None
    organisation: str | None = None
    unit: str | None = None
    purpose: str | None = None
    decision: str | None = None
    ground: str | None = None

    def admits(self, e: Entry) -> bool:
        day = e.at[:10]
        if self.date_from is not None and day < self.date_from.isoformat():
            return False
        if self.date_to is not None and day > self.date_to.isoformat():
            return False
        parties = [p for p in (e.sender, e.recipient) if p is not None]
        if self.organisation is not None and self.organisation not in {
                p.split("/")[0] for p in parties}:
            return False
        if self.unit is not None and self.unit not in parties:
            return False
        if self.purpose is not None and e.purpose != self.purpose:
            return False
        if self.decision is not None and e.decision != self.decision:
            return False
        return self.ground is None or (e.consent or {}).get("ground") == self.ground


@dataclass(frozen=True)
class ReportRow:
    """Who shared what with whom: codes only, as the log holds them."""

    seq: int
    time: str
    kind: str | None
    protocol: str | None
    purpose: str | None
    sender: str | None
    recipient: str | None
    categories: tuple[str, ...]
    consent: str | None
    ground: str | None
    decision: str
    reason: str | None
    message_id: str | None

    @classmethod
    def of(cls, e: Entry) -> ReportRow:
        consent = e.consent or {}
        return cls(seq=e.seq, time=e.at, kind=e.kind, protocol=e.protocol, purpose=e.purpose,
                   sender=e.sender, recipient=e.recipient,
                   categories=tuple(e.data_categories or ()), consent=consent.get("status"),
                   ground=consent.get("ground"), decision=e.decision, reason=e.reason,
                   message_id=e.message_id)


_ROW_HEADINGS: Final = ("seq", "time", "kind", "protocol", "purpose", "sender", "recipient",
                        "categories", "consent", "ground", "decision", "reason", "message_id")


def _cells(r: ReportRow) -> list[str]:
    return [str(r.seq), r.time, r.kind or "", r.protocol or "", r.purpose or "",
            r.sender or "", r.recipient or "", " ".join(r.categories), r.consent or "",
            r.ground or "", r.decision, r.reason or "", r.message_id or ""]


def _table(headings: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headings)]
    line = "  ".join(h.ljust(w) for h, w in zip(headings, widths, strict=True)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]
    return out


@dataclass
class Report:
    """Rows and counts over the entries a report's filters admit."""

    filters: ReportFilters
    rows: list[ReportRow] = field(default_factory=list)
    #: (purpose, "YYYY-MM") -> {"routed": n, "refused": m}
    by_purpose_month: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    refusals_by_reason: Counter[str] = field(default_factory=Counter)
    #: routed shares without consent: ground -> {"not_sought": n, "refused": m}
    without_consent_by_ground: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, e: Entry) -> None:
        row = ReportRow.of(e)
        self.rows.append(row)
        key = (row.purpose or "-", row.time[:7])
        self.by_purpose_month.setdefault(key, Counter())[row.decision] += 1
        if row.decision == "refused":
            self.refusals_by_reason[row.reason or "-"] += 1
        elif row.consent in ("not_sought", "refused"):
            self.without_consent_by_ground.setdefault(row.ground or "-", Counter())[
                row.consent] += 1

    def summary_lines(self) -> list[str]:
        routed = sum(1 for r in self.rows if r.decision == "routed")
        lines = [f"{len(self.rows)} entries: {routed} routed, {len(self.rows) - routed} refused"]
        for (purpose, month), c in sorted(self.by_purpose_month.items()):
            lines.append(f"{month} {purpose}: {c['routed']} routed, {c['refused']} refused")
        for reason, n in sorted(self.refusals_by_reason.items()):
            lines.append(f"refused {reason}: {n}")
        for ground, c in sorted(self.without_consent_by_ground.items()):
            lines.append(f"shared without consent on {ground}: {c['not_sought']} not sought, "
                         f"{c['refused']} refused")
        return lines

    def to_table(self) -> str:
        out = ["Shares and refusals", ""]
        out += _table(_ROW_HEADINGS, [_cells(r) for r in self.rows])
        out += ["", "By purpose and month", ""]
        out += _table(("month", "purpose", "routed", "refused"), [
            [m, p, str(c["routed"]), str(c["refused"])]
            for (p, m), c in sorted(self.by_purpose_month.items(), key=lambda x: (x[0][1],
                                                                                   x[0][0]))])
        out += ["", "Refusals by reason", ""]
        out += _table(("reason", "count"), [[r, str(n)]
                                            for r, n in sorted(self.refusals_by_reason.items())])
        out += ["", "Shares without consent by ground", ""]
        out += _table(("ground", "not_sought", "refused"), [
            [g, str(c["not_sought"]), str(c["refused"])]
            for g, c in sorted(self.without_consent_by_ground.items())])
        return "\n".join(out) + "\n"

    def to_csv(self) -> str:
        """The rows, one line each (the counts are in the table and JSON forms)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(_ROW_HEADINGS)
        w.writerows(_cells(r) for r in self.rows)
        return buf.getvalue()

    def to_dict(self) -> dict[str, Any]:
        f = self.filters
        return {
            "filters": {k: (v.isoformat() if isinstance(v, date) else v)
                        for k, v in asdict(f).items()},
            "rows": [{**asdict(r), "categories": list(r.categories)} for r in self.rows],
            "by_purpose_month": [
                {"purpose": p, "month": m, "routed": c["routed"], "refused": c["refused"]}
                for (p, m), c in sorted(self.by_purpose_month.items())],
            "refusals_by_reason": dict(sorted(self.refusals_by_reason.items())),
            "without_consent_by_ground": {
                g: {"not_sought": c["not_sought"], "refused": c["refused"]}
                for g, c in sorted(self.without_consent_by_ground.items())},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def report(directory: Path | str, filters: ReportFilters | None = None) -> Report:
    """Who shared what with whom, with counts, over an export's entries.

    Raises:
        AuditError: entries.jsonl cannot be read or holds a line that is not an entry.
    """
    d = Path(directory)
    out = Report(filters or ReportFilters())
    try:
        with open(d / ENTRIES, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    e = Entry.from_bytes(raw.rstrip(b"\n"))
                except EntryFormatError as err:
                    raise AuditError(f"entries.jsonl line {n}: {err}; run verify") from err
                if out.filters.admits(e):
                    out.add(e)
    except OSError as e:
        raise AuditError(f"{d}: cannot read {ENTRIES} ({e.strerror})") from e
    return out


# --- inclusion proofs ------------------------------------------------------------------


def prove(source: TransferLog | Path | str, message_id: str, *,
          log_key: NoteVerifier | None = None, now: datetime | None = None) -> dict[str, Any]:
    """A proof document that every entry naming ``message_id`` is in the signed log.

    ``source`` is a log or an export directory. The document holds, for each
    such entry, its bytes, seq, leaf hash and inclusion proof, and once the
    tree size, the signed checkpoint of that size and the log key: enough to
    check it offline with :func:`check_proof`.

    Raises:
        AuditError: no entry names the message id, no checkpoint covers it, or
            the source cannot be read.
    """
    if isinstance(source, TransferLog):
        verifier, note, found, leaves = _from_log(source, message_id, log_key, now)
    else:
        verifier, note, found, leaves = _from_export(Path(source), message_id, log_key)
    try:
        cp = open_checkpoint(note, verifier)
    except NoteError as e:
        raise AuditError(f"the checkpoint does not verify with the log key: {e}") from e
    return {
        "format": PROOF_FORMAT,
        "message_id": message_id,
        "tree_size": cp.size,
        "checkpoint": note,
        "log_key": verifier.line(),
        "entries": [{
            "seq": e.seq, "entry": e.to_bytes().decode("ascii"), "leaf_hash": e.leaf_hash.hex(),
            "inclusion_proof": [h.hex() for h in merkle.inclusion_proof(leaves, e.seq,
                                                                        cp.size)],
        } for e in found],
    }


def _from_log(log: TransferLog, message_id: str, log_key: NoteVerifier | None,
              now: datetime | None) -> tuple[NoteVerifier, str, list[Entry], list[bytes]]:
    found = log.find_entries(message_id)
    if not found:
        raise AuditError(f"no entry of the log names message {message_id}")
    verifier = log.verifier if log.can_sign else log_key
    if verifier is None:
        raise AuditError("the log key is needed to prove from a log opened without it")
    note = log.latest_checkpoint()
    size = 0 if note is None else Checkpoint.parse(note[: note.rfind("\n\n") + 1]).size
    if size <= found[-1].seq:
        if not log.can_sign:
            raise AuditError(f"no checkpoint covers seq {found[-1].seq} yet; the routers sign "
                             "one within 10 s")
        note = log.checkpoint(now or datetime.now(UTC))
        size = open_checkpoint(note, verifier).size
    assert note is not None
    return verifier, note, found, log.leaf_hashes(0, size)


def _from_export(d: Path, message_id: str, log_key: NoteVerifier | None
                 ) -> tuple[NoteVerifier, str, list[Entry], list[bytes]]:
    try:
        verifier = log_key or NoteVerifier.parse((d / LOG_KEY).read_text(encoding="utf-8"))
        notes = load_checkpoint_notes(d / CHECKPOINTS)
        leaves: list[bytes] = []
        found: list[Entry] = []
        with open(d / ENTRIES, "rb") as f:
            for raw in f:
                e = Entry.from_bytes(raw.rstrip(b"\n"))
                leaves.append(e.leaf_hash)
                if e.message_id == message_id:
                    found.append(e)
    except (OSError, UnicodeDecodeError) as e:
        raise AuditError(f"{d}: cannot read the export") from e
    except (NoteError, EntryFormatError) as e:
        raise AuditError(f"{d}: {e}; run verify") from e
    if not found:
        raise AuditError(f"no entry of the export names message {message_id}")
    if not notes:
        raise AuditError(f"{d}: no checkpoint")
    return verifier, notes[-1], found, leaves


@dataclass(frozen=True)
class ProofCheck:
    ok: bool
    failure: str | None = None
    size: int | None = None
    entries: tuple[Entry, ...] = ()
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        if not self.ok:
            return f"FAILED: {self.failure}"
        lines = [f"ok: in the log of size {self.size}:"]
        lines += [f"  seq {e.seq} {e.at} {_outcome(e.decision, e.reason)} "
                  f"{e.kind or '-'} {e.sender or '-'} -> {e.recipient or '-'}"
                  for e in self.entries]
        return "\n".join(lines)


def check_proof(proof: dict[str, Any] | Path | str,
                log_key: NoteVerifier | None = None) -> ProofCheck:
    """Check a proof document offline: the checkpoint's signature, each entry's inclusion.

    Without ``log_key`` the document's own key is used, with a warning.

    Raises:
        AuditError: the proof file cannot be read.
    """
    warnings: list[str] = []
    if not isinstance(proof, dict):
        try:
            proof = json.loads(Path(proof).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise AuditError(f"{proof}: cannot read the proof") from e
        except ValueError:
            return ProofCheck(ok=False, failure="the proof is not JSON")
    try:
        return _check_proof(proof, log_key, warnings)
    except _Failure as f:
        return ProofCheck(ok=False, failure=str(f), warnings=tuple(warnings))


def _check_proof(doc: Any, pinned: NoteVerifier | None, warnings: list[str]) -> ProofCheck:
    fields = {"format", "message_id", "tree_size", "checkpoint", "log_key", "entries"}
    if not isinstance(doc, dict) or set(doc) != fields or doc["format"] != PROOF_FORMAT:
        raise _Failure(f"not an {PROOF_FORMAT} document")
    if pinned is None:
        try:
            verifier = NoteVerifier.parse(str(doc["log_key"]))
        except NoteError as e:
            raise _Failure(f"the proof's log key is not a verifier key: {e}") from e
        warnings.append("checked against the proof's own log key: give the key you trust "
                        "with --log-key")
    else:
        verifier = pinned
    try:
        cp = open_checkpoint(str(doc["checkpoint"]), verifier)
    except NoteError as e:
        raise _Failure(f"the checkpoint does not verify with the log key: {e}") from e
    if doc["tree_size"] != cp.size:
        raise _Failure(f"tree_size {doc['tree_size']} is not the checkpoint's {cp.size}")
    items = doc["entries"]
    if not isinstance(items, list) or not items:
        raise _Failure("no entries")
    entries = []
    for i, item in enumerate(items):
        where = f"entries[{i}]"
        if not isinstance(item, dict) or set(item) != {"seq", "entry", "leaf_hash",
                                                       "inclusion_proof"}:
            raise _Failure(f"{where}: not {{seq, entry, leaf_hash, inclusion_proof}}")
        try:
            entry = Entry.from_bytes(str(item["entry"]).encode("ascii"))
            path = [bytes.fromhex(h) for h in item["inclusion_proof"]]
        except (EntryFormatError, UnicodeEncodeError, ValueError, TypeError) as err:
            raise _Failure(f"{where}: not an entry and a proof: {err}") from err
        if entry.seq != item["seq"] or entry.message_id != doc["message_id"]:
            raise _Failure(f"{where}: the entry's seq or message id is not the document's")
        if entry.leaf_hash.hex() != item["leaf_hash"]:
            raise _Failure(f"{where}: the leaf hash is not the entry's")
        if not merkle.verify_inclusion(entry.leaf_hash, entry.seq, cp.size, path, cp.root):
            raise _Failure(f"{where}: seq {entry.seq} is not in the signed tree of size "
                           f"{cp.size}")
        entries.append(entry)
    return ProofCheck(ok=True, size=cp.size, entries=tuple(entries), warnings=tuple(warnings))

