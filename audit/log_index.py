"""An SQLite index of a transfer log for the log server and the auditors' pages.

Built by reading the log once, in seq order, through
:class:`audit.verifying.TreeCheck`, so that what the index holds is what
verified: the entries' fields (indexed for the pages' filters), their exact
bytes and evidence lines (for entry bundles and the entry page), and the
tlog tiles of the tree (for tile requests and proofs without a pass over the
leaves). A live log is followed up to its newest checkpoint; an export is
read whole. The first failure stops the index there and is kept, named, to
show on every page.

The index file is the server's own cache and holds no secret. An export's
index is rebuilt when its files change. A live log's index is kept across
restarts: a server started again takes it up where it stopped, once its
tiles give the root of the checkpoint it recorded and the log still holds
that checkpoint's notes and last entry, and verifies only what is new.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from audit.export_dir import (
    CHECKPOINTS,
    CheckpointGroup,
    Failure,
    checkpoint_groups,
    checkpoint_line,
)
from audit.log_sources import ExportLog, ReadableLog
from audit.verifying import TreeCheck
from keys import Checkpoint, NoteError, NoteVerifier, b64encode, open_checkpoint
from protocols.log_format import Entry
from protocols.tiles import (
    HASH,
    TILE_WIDTH,
    TileBuilder,
    TileStore,
    perfect_root,
    split_hashes,
)

T = TypeVar("T")
#: How many answers :meth:`LogIndex.cached` keeps (each a few kilobytes at most).
_CACHE_SIZE: Final = 256

#: Bump when the schema changes: an index of another version is rebuilt.
SCHEMA: Final = "infoshare-log-index/2"
#: Rows written per transaction while building.
_BATCH: Final = 5_000

#: ``progress(entries indexed, entries to index)``
IndexProgress = Callable[[int, int], None]

_DDL: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
  seq INTEGER PRIMARY KEY, at TEXT NOT NULL, message_id TEXT, kind TEXT,
  decision TEXT NOT NULL, reason TEXT, protocol TEXT, purpose TEXT,
  sender TEXT, sender_org TEXT, recipient TEXT, recipient_org TEXT, in_reply_to TEXT,
  consent TEXT, ground TEXT, subject_informed INTEGER, categories TEXT,
  publisher TEXT, registry_version INTEGER NOT NULL);
-- The exact bytes apart: counting and filtering scan only the narrow rows above.
CREATE TABLE IF NOT EXISTS raw (seq INTEGER PRIMARY KEY, body BLOB NOT NULL, evidence BLOB);
CREATE INDEX IF NOT EXISTS entries_at ON entries(at);
CREATE INDEX IF NOT EXISTS entries_message_id ON entries(message_id);
CREATE INDEX IF NOT EXISTS entries_purpose ON entries(purpose, at);
CREATE INDEX IF NOT EXISTS entries_decision ON entries(decision, reason);
CREATE INDEX IF NOT EXISTS entries_sender ON entries(sender);
CREATE INDEX IF NOT EXISTS entries_recipient ON entries(recipient);
CREATE INDEX IF NOT EXISTS entries_sender_org ON entries(sender_org);
CREATE INDEX IF NOT EXISTS entries_recipient_org ON entries(recipient_org);
CREATE INDEX IF NOT EXISTS entries_consent ON entries(consent, ground);
CREATE INDEX IF NOT EXISTS entries_publisher ON entries(publisher);
CREATE INDEX IF NOT EXISTS entries_kind ON entries(kind);
CREATE INDEX IF NOT EXISTS entries_version ON entries(registry_version);
CREATE TABLE IF NOT EXISTS tiles (
  level INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (level, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS directories (version INTEGER PRIMARY KEY, document BLOB NOT NULL);
"""

ENTRY_COLUMNS: Final = (
    "seq", "at", "message_id", "kind", "decision", "reason", "protocol", "purpose", "sender",
    "sender_org", "recipient", "recipient_org", "in_reply_to", "consent", "ground",
    "subject_informed", "categories", "publisher", "registry_version")


@dataclass(frozen=True)
class IndexState:
    """Where the index stands: how much of the log it holds and whether that verified."""

    size: int
    checkpoint: str | None
    checkpoint_size: int
    root: bytes | None
    origin: str | None
    key: str
    evidence: bool
    failure: str | None
    failure_where: str | None
    built_at: float

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def root_b64(self) -> str:
        return "" if self.root is None else b64encode(self.root)


def _org(address: str | None) -> str | None:
    return None if address is None else address.split("/")[0]


def _row(e: Entry) -> tuple[Any, ...]:
    consent = e.consent or {}
    return (e.seq, e.at, e.message_id, e.kind, e.decision, e.reason, e.protocol, e.purpose,
            e.sender, _org(e.sender), e.recipient, _org(e.recipient), e.in_reply_to,
            consent.get("status"), consent.get("ground"),
            None if e.subject_informed is None else int(e.subject_informed),
            None if e.data_categories is None else " ".join(e.data_categories),
            e.publisher, e.registry_version)


class LogIndex:
    """The index file: built and followed by one thread at a time, read by many.

    Each thread has its own SQLite connection; writes happen only in
    :meth:`catch_up`, under a lock, in transactions of a few thousand rows.
    """

    def __init__(self, path: Path | str, verifier: NoteVerifier) -> None:
        self.path = Path(path)
        self.verifier = verifier
        self._local = threading.local()
        self._lock = threading.Lock()
        self._check: TreeCheck | None = None
        self._builder = TileBuilder()
        self._notes_seen = 0
        self._notes_digest = _digest([])
        self._cache: dict[Hashable, tuple[tuple[str | None, str | None], Any]] = {}

    # --- connections --------------------------------------------------------------------

    def db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Who shared with whom is confidential: the file is its owner's alone (SQLite
            # gives its -wal and -shm files the same mode).
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # a cache: rebuilt if lost
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def forget_connections(self) -> None:
        """Drop this object's connections (after a fork: each process opens its own)."""
        self._local = threading.local()

    def _all_meta(self) -> dict[str, str]:
        return {str(r[0]): str(r[1]) for r in self.db().execute("SELECT key, value FROM meta")}

    def _meta(self, key: str) -> str | None:
        row = self.db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, conn: sqlite3.Connection, **values: str) -> None:
        conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                         list(values.items()))

    # --- building -----------------------------------------------------------------------

    def reset(self, fingerprint: str, *, evidence: bool, live: bool = False) -> None:
        """Empty the index for a fresh build from a source (``fingerprint`` names it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            conn = self.db()
            conn.execute("BEGIN IMMEDIATE")
            for table in ("meta", "entries", "raw", "tiles", "directories"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.executescript(_DDL)  # commits the drops first
            conn.execute("BEGIN IMMEDIATE")
            self._set_meta(conn, schema=SCHEMA, fingerprint=fingerprint, size="0",
                           key=self.verifier.line(), evidence=json.dumps(evidence),
                           built_at=repr(time.time()))
            conn.execute("COMMIT")
            # A served log has no files: failures name the entry and checkpoint.
            self._check = (TreeCheck(self.verifier, evidence=evidence, entries_file="entry",
                                     checkpoints_file="checkpoint") if live
                           else TreeCheck(self.verifier, evidence=evidence))
            self._builder = TileBuilder()
            self._notes_seen = 0
            self._notes_digest = _digest([])

    def resume(self, fingerprint: str, log: ReadableLog) -> bool:
        """Take up the index a previous start left of the live log ``fingerprint`` names;
        False when there is none to take up (then :meth:`reset`, and follow from seq 0).

        Only a finished index without a failure, under this log key, whose tiles give
        the root of the checkpoint it recorded, is taken up. The log must still hold
        what was verified (the same checkpoint notes up to that size, the same last
        entry); where it does not, the failure is recorded and named as any other.
        """
        with self._lock:
            try:
                meta = self._all_meta() if self.path.is_file() else {}
                if (meta.get("schema") != SCHEMA or meta.get("fingerprint") != fingerprint
                        or meta.get("key") != self.verifier.line() or "failure" in meta
                        or meta.get("size") != meta.get("checkpoint_size")):
                    return False
                size, notes_seen = int(meta["size"]), int(meta["notes_seen"])
                newest = CheckpointGroup(size, [(notes_seen, open_checkpoint(
                    meta["checkpoint"], self.verifier))], meta["checkpoint"])
                check = TreeCheck.resume(
                    self.verifier, self.tree(size).compact_range(), newest, evidence=True,
                    checkpoints=int(meta["checkpoints"]), entries_file="entry",
                    checkpoints_file="checkpoint")
                builder = TileBuilder.resume(size, self.tile)
                if not self._tiles_hang_together(size):
                    return False
            except (sqlite3.DatabaseError, KeyError, ValueError, NoteError, Failure):
                return False  # not an index to go on from: the log is read again
            self._check, self._builder = check, builder
            self._notes_seen, self._notes_digest = notes_seen, meta["notes_digest"]
            try:
                self._still_holds(log, size)
            except Failure as f:
                self._fail(f)
            return True

    def _tiles_hang_together(self, size: int) -> bool:
        """Whether every full tile's root is its hash one level up: then the frontier,
        which must give the signed root, vouches for every tile (about one hash per
        entry, a fraction of reading the log again)."""
        level = 0
        while full := size // TILE_WIDTH ** (level + 1):
            above = self.hashes(level + 1, 0, full)
            rows = self.db().execute("SELECT data FROM tiles WHERE level = ? AND idx < ? "
                                     "ORDER BY idx", (level, full))
            if [perfect_root(split_hashes(bytes(r[0]))) for r in rows] != above:
                return False
            level += 1
        return True

    def _still_holds(self, log: ReadableLog, size: int) -> None:
        if _digest(log.checkpoints(upto=size)) != self._notes_digest:
            raise Failure(f"the log's checkpoints up to size {size} are not those this server "
                          "verified before: one was changed or removed", file="checkpoint",
                          line=self._notes_seen)
        if size and next(log.entries(size - 1, size), None) != self.bodies(size - 1, size)[0]:
            raise Failure(f"entry {size - 1} is not the one this server verified before: the "
                          "log was changed, rolled back or replaced", file="entry", line=size,
                          seq=size - 1)

    def matches(self, fingerprint: str) -> bool:
        """Whether the file holds a finished index of the source so named."""
        if not self.path.is_file():
            return False
        try:
            return (self._meta("schema") == SCHEMA and self._meta("fingerprint") == fingerprint
                    and self._meta("finished") == "true")
        except sqlite3.DatabaseError:
            return False

    def build_export(self, export: ExportLog, progress: IndexProgress | None = None, *,
                     force: bool = False) -> None:
        """Index an export whole, unless the index already holds it as its files are now."""
        fingerprint = export.fingerprint()
        if not force and self.matches(fingerprint):
            return
        self.reset(fingerprint, evidence=export.has_evidence)
        assert self._check is not None
        with self._lock:
            try:
                self._check.add_checkpoints(checkpoint_groups(
                    export.checkpoint_lines(), self.verifier))
                self._index(export.entries(), export.evidence_lines(), export.has_evidence,
                            None, progress)
                self._check.finish()
            except Failure as f:
                self._fail(f)
            self._finish_state(export_done=True)

    def follow(self, log: ReadableLog, progress: IndexProgress | None = None) -> bool:
        """Index a live log's entries up to its newest checkpoint; True if it grew.

        The first call (or one after :meth:`reset`) reads from seq 0. After a
        failure the index stays where it stopped.
        """
        with self._lock:
            if self._check is None or self._meta("failure") is not None:
                return False
            latest = log.latest_checkpoint()
            if latest is None:
                return False
            target = Checkpoint.parse(latest[: latest.rfind("\n\n") + 1]).size
            if target <= self._check.size and self._notes_seen:
                return False
            start = self._check.size
            try:
                notes = log.checkpoints(upto=target)
                fresh = notes[self._notes_seen:]
                numbered = ((self._notes_seen + i + 1, checkpoint_line(n))
                            for i, n in enumerate(fresh))
                self._check.add_checkpoints(checkpoint_groups(
                    numbered, self.verifier, origin=self._check.origin,
                    after=self._check.last_good, file="checkpoint"))
                self._notes_seen, self._notes_digest = len(notes), _digest(notes)
                self._index(log.entries(start, target), log.evidence_lines(start, target),
                            self._check.evidence, target - start, progress)
                if self._check.size != target:
                    raise Failure(f"the log holds {self._check.size} entries where its "
                                  f"checkpoint covers {target}: entries were removed",
                                  file="checkpoint", line=self._notes_seen)
            except Failure as f:
                self._fail(f)
            self._finish_state(export_done=False)
            return self._check.size > start

    def _index(self, entries: Iterator[bytes], evidence: Iterator[bytes], has_evidence: bool,
               total: int | None, progress: IndexProgress | None) -> None:
        assert self._check is not None
        check = self._check
        rows: list[tuple[Any, ...]] = []
        raws: list[tuple[int, bytes, bytes | None]] = []
        tiles: dict[tuple[int, int], bytes] = {}
        done = 0

        def flush() -> None:
            conn = self.db()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"INSERT INTO entries VALUES ({', '.join('?' * 19)})", rows)
            conn.executemany("INSERT INTO raw VALUES (?, ?, ?)", raws)
            conn.executemany("INSERT OR REPLACE INTO tiles(level, idx, data) VALUES (?, ?, ?)",
                             [(lv, ix, data) for (lv, ix), data in tiles.items()])
            self._set_meta(conn, size=str(check.size))
            conn.execute("COMMIT")
            rows.clear()
            raws.clear()
            tiles.clear()

        try:
            for raw in entries:
                line = next(evidence, None) if has_evidence else None
                entry = check.take(raw, line)
                rows.append(_row(entry))
                raws.append((entry.seq, raw, line))
                for level, index, data in self._builder.append(entry.leaf_hash):
                    tiles[(level, index)] = data
                check.settle()
                done += 1
                if len(rows) >= _BATCH:
                    flush()
                    if progress is not None:
                        progress(done, total or 0)
        finally:
            if rows:
                flush()
        if progress is not None:
            progress(done, total or done)

    def _fail(self, f: Failure) -> None:
        conn = self.db()
        conn.execute("BEGIN IMMEDIATE")
        self._set_meta(conn, failure=str(f), failure_where=_where(f))
        conn.execute("COMMIT")

    def _finish_state(self, *, export_done: bool) -> None:
        assert self._check is not None
        check = self._check
        values = {"checkpoints": str(check.checkpoints), "notes_seen": str(self._notes_seen),
                  "notes_digest": self._notes_digest}
        if check.newest is not None:
            values["checkpoint"] = check.newest_note or ""
            values["checkpoint_size"] = str(check.newest.size)
            values["root"] = check.newest.items[0][1].root.hex()
        if check.origin is not None:
            values["origin"] = check.origin
        if export_done:
            values["finished"] = "true"
        conn = self.db()
        conn.execute("BEGIN IMMEDIATE")
        self._set_meta(conn, **values)
        conn.execute("COMMIT")

    # --- reading ------------------------------------------------------------------------

    def state(self) -> IndexState:
        meta = self._all_meta()
        root = meta.get("root")
        return IndexState(
            size=int(meta.get("size", "0")), checkpoint=meta.get("checkpoint"),
            checkpoint_size=int(meta.get("checkpoint_size", "0")),
            root=None if root is None else bytes.fromhex(root), origin=meta.get("origin"),
            key=meta.get("key", ""), evidence=meta.get("evidence") == "true",
            failure=meta.get("failure"), failure_where=meta.get("failure_where"),
            built_at=float(meta.get("built_at", "0")))

    def entry_row(self, seq: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db().execute(
            "SELECT * FROM entries JOIN raw USING (seq) WHERE seq = ?", (seq,)).fetchone()
        return row

    def seqs_of(self, message_id: str) -> list[int]:
        return [int(r[0]) for r in self.db().execute(
            "SELECT seq FROM entries WHERE message_id = ? ORDER BY seq", (message_id,))]

    def bodies(self, start: int, end: int) -> list[bytes]:
        return [bytes(r[0]) for r in self.db().execute(
            "SELECT body FROM raw WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end))]

    def tile(self, level: int, index: int) -> bytes:
        row = self.db().execute("SELECT data FROM tiles WHERE level = ? AND idx = ?",
                                (level, index)).fetchone()
        return b"" if row is None else bytes(row[0])

    def hashes(self, level: int, start: int, end: int) -> list[bytes]:
        """Stored hashes ``start`` to ``end - 1`` of a level (a :data:`ReadHashes`)."""
        out: list[bytes] = []
        first, last = start // TILE_WIDTH, (end - 1) // TILE_WIDTH
        for r in self.db().execute(
                "SELECT idx, data FROM tiles WHERE level = ? AND idx BETWEEN ? AND ? "
                "ORDER BY idx", (level, first, last)):
            base = int(r[0]) * TILE_WIDTH
            lo, hi = max(start, base) - base, min(end, base + TILE_WIDTH) - base
            out += split_hashes(bytes(r[1])[lo * HASH:hi * HASH])
        if len(out) != end - start:
            raise ValueError(f"the index holds no hashes {start}..{end - 1} at level {level}")
        return out

    def tree(self, size: int | None = None) -> TileStore:
        """Subtree hashes and proofs of the checked tree (default: the checkpoint's size)."""
        return TileStore(self.hashes, self.state().checkpoint_size if size is None else size)

    def directory(self, version: int) -> bytes | None:
        row = self.db().execute("SELECT document FROM directories WHERE version = ?",
                                (version,)).fetchone()
        return None if row is None else bytes(row[0])

    def keep_directory(self, version: int, document: bytes) -> None:
        with self._lock:
            self.db().execute("INSERT OR REPLACE INTO directories(version, document) "
                              "VALUES (?, ?)", (version, document))

    def registry_versions(self) -> list[int]:
        return [int(r[0]) for r in self.db().execute(
            "SELECT DISTINCT registry_version FROM entries ORDER BY 1")]

    def values(self, column: str) -> list[str]:
        """The distinct values of an indexed column, for the filters' choices."""
        if column not in ENTRY_COLUMNS:
            raise ValueError(f"no column {column}")
        return self.cached(("values", column), lambda: [str(r[0]) for r in self.db().execute(
            f"SELECT DISTINCT {column} FROM entries WHERE {column} IS NOT NULL ORDER BY 1")])

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, kept until the index grows or is rebuilt.

        Every page shows the filters' choices, and a charts page asks for the same
        counts once for its tables and once per chart: each is a scan of the index.
        """
        version = (self._meta("size"), self._meta("built_at"))
        known = self._cache.get(key)
        if known is not None and known[0] == version:
            return cast(T, known[1])
        value = compute()
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = (version, value)
        return value


def _digest(notes: list[str]) -> str:
    """One hash of a log's checkpoint notes, to see at a restart that they are unchanged."""
    return hashlib.sha256("\0".join(notes).encode("utf-8")).hexdigest()


def _where(f: Failure) -> str:
    parts = []
    if f.file is not None:
        parts.append(f.where())
    if f.seq is not None:
        parts.append(f"seq {f.seq}")
    return ", ".join(parts)


__all__ = ["CHECKPOINTS", "ENTRY_COLUMNS", "IndexState", "LogIndex"]
