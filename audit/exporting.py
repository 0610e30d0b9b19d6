"""Writing an audit export from a transfer log (wire spec 6.4).

The log is whatever the caller hands in that reads like one
(:class:`LogSource`): the broker's database, opened by the composition root,
or a served log. The export is written beside its target and renamed into
place, so a failed export leaves nothing that looks complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from audit.errors import AuditError
from audit.export_dir import (
    CHECKPOINTS,
    ENTRIES,
    EVIDENCE,
    LOG_KEY,
    PROGRESS_EVERY,
    README,
    REGISTRY,
    REGISTRY_KEY,
    checkpoint_line,
    directory_file,
)
from keys import (
    Checkpoint,
    KeysError,
    NoteError,
    NoteVerifier,
    open_checkpoint,
    public_key_text,
)
from protocols import merkle
from protocols.directory import verify_directory
from protocols.errors import DirectoryError
from protocols.log_format import Entry


class LogSource(Protocol):
    """What an export reads of a transfer log (the broker's ``TransferLog`` is one)."""

    @property
    def can_sign(self) -> bool: ...

    @property
    def verifier(self) -> NoteVerifier: ...

    def checkpoint(self, now: datetime) -> str: ...

    def latest_checkpoint(self) -> str | None: ...

    def checkpoints(self, upto: int | None = None) -> list[str]: ...

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...

    def evidence_lines(self, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...

    def find_entries(self, message_id: str) -> list[Entry]: ...

    def leaf_hashes(self, start: int = 0, end: int | None = None) -> list[bytes]: ...


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    size: int
    checkpoints: int
    registry_versions: tuple[int, ...]


README_TEXT = """\
infoshare transfer log export
=============================

This directory is an export of an infoshare transfer log (wire format v1,
section 6, as amended 2026-11-30). It holds no personal data: entries and
evidence carry codes, hashes, key ids, signatures, AMQP user names and times.

entries.jsonl      one entry per line: the exact entry bytes, then "\\n". Line k
                   holds seq k-1. An entry is compact ASCII JSON with exactly
                   these 19 keys in this order: seq, at, message_id, kind,
                   decision, reason, protocol, purpose, sender, recipient,
                   in_reply_to, consent, subject_informed, data_categories,
                   header_sha256, payload_sha256, registry_version, publisher,
                   evidence_sha256.
                   leaf hash = SHA-256(0x00 || entry bytes).
checkpoints.jsonl  one {"note":"<signed checkpoint>"} per line (compact, UTF-8),
                   smallest tree size first. A note is a C2SP tlog-checkpoint
                   signed as a C2SP signed note: origin, tree size, base64 root,
                   a blank line, signature lines. The last covers every entry.
log-key.txt        the verifier key of the checkpoints:
                   <name>+<hex key hash>+<base64(0x01 || Ed25519 public key)>.
                   Compare it with the key you obtained from the log's operator.
evidence.jsonl     line k is the evidence line of seq k-1, byte for byte as the
                   log holds it, then "\\n": compact ASCII JSON
                   {"seq","header","signatures","publisher","body_sha256"}:
                   base64 of the header bytes as received (null when the body
                   failed check 1), the envelope's [{"key","sig"}] as received
                   (null likewise), the AMQP user that published (null if
                   none), hex SHA-256 of the whole AMQP body.
                   SHA-256(line) equals the entry's evidence_sha256, and
                   SHA-256(header bytes) its header_sha256. Verifying does not
                   need this file; replaying does.
registry/registry-key.pub          the registry's Ed25519 public key (base64).
registry/directory-<version>.json  the signed registry directory of every
                   version an entry names (its registry_version), as served.

To verify: recompute the RFC 9162 Merkle tree over the lines of entries.jsonl
(node hash SHA-256(0x01 || left || right), empty tree SHA-256("")), check that
seq runs 0..n-1, that every checkpoint verifies with the log key you trust and
that its root equals the recomputed root at its size, that the last
checkpoint's size is n, and that each line of evidence.jsonl hashes to its
entry's evidence_sha256. `infoshare audit verify DIR --log-key KEY` does this;
`infoshare audit replay DIR` re-runs every decision. docs/export-format.md in
the infoshare sources describes the format in full.
"""


def export(log: LogSource, out_dir: Path | str, *, directories: Callable[[int], bytes],
           registry_key: bytes, now: datetime | None = None,
           log_key: NoteVerifier | None = None,
           progress: Callable[[int, int], None] | None = None,
           evidence: bool = True) -> ExportSummary:
    """Write an export of ``log`` to ``out_dir`` (which must not exist or be empty).

    With the log's key a fresh checkpoint is signed first, so the export holds
    every entry; without it (``log_key`` given) the export holds the entries
    the newest checkpoint covers. ``directories(version)`` returns the signed
    directory document of a registry version, which must verify against
    ``registry_key``. The export is written beside ``out_dir`` and renamed into
    place, so a failed export leaves nothing that looks complete.
    ``progress(entries written, entries to write)`` is called as it goes.
    Without ``evidence`` the export leaves out ``evidence.jsonl``, as 6.4
    allows: it verifies in full, at about 40 % of the size, but cannot be
    replayed.

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
        versions = _write_entries(log, work, newest, progress)
        if evidence:
            _write_evidence(log, work, newest.size)
        notes = log.checkpoints(upto=newest.size)
        with open(work / CHECKPOINTS, "wb") as f:
            for n in notes:
                f.write(checkpoint_line(n) + b"\n")
        (work / LOG_KEY).write_text(verifier.line() + "\n", encoding="utf-8")
        _write_registry(work / REGISTRY, versions, directories, registry_key)
        (work / README).write_text(README_TEXT, encoding="utf-8")
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


def _write_entries(log: LogSource, work: Path, newest: Checkpoint,
                   progress: Callable[[int, int], None] | None) -> set[int]:
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
            if progress is not None and cr.size % PROGRESS_EVERY == 0:
                progress(cr.size, newest.size)
    if progress is not None:
        progress(cr.size, newest.size)
    if cr.root() != newest.root:
        # Never hand out an export the log's own checkpoint contradicts.
        raise AuditError(f"the log's entries 0..{newest.size - 1} do not match its checkpoint")
    return versions


def _write_evidence(log: LogSource, work: Path, size: int) -> None:
    # Byte for byte as the log holds them: each line's hash is in its entry.
    with open(work / EVIDENCE, "wb") as f:
        for line in log.evidence_lines(0, size):
            f.write(line + b"\n")


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
        except (KeysError, DirectoryError, OSError) as e:
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
        (path / directory_file(v)).write_bytes(document)
