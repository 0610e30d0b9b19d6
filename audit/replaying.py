"""Replaying an export: re-run ``protocols.policy.decide`` for every entry.

Each entry is re-decided with what decided it: the directory version it
names, its evidence, the entries before it, and its own time. Anything that
cannot be re-run is a mismatch, never a silent pass. Replay needs
``evidence.jsonl`` (wire spec 6.4) and refuses an export without it.
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import multiprocessing
import os
import re
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
)
from keys import (
    KeyId,
    KeysError,
    parse_public_key_text,
)
from protocols.directory import parse_time
from protocols.envelope import EnvelopeRefused, parse_header
from protocols.log_format import Entry, EntryFormatError, Evidence
from protocols.model import Header, MessageId, Signature, Submission
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


_HEADER_FIELDS: Final = ("message_id", "kind", "protocol", "purpose", "sender", "recipient",
                         "in_reply_to", "consent", "subject_informed", "data_categories")


def _signatures(raw: list[dict[str, str]]) -> tuple[Signature, ...] | None:
    # An Evidence holds only canonical base64 of 64 bytes (its checks, or the grammar's),
    # so the plain decoder gives what the strict one would.
    out = []
    for s in raw:
        try:
            out.append(Signature(key=KeyId(s["key"]), sig=binascii.a2b_base64(s["sig"])))
        except (KeyError, binascii.Error):
            return None
    return tuple(out)


def _differing(entry: Entry, h: Header) -> list[str]:
    """The fields an entry takes from its header that differ from ``h``'s."""
    consent = None if h.consent is None else {"status": h.consent.status,
                                              "ground": h.consent.ground}
    view = (h.message_id, h.kind, h.protocol, h.purpose, h.sender, h.recipient,
            h.in_reply_to, consent, h.subject_informed, list(h.data_categories))
    return [name for name, value in zip(_HEADER_FIELDS, view, strict=True)
            if getattr(entry, name) != value]


@functools.lru_cache(maxsize=1024)
def _time(at: str) -> datetime:
    # The entries of one second share it; ``Entry.time`` builds it each time.
    return parse_time(at)


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
    differ = _differing(entry, header)
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
    now = _time(entry.at)
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

#: What the policy sees of an earlier entry but its message id: ``kind, decision, reason,
#: protocol, purpose, sender, recipient`` (a ``LoggedMessage`` without its id). One tuple
#: per distinct combination, shared by every entry that has it.
_Profile = tuple[str | None, ...]

#: The profile's part of an entry line (``"kind":...,"recipient":...``), as 6.1 orders it.
_PROFILE: Final = re.compile(
    rb'"kind":(?:null|"([^"\\]*)"),"decision":"([^"\\]*)","reason":(?:null|"([^"\\]*)"),'
    rb'"protocol":(?:null|"([^"\\]*)"),"purpose":(?:null|"([^"\\]*)"),'
    rb'"sender":(?:null|"([^"\\]*)"),"recipient":(?:null|"([^"\\]*)")')
_UUID_CHARS: Final = 36


def _ids(raw: bytes) -> tuple[int, bytes | None, bytes, bytes | None] | None:
    """``seq``, ``message_id``, the profile's text and ``in_reply_to`` of an entry line
    read by their places in the canonical form, or None for a line not of its shape.

    A canonical line always gives its own values: ``at`` is 20 characters, a
    message id 36, and no value before ``in_reply_to`` can hold a quote. What
    this takes is not yet known to be canonical; the worker that replays the
    line parses it in full, and a line that is not stops the replay before
    anything that saw it counts. Slicing is a fraction of a regular expression's
    cost, and this runs for every line, in the process every worker waits on.
    """
    comma = raw.find(b",", 7, 27)
    if comma < 0 or not raw.startswith(b'{"seq":'):
        return None
    digits = raw[7:comma]
    at = comma + 7
    if not digits.isdigit() or raw[comma:at] != b',"at":"' or (
            raw[at + 20:at + 35] != b'","message_id":'):
        return None
    message_id, p = _id_at(raw, at + 35)
    if not raw.startswith(b',"kind":', p):
        return None
    end = raw.find(b',"in_reply_to":', p)
    if end < 0:
        return None
    in_reply_to, q = _id_at(raw, end + 15)
    if q < 0 or raw[q:q + 1] != b",":
        return None
    return int(digits), message_id, raw[p + 1:end], in_reply_to


def _id_at(raw: bytes, i: int) -> tuple[bytes | None, int]:
    """The id or null at ``i`` and where it ends; -1 for neither."""
    if raw.startswith(b"null", i):
        return None, i + 4
    j = i + _UUID_CHARS + 1
    if raw[i:i + 1] == b'"' and raw[j:j + 1] == b'"':
        return raw[i + 1:j], j + 1
    return None, -1


class _History:
    """The entries before the one being read, by message id, as profiles: the whole log's
    message ids, so kept small (the id's bytes and a shared tuple each)."""

    def __init__(self) -> None:
        self.first: dict[bytes, _Profile] = {}
        #: The second and later entries of an id (a duplicate, a refused copy...).
        self._more: dict[bytes, tuple[_Profile, ...]] = {}
        self._profiles: dict[bytes, _Profile] = {}

    def seen(self, message_id: bytes) -> tuple[_Profile, ...]:
        """The profiles logged under ``message_id``, which ``first`` holds."""
        return (self.first[message_id], *self._more.get(message_id, ()))

    def add(self, message_id: bytes, text: bytes) -> bool:
        """Add an entry of ``message_id`` and profile ``text``; False if ``text`` is not
        of the profile's form (so neither is the entry)."""
        profile = self._profiles.get(text)
        if profile is None:
            m = _PROFILE.fullmatch(text)
            if m is None:
                return False
            profile = self._profiles.setdefault(text, tuple(
                None if v is None else v.decode("ascii", "replace") for v in m.groups()))
        if message_id in self.first:
            self._more[message_id] = (*self._more.get(message_id, ()), profile)
        else:
            self.first[message_id] = profile
        return True


class _Seen:
    """What a worker needs of the history for one entry: the logged messages of its
    own message id and of the one it answers, as they were before it (a ``LogView``)."""

    __slots__ = ("_found",)

    def __init__(self, found: dict[str, tuple[_Profile, ...]]) -> None:
        self._found = found

    @classmethod
    def of(cls, entry: Entry, own: tuple[_Profile, ...] | None,
           answered: tuple[_Profile, ...] | None) -> _Seen:
        found: dict[str, tuple[_Profile, ...]] = {}
        if entry.in_reply_to is not None and answered:
            found[entry.in_reply_to] = answered
        if entry.message_id is not None and own:
            found[entry.message_id] = own
        return cls(found)

    def find(self, message_id: str) -> list[LoggedMessage]:
        return [_logged(message_id, p) for p in self._found.get(message_id, ())]


#: The view of an entry whose ids nothing before it was logged under (most of them).
_NOTHING_BEFORE: Final = _Seen({})


def _logged(message_id: str, p: _Profile) -> LoggedMessage:
    kind, decision, reason, protocol, purpose, sender, recipient = p
    return LoggedMessage(message_id=MessageId(message_id), header_sha256=None,
                         kind=kind,  # type: ignore[arg-type]  # the entry's, checked
                         decision=decision or "", reason=reason, protocol=protocol,
                         purpose=purpose, sender=sender, recipient=recipient)


#: Evidence that could not be read: the failure's message and line.
_Gap = tuple[str, int]
#: What an entry may look up: the profiles logged before it under its own message id
#: and under the one it answers.
_Lookups = tuple[tuple[_Profile, ...] | None, tuple[_Profile, ...] | None]


@dataclass
class _Chunk:
    """Entries to replay, as they cross to a worker: the line number of the first, the
    entry lines and the evidence lines each joined by newlines (one string each pickles
    in a copy, where a thousand cost a thousand objects), and only for the entries
    that have some, their evidence's gap and what they may look up, by index."""

    first: int
    entries: list[bytes] = field(default_factory=list)
    evidence: list[bytes] = field(default_factory=list)
    gaps: dict[int, _Gap] = field(default_factory=dict)
    seen: dict[int, _Lookups] = field(default_factory=dict)

    def __getstate__(self) -> object:
        return (self.first, b"\n".join(self.entries), b"\n".join(self.evidence), self.gaps,
                self.seen)

    def __setstate__(self, state: tuple[int, bytes, bytes, dict[int, _Gap],
                                        dict[int, _Lookups]]) -> None:
        self.first, entries, evidence, self.gaps, self.seen = state
        self.entries = entries.split(b"\n")
        self.evidence = evidence.split(b"\n")


#: What a chunk found: its mismatches, and the first entry line not of its form
#: (its number and message), after which it stopped.
_Found = tuple[list[Mismatch], _Gap | None]
_worker_directories: Directories | None = None


def _worker_start(registry: Path, registry_key: bytes) -> None:
    global _worker_directories
    _worker_directories = Directories(_file_loader(registry), registry_key)


def _replay_in_worker(chunk: _Chunk) -> _Found:
    """Replay a chunk in a worker process (see :func:`replay`)."""
    assert _worker_directories is not None
    return _replay_chunk(chunk, _worker_directories)


def _replay_chunk(chunk: _Chunk, directories: Directories) -> _Found:
    out: list[Mismatch] = []
    evidence = iter(chunk.evidence)
    for i, raw in enumerate(chunk.entries):
        n = chunk.first + i
        try:
            entry = Entry.from_bytes(raw)
        except EntryFormatError as e:
            return out, (f"{e}; run verify", n)
        gap = chunk.gaps.get(i)
        if gap is not None:
            found: Mismatch | None = _unreplayable(
                entry, Failure(gap[0], file=EVIDENCE, line=gap[1], seq=entry.seq))
        else:
            seen = chunk.seen.get(i)
            found = _replay_line(entry, next(evidence), n,
                                 _NOTHING_BEFORE if seen is None else _Seen.of(entry, *seen),
                                 directories)
        if found is not None:
            out.append(found)
    return out, None


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


class _Stop:
    """The first entry line that ends the replay, in file order.

    A chunk's failure comes before any found while reading (every line handed
    over was read before it), and chunks are collected in the order handed over.
    """

    def __init__(self) -> None:
        self._chunk: Failure | None = None
        self._here: Failure | None = None

    def in_chunk(self, f: Failure) -> None:
        if self._chunk is None:
            self._chunk = f

    def here(self, f: Failure) -> None:
        self._here = f

    @property
    def first(self) -> Failure | None:
        return self._chunk or self._here


def _entry_failure(lines: LineReader, raw: bytes, otherwise: str) -> Failure:
    """The failure of entry line ``raw`` found here: its form first, as a full parse
    names it, else ``otherwise``."""
    try:
        Entry.from_bytes(raw)
    except EntryFormatError as e:
        return lines.fail(f"{e}; run verify")
    return lines.fail(otherwise)


def replay(directory: Path | str, *, registry_key: bytes | None = None,
           progress: Progress | None = None, jobs: int | None = None) -> list[Mismatch]:
    """Re-run every decision of an export; return the entries it does not reproduce.

    Run :func:`verify` first: replay trusts that the entries are the log's.
    ``registry_key`` pins the registry's key; without it the export's
    ``registry/registry-key.pub`` is used.

    ``jobs`` worker processes (default: one per core) re-decide chunks of
    entries side by side: the signature checks and the policy dominate, and
    each entry needs of the entries before it only what the policy looks up
    (the logged messages of its own message id and of the one it answers).
    This process only reads: it takes the ids and those few fields of each
    entry line without parsing it, keeps them by message id, and hands each
    line over raw with the earlier entries it may look up. The workers parse
    every line in full; the first line not of its form (or out of seq order)
    in file order stops the replay, as if it had been read here.

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
    out: list[Mismatch] = []
    with contextlib.ExitStack() as stack:
        pool = None if jobs <= 1 else stack.enter_context(ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("fork"), initializer=_worker_start,
            initargs=(d / REGISTRY, registry_key)))
        directories = Directories(_file_loader(d / REGISTRY), registry_key)
        waiting: deque[Future[_Found]] = deque()
        stop = _Stop()

        def collect(found: _Found) -> None:
            mismatches, failure = found
            out.extend(mismatches)
            if failure is not None:
                message, line = failure
                stop.in_chunk(Failure(message, file=ENTRIES, line=line, seq=line - 1))

        def hand_over(chunk: _Chunk) -> None:
            if pool is None:
                collect(_replay_chunk(chunk, directories))
                return
            waiting.append(pool.submit(_replay_in_worker, chunk))
            while len(waiting) > _AHEAD * jobs or (waiting and waiting[0].done()):
                collect(waiting.popleft().result())

        try:
            total = (d / ENTRIES).stat().st_size
            with open(d / ENTRIES, "rb") as entries, open(d / EVIDENCE, "rb") as ev_stream:
                _read(LineReader(entries, ENTRIES, seq_lines=True),
                      LineReader(ev_stream, EVIDENCE), hand_over, stop, progress, total)
                while waiting:
                    collect(waiting.popleft().result())
        except OSError as e:
            raise AuditError(f"{d}: cannot read the export ({e.strerror})") from e
        if (f := stop.first) is not None:
            raise AuditError(f"{f.where()}: {f}") from f
    out.sort(key=lambda m: m.seq)
    return out


def _read(lines: LineReader, ev_lines: LineReader, hand_over: Callable[[_Chunk], None],
          stop: _Stop, progress: Progress | None, total: int) -> None:
    """Read entries.jsonl and evidence.jsonl in step and hand the work over in chunks,
    until the end or ``stop`` holds a failure (put there by a chunk, or here)."""
    history = _History()
    first = history.first
    chunk = _Chunk(1)
    while True:
        try:
            raw = lines.read()
        except Failure as f:
            stop.here(f)
            break
        if raw is None:
            break
        n = lines.line
        ids = _ids(raw)
        if ids is None:
            stop.here(_entry_failure(lines, raw, "entry: not in canonical form; run verify"))
            break
        seq, message_id, profile, in_reply_to = ids
        if seq != n - 1:
            stop.here(_entry_failure(lines, raw, f"seq {seq}; run verify"))
            break
        i = len(chunk.entries)
        chunk.entries.append(raw)
        try:
            ev = ev_lines.read()
            if ev is None:
                chunk.gaps[i] = ("evidence.jsonl ends before entries.jsonl", ev_lines.line + 1)
            else:
                chunk.evidence.append(ev)
        except Failure as f:
            chunk.gaps[i] = (str(f), ev_lines.line)
        if message_id in first or in_reply_to in first:
            chunk.seen[i] = (history.seen(message_id) if message_id in first else None,
                             history.seen(in_reply_to) if in_reply_to in first else None)
        if message_id is not None and not history.add(message_id, profile):
            stop.here(_entry_failure(lines, raw, "entry: not in canonical form; run verify"))
            break
        if i + 1 >= CHUNK:
            hand_over(chunk)
            chunk = _Chunk(n + 1)
            if stop.first is not None:
                return
        if progress is not None and n % PROGRESS_EVERY == 0:
            progress(n, lines.bytes_read, total)
    if chunk.entries:
        # Lines before a failure found here may hold an earlier one.
        hand_over(chunk)
