"""Replaying an export: re-run ``protocols.policy.decide`` for every entry.

Each entry is re-decided with what decided it: the directory version it
names, its evidence, the entries before it, and its own time. Anything that
cannot be re-run is a mismatch, never a silent pass. Replay needs
``evidence.jsonl`` (wire spec 6.4) and refuses an export without it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final

from audit.directories import Directories, LoadDocument
from audit.errors import AuditError
from audit.export_dir import (
    ENTRIES,
    EVIDENCE,
    PROGRESS_EVERY,
    REGISTRY,
    REGISTRY_KEY,
    Failure,
    LineReader,
    Progress,
    check_evidence,
    directory_file,
    outcome,
    read_entries,
)
from keys import (
    KeyId,
    KeysError,
    b64decode,
    parse_public_key_text,
)
from protocols.envelope import EnvelopeRefused, header_codes, parse_header
from protocols.log_format import Entry, Evidence
from protocols.model import Signature, Submission
from protocols.policy import Decision, LoggedMessage, LogView, decide


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


def _file_loader(path: Path) -> LoadDocument:
    def load(version: int) -> bytes | None:
        try:
            return (path / directory_file(version)).read_bytes()
        except OSError:
            return None

    return load


def replay_one(entry: Entry, ev: Evidence, history: LogView,
               directories: Directories) -> Mismatch | None:
    """Re-decide one entry from its evidence; None when the policy agrees with it.

    ``history`` sees the entries before it; ``directories`` the signed versions.
    """
    recorded = outcome(entry.decision, entry.reason)

    def mismatch(detail: str, replayed: str | None = None) -> Mismatch:
        return Mismatch(entry.seq, entry.message_id, recorded, replayed, detail)

    if ev.header is None:
        if entry.unreadable:
            # Nothing to re-run: the body itself was refused at check 1, and the
            # evidence (bound to the entry by its hash) holds only its hash.
            return None
        return mismatch("the evidence holds no header, so only a refusal at check 1 "
                        "(malformed, too_large, unsupported_version) fits")
    try:
        header = parse_header(ev.header)
    except EnvelopeRefused as e:
        # A header the router logged passed check 1; one that does not parse now
        # cannot have decided anything but a check-1 refusal, which logs none (6.1).
        return mismatch("the header in the evidence cannot be read", f"refused ({e.reason})")
    view = header_codes(header)
    differ = [name for name in _HEADER_FIELDS if getattr(entry, name) != view[name]]
    if differ:
        return mismatch(f"the entry's {', '.join(differ)} differ from its header")
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
                     user_id=ev.publisher, payload_sha256=entry.payload_sha256,
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
    return mismatch("the policy decides otherwise", outcome(got.decision, _reason(got)))


def _reason(d: Decision) -> str | None:
    return None if d.reason is None else d.reason.value


def _matches(d: Decision, e: Entry) -> bool:
    return d.decision == e.decision and _reason(d) == e.reason


#: Entries handed to a worker process at a time, and how many such chunks may wait.
CHUNK: Final = 1000
_AHEAD: Final = 4


class _Seen:
    """What a worker needs of the history for one entry: the logged messages of its
    own message id and of the one it answers, as they were before it (a ``LogView``)."""

    __slots__ = ("_found",)

    def __init__(self, found: dict[str, list[LoggedMessage]]) -> None:
        self._found = found

    def find(self, message_id: str) -> list[LoggedMessage]:
        return self._found.get(message_id, [])


#: One item of replay work: an entry, its evidence line and number, and what it may see.
_Work = tuple[Entry, bytes, int, dict[str, list[LoggedMessage]]]
_worker_directories: Directories | None = None


def _worker_start(registry: Path, registry_key: bytes) -> None:
    global _worker_directories
    _worker_directories = Directories(_file_loader(registry), registry_key)


def _replay_chunk(work: list[_Work]) -> list[Mismatch]:
    """Replay entries in a worker process (see :func:`replay`)."""
    assert _worker_directories is not None
    out = []
    for entry, raw, line, seen in work:
        found = _replay_line(entry, raw, line, _Seen(seen), _worker_directories)
        if found is not None:
            out.append(found)
    return out


def _replay_line(entry: Entry, raw: bytes, line: int, history: LogView,
                 directories: Directories) -> Mismatch | None:
    try:
        ev = check_evidence(entry, raw, line)
    except Failure as f:
        return _unreplayable(entry, f)
    return replay_one(entry, ev, history, directories)


def _unreplayable(entry: Entry, f: Failure) -> Mismatch:
    return Mismatch(entry.seq, entry.message_id, outcome(entry.decision, entry.reason), None,
                    f"cannot replay: {f.where()}: {f}")


def replay(directory: Path | str, *, registry_key: bytes | None = None,
           progress: Progress | None = None, jobs: int | None = None) -> list[Mismatch]:
    """Re-run every decision of an export; return the entries it does not reproduce.

    Run :func:`verify` first: replay trusts that the entries are the log's.
    ``registry_key`` pins the registry's key; without it the export's
    ``registry/registry-key.pub`` is used.

    ``jobs`` worker processes (default: one per core) re-decide chunks of
    entries side by side: the signature checks and the policy dominate, and
    each entry needs of the entries before it only what the policy looks up
    (the logged messages of its own message id and of the one it answers),
    which this process, reading the export in order, hands over with it.

    Raises:
        AuditError: the export has no evidence.jsonl; entries.jsonl or the registry
            key cannot be read, or an entry is not of its form (named by line).
    """
    d = Path(directory)
    if not (d / EVIDENCE).is_file():
        raise AuditError(
            f"{d}: no evidence.jsonl: replay re-checks every decision from its evidence "
            "(the header bytes, signatures and publisher), so it needs an export that "
            "holds it; `infoshare audit export` writes one")
    if registry_key is None:
        try:
            registry_key = parse_public_key_text(
                (d / REGISTRY / REGISTRY_KEY).read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError, KeysError) as e:
            raise AuditError(f"{d}: no usable registry/{REGISTRY_KEY}") from e
    if jobs is None:
        # A small export is replayed here: starting processes would cost more.
        small = (d / ENTRIES).stat().st_size < 4 * CHUNK * 500
        jobs = 1 if small else os.cpu_count() or 1
    history = _History()
    out: list[Mismatch] = []
    with contextlib.ExitStack() as stack:
        pool = None if jobs <= 1 else stack.enter_context(ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("fork"), initializer=_worker_start,
            initargs=(d / REGISTRY, registry_key)))
        directories = Directories(_file_loader(d / REGISTRY), registry_key)
        waiting: deque[Future[list[Mismatch]]] = deque()
        chunk: list[_Work] = []

        def hand_over() -> None:
            assert pool is not None
            waiting.append(pool.submit(_replay_chunk, chunk.copy()))
            chunk.clear()
            while len(waiting) > _AHEAD * jobs or (waiting and waiting[0].done()):
                out.extend(waiting.popleft().result())

        try:
            total = (d / ENTRIES).stat().st_size
            with open(d / ENTRIES, "rb") as entries, open(d / EVIDENCE, "rb") as ev_stream:
                ev_lines = LineReader(ev_stream, EVIDENCE)
                lines = LineReader(entries, ENTRIES, seq_lines=True)
                for entry in read_entries(lines):
                    n = lines.line
                    if entry.seq != n - 1:
                        raise lines.fail(f"seq {entry.seq}; run verify")
                    try:
                        raw = ev_lines.read()
                        if raw is None:
                            raise Failure("evidence.jsonl ends before entries.jsonl",
                                          file=EVIDENCE, line=ev_lines.line + 1, seq=entry.seq)
                    except Failure as f:
                        out.append(_unreplayable(entry, f))
                    else:
                        if pool is None:
                            found = _replay_line(entry, raw, ev_lines.line, history,
                                                 directories)
                            if found is not None:
                                out.append(found)
                        else:
                            seen = {m: list(history.find(m))
                                    for m in (entry.message_id, entry.in_reply_to) if m}
                            chunk.append((entry, raw, ev_lines.line, seen))
                            if len(chunk) >= CHUNK:
                                hand_over()
                    history.add(entry)
                    if progress is not None and n % PROGRESS_EVERY == 0:
                        progress(n, lines.bytes_read, total)
                if chunk:
                    hand_over()
                while waiting:
                    out.extend(waiting.popleft().result())
        except OSError as e:
            raise AuditError(f"{d}: cannot read the export ({e.strerror})") from e
        except Failure as f:
            raise AuditError(f"{f.where()}: {f}") from f
    out.sort(key=lambda m: m.seq)
    return out
