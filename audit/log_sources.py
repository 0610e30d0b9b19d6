"""What the log server and the auditors' pages read a transfer log from.

A :class:`ReadableLog` is the broker's ``TransferLog`` (handed in by the
composition root; the audit never imports the broker) or an export directory
read through :class:`ExportLog`. Both give the exact entry bytes, evidence
lines and checkpoint notes; nothing here trusts them: the index checks them
with :class:`audit.verifying.TreeCheck` as it reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Protocol

from audit.errors import AuditError
from audit.export_dir import (
    CHECKPOINTS,
    ENTRIES,
    EVIDENCE,
    REGISTRY,
    REGISTRY_KEY,
    Failure,
    LineReader,
    directory_file,
    load_checkpoint_notes,
)
from keys import KeysError, parse_public_key_text


class ReadableLog(Protocol):
    """What the index reads of a log (the broker's ``TransferLog`` is one)."""

    def latest_checkpoint(self) -> str | None: ...

    def checkpoints(self, upto: int | None = None) -> list[str]: ...

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...

    def evidence_lines(self, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...


class ExportLog:
    """An export directory read as a log: the files of ``docs/export-format.md``.

    ``entries`` and ``evidence_lines`` raise :class:`~audit.export_dir.Failure`
    (naming the file and line) for a line that is not a line of an export.
    """

    #: An export is complete: every entry is read, and the newest checkpoint must
    #: cover them all (6.4); a live log is read up to its newest checkpoint.
    complete = True

    def __init__(self, directory: Path | str) -> None:
        self.path = Path(directory)
        if not (self.path / ENTRIES).is_file():
            raise AuditError(f"{self.path}: not an export (no {ENTRIES})")

    @property
    def has_evidence(self) -> bool:
        return (self.path / EVIDENCE).is_file()

    def fingerprint(self) -> str:
        """Sizes and times of the files an index is built from, to see when they change."""
        parts = []
        for name in (ENTRIES, EVIDENCE, CHECKPOINTS):
            try:
                st = (self.path / name).stat()
                parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
            except FileNotFoundError:
                parts.append(f"{name}:-")
        return ";".join(parts)

    def checkpoint_lines(self) -> Iterator[tuple[int, bytes]]:
        """The lines of checkpoints.jsonl, numbered from 1 (read as strictly as entries)."""
        path = self.path / CHECKPOINTS
        if not path.is_file():
            return
        with open(path, "rb") as f:
            lines = LineReader(f, CHECKPOINTS)
            for raw in lines:
                yield lines.line, raw

    def latest_checkpoint(self) -> str | None:
        notes = self.checkpoints()
        return notes[-1] if notes else None

    def checkpoints(self, upto: int | None = None) -> list[str]:
        try:
            return load_checkpoint_notes(self.path / CHECKPOINTS)
        except AuditError:
            return []  # the index's checks name the line

    def _lines(self, name: str, start: int, end: int | None,
               seq_lines: bool) -> Iterator[bytes]:
        with open(self.path / name, "rb") as f:
            lines = LineReader(f, name, seq_lines=seq_lines)
            yield from islice(lines, start, end)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self._lines(ENTRIES, start, end, True)

    def evidence_lines(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        if not self.has_evidence:
            return iter(())
        return self._lines(EVIDENCE, start, end, False)

    def registry_key(self) -> bytes | None:
        try:
            return parse_public_key_text(
                (self.path / REGISTRY / REGISTRY_KEY).read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError, KeysError):
            return None

    def directory_document(self, version: int) -> bytes | None:
        try:
            return (self.path / REGISTRY / directory_file(version)).read_bytes()
        except OSError:
            return None


__all__ = ["ExportLog", "Failure", "ReadableLog"]
