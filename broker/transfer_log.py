"""The transfer log: append-only entries (wire spec 6.1), their evidence, tree and checkpoints.

Storage is SQLAlchemy Core on SQLite (a file, WAL, ``synchronous=FULL``) or
PostgreSQL (``postgresql+psycopg://``). Tables: ``entries`` (the exact entry
bytes and their leaf hashes), ``evidence`` (the exact evidence line of each
entry, with its publisher and body hash to match redeliveries by),
``frontier`` (the tree's compact range after the last committed entry) and
``checkpoints`` (signed notes by tree size).

Invariants:

- An entry is its bytes: the compact JSON of wire spec 6.1, keys in the
  spec's order, ASCII only. There is exactly one byte string per entry;
  :meth:`Entry.from_bytes` refuses any other, and nothing that :class:`Entry`
  would refuse can be appended. Its evidence line is kept as the exact bytes
  whose SHA-256 the entry holds, so an export writes them byte for byte.
- ``seq`` runs 0..n-1 without gaps. Appends happen in one write transaction
  holding the log's lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL
  ``pg_advisory_xact_lock``), which reads the frontier inside the lock, so
  several routers (threads or processes, one object each or shared) can
  append side by side.
- The entries of a batch, their evidence and the new frontier commit in one
  transaction, durably; a batch left by an exception leaves nothing. An
  entry is visible only once committed.
- Nothing updates or deletes ``entries``, ``evidence`` or ``checkpoints``;
  triggers refuse it in the database too. Only the frontier row changes.
- Appending and the root of the current tree never rescan the log: the
  frontier holds O(log n) hashes. ``subtrees`` keeps the root of every
  complete subtree of 256**L leaves (L >= 1), written in the transaction that
  completes it, so any root or proof reads a few rows per level
  (:class:`protocols.tiles.TileStore`), never every leaf.
- Checkpoint sizes only grow; each is signed for the size and root of the
  same locked transaction. A batch signs one itself whenever 1,000 entries
  follow the last checkpoint, so no more than 1,000 ever do; and
  :meth:`TransferLog.checkpoint_if_due` signs one 10 s after the last when
  entries have arrived since (wire spec 6.2). The caller passes the time.

Errors are :class:`TransferLogError` (a :class:`broker.errors.BrokerError`);
their messages name sequence numbers and hashes, never entry contents.
"""

from __future__ import annotations

import enum
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from broker.errors import BrokerError
from keys import Checkpoint, NoteSigner, NoteVerifier
from protocols import merkle
from protocols.log_format import Entry, EntryDraft, Evidence
from protocols.policy import LoggedMessage
from protocols.tiles import TILE_HEIGHT, TileStore

__all__ = [
    "ANY_PUBLISHER",
    "CHECKPOINT_EVERY",
    "CHECKPOINT_INTERVAL",
    "LogBatch",
    "LogUnavailable",
    "TransferLog",
    "TransferLogError",
]

CHECKPOINT_EVERY: Final = 1000
CHECKPOINT_INTERVAL: Final = timedelta(seconds=10)
#: The advisory lock that serialises writers of the log on PostgreSQL ("info").
_LOCK_KEY: Final = 0x696E666F
#: How long a batch's view of the log stands for it in :meth:`TransferLog.checkpoint_if_due`.
_SEEN_FOR: Final = 1.0
#: Rows per query when streaming entries, evidence or leaf hashes.
_PAGE: Final = 10_000


class _Any(enum.Enum):
    ANY = "any"


#: ``find_logged(..., publisher=ANY_PUBLISHER)`` matches whoever published.
ANY_PUBLISHER: Final = _Any.ANY


class TransferLogError(BrokerError):
    """The log cannot be opened or read as asked, or a request is out of range."""

    code = "transfer_log_error"


class LogUnavailable(TransferLogError):
    """The database cannot be used just now (server away, connection lost, disk full,
    locked): the same request may succeed later, and nothing of it was written."""

    code = "transfer_log_unavailable"


#: Driver errors of the database itself rather than of a request: retrying later is right.
_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError,
                sa.exc.TimeoutError)


def _failure(what: str, e: sa.exc.SQLAlchemyError) -> TransferLogError:
    kind = LogUnavailable if isinstance(e, _UNAVAILABLE) else TransferLogError
    return kind(f"transfer log {what} failed ({type(e).__name__})")


# --- tables ----------------------------------------------------------------------------

_meta = sa.MetaData()
# On SQLite "INTEGER PRIMARY KEY" makes seq the rowid: no second index.
_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_entries = sa.Table(
    "entries", _meta,
    sa.Column("seq", _Seq, primary_key=True, autoincrement=False),
    sa.Column("message_id", sa.String(36), nullable=True),
    sa.Column("header_sha256", sa.String(64), nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Index("entries_message_id", "message_id"),
    # Bodies that could not be read have no message id; their redeliveries are
    # found by header_sha256 (the body's hash). Only theirs: every other entry is
    # found by its message id, and a second index of random keys on every entry
    # would cost each append another page written (logs made before keep their
    # index of every entry's header_sha256, which serves the same queries).
    sa.Index("entries_unreadable_sha256", "header_sha256",
             sqlite_where=sa.text("message_id IS NULL"),
             postgresql_where=sa.text("message_id IS NULL")),
)
_evidence = sa.Table(
    "evidence", _meta,
    sa.Column("seq", _Seq, primary_key=True, autoincrement=False),
    # The publisher and body hash again, beside the line, for matching redeliveries.
    sa.Column("publisher", sa.String(255), nullable=True),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("line", sa.LargeBinary, nullable=False),
)
_frontier = sa.Table(
    "frontier", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("hashes", sa.LargeBinary, nullable=False),
)
#: The root of leaves [idx * 256**level, (idx + 1) * 256**level), for level >= 1 (level 0
#: is ``entries.leaf_hash``): the tiles of C2SP tlog-tiles above the leaves.
_subtrees = sa.Table(
    "subtrees", _meta,
    sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)
_checkpoints = sa.Table(
    "checkpoints", _meta,
    sa.Column("size", _Seq, primary_key=True, autoincrement=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)
_APPEND_ONLY = ("entries", "evidence", "checkpoints", "subtrees")


def _append_only_ddl(dialect: str) -> list[str]:
    """Triggers that refuse UPDATE and DELETE: a guard against accidents, not against
    someone who can drop them (the tree and its signed checkpoints are that guard)."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER IF NOT EXISTS {t}_no_{op.lower()} BEFORE {op} ON {t} "
            f"BEGIN SELECT RAISE(ABORT, 'the transfer log is append-only'); END"
            for t in _APPEND_ONLY for op in ("UPDATE", "DELETE")]
    return [
        "CREATE OR REPLACE FUNCTION infoshare_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'the transfer log is append-only'; END $$ LANGUAGE plpgsql",
        *(f"CREATE OR REPLACE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
          f"FOR EACH ROW EXECUTE FUNCTION infoshare_append_only()" for t in _APPEND_ONLY),
    ]


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    # 128 MiB of pages rather than 2: appends touch a page of the message id index
    # each (random keys), and a large log's index should stay in the cache.
    cur.execute("PRAGMA cache_size=-131072")
    cur.close()


def _engine_for(url: str, *, must_exist: bool) -> Engine:
    if "://" not in url:
        url = f"sqlite:///{url}"  # a plain path is a SQLite file
    parsed = sa.engine.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            # Each pooled connection would get its own empty database.
            raise TransferLogError("the transfer log on SQLite needs a file")
        if must_exist and not Path(parsed.database).is_file():
            # Connecting would create an empty database where a log was expected.
            raise TransferLogError("there is no transfer log at this URL")
        _create_private(Path(parsed.database))
        # The driver must not begin transactions itself: writers begin with
        # BEGIN IMMEDIATE, which takes the write lock before reading the frontier.
        engine = sa.create_engine(parsed, isolation_level="AUTOCOMMIT",
                                  connect_args={"check_same_thread": False, "timeout": 60})
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise TransferLogError("the transfer log runs on SQLite or PostgreSQL")
    # A server that is away must fail a connection attempt quickly: the router holds
    # its messages and tries again rather than hanging on one attempt.
    return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def _create_private(path: Path) -> None:
    """Create a new SQLite file 0600: SQLite gives its -wal and -shm files the mode of
    the database file, so none of the three is ever readable by others."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as e:
        raise TransferLogError(f"cannot create the transfer log file ({e.strerror})") from e


def _is_due(size: int, last_size: int | None, last_at: str | None, now: datetime) -> bool:
    """Whether a checkpoint is due (wire spec 6.2) for a log of ``size`` whose newest
    checkpoint has ``last_size`` and was made at ``last_at`` (None: there is none)."""
    if last_size is None or last_at is None:
        return size > 0
    grown = size - last_size
    if grown <= 0:
        return False
    return grown >= CHECKPOINT_EVERY or (
        now - datetime.fromisoformat(last_at) >= CHECKPOINT_INTERVAL)


def _aware(now: datetime) -> datetime:
    # Times are UTC throughout; a naive one is taken as UTC rather than local time.
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _check_schema(conn: Connection) -> None:
    columns = {c["name"] for c in sa.inspect(conn).get_columns("evidence")}
    if "line" not in columns:
        raise TransferLogError(
            "this transfer log was written before the wire spec amendments of 2026-11-30 "
            "(17-field entries, evidence without lines) and cannot be read or extended: "
            "start a new log at another URL")


def _read_frontier(conn: Connection) -> merkle.CompactRange:
    row = conn.execute(sa.select(_frontier.c.hashes).where(_frontier.c.id == 1)).first()
    if row is None:
        raise TransferLogError("the transfer log has no frontier row: not initialised")
    try:
        return merkle.CompactRange.from_bytes(bytes(row.hashes))
    except ValueError as e:
        raise TransferLogError("the transfer log's frontier row is damaged") from e


def _find(conn: Connection, message_id: str) -> list[Entry]:
    rows = conn.execute(sa.select(_entries.c.body).where(_entries.c.message_id == message_id)
                        .order_by(_entries.c.seq)).all()
    return [Entry.from_bytes(bytes(r.body)) for r in rows]


def _find_logged(conn: Connection, message_id: str | None, header_sha256: str,
                 body_sha256: str, publisher: str | _Any | None) -> Entry | None:
    mid = (_entries.c.message_id.is_(None) if message_id is None
           else _entries.c.message_id == message_id)
    where = [mid, _entries.c.header_sha256 == header_sha256,
             _evidence.c.body_sha256 == body_sha256]
    if publisher is None:
        where.append(_evidence.c.publisher.is_(None))
    elif not isinstance(publisher, _Any):
        where.append(_evidence.c.publisher == publisher)
    row = conn.execute(sa.select(_entries.c.body)
                       .join(_evidence, _evidence.c.seq == _entries.c.seq)
                       .where(*where).order_by(_entries.c.seq).limit(1)).first()
    return None if row is None else Entry.from_bytes(bytes(row.body))


def _latest_checkpoint(conn: Connection) -> Any:
    return conn.execute(sa.select(_checkpoints.c.size, _checkpoints.c.note,
                                  _checkpoints.c.created_at)
                        .order_by(_checkpoints.c.size.desc()).limit(1)).first()


# --- writing ---------------------------------------------------------------------------


class LogBatch:
    """Appends inside one locked write transaction. Not thread-safe: one batch, one thread.

    ``find`` and ``find_logged`` see the committed log and this batch's own
    appends, so the policy judges each message against everything before it.
    """

    def __init__(self, conn: Connection, frontier: merkle.CompactRange,
                 sign: Callable[[int, bytes], str] | None, last_checkpoint: int) -> None:
        self._conn = conn
        self._frontier = frontier
        self._sign = sign
        self._last_checkpoint = last_checkpoint
        self._pending: list[tuple[Entry, Evidence, bytes]] = []
        self._by_mid: dict[str | None, list[int]] = {}
        self._checkpoints: list[dict[str, Any]] = []
        self._subtrees: list[dict[str, Any]] = []
        # Committed entries by message id, loaded by ``prefetch``: entry, body hash, publisher.
        self._known: dict[str, list[tuple[Entry, str, str | None]]] = {}

    @property
    def size(self) -> int:
        """The log's size including this batch's appends."""
        return self._frontier.size

    def prefetch(self, message_ids: Iterable[str]) -> None:
        """Load the committed entries of these message ids, a few queries for all.

        The router passes every message id and ``in_reply_to`` of a batch, so
        deciding a batch costs a handful of queries instead of two per message.
        Committed entries cannot change while the batch holds the log's lock.
        """
        wanted = sorted({m for m in message_ids if m not in self._known})
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            rows = self._conn.execute(
                sa.select(_entries.c.body, _evidence.c.body_sha256, _evidence.c.publisher)
                .join(_evidence, _evidence.c.seq == _entries.c.seq)
                .where(_entries.c.message_id.in_(chunk)).order_by(_entries.c.seq)).all()
            for mid in chunk:
                self._known[mid] = []
            for r in rows:
                e = Entry.from_bytes(bytes(r.body))
                self._known[e.message_id or ""].append((e, r.body_sha256, r.publisher))

    def find(self, message_id: str) -> list[LoggedMessage]:
        """Entries naming ``message_id``, oldest first (a ``policy.LogView``)."""
        if message_id in self._known:
            found = [e.logged() for e, _, _ in self._known[message_id]]
        else:
            found = [e.logged() for e in _find(self._conn, message_id)]
        found += [self._pending[i][0].logged() for i in self._by_mid.get(message_id, ())]
        return found

    def find_logged(self, message_id: str | None, header_sha256: str, body_sha256: str,
                    publisher: str | _Any | None = ANY_PUBLISHER) -> Entry | None:
        """The entry of an earlier delivery of this very message (wire spec 6.3), or None.

        Matches on message id (``None`` for a body that could not be read),
        header hash and body hash, and, unless ``publisher`` is
        ``ANY_PUBLISHER``, on the AMQP user that published it: a copy of
        another unit's envelope published by someone else is then never taken
        for a redelivery.
        """
        if message_id is not None and message_id in self._known:
            found = next((e for e, body, pub in self._known[message_id]
                          if e.header_sha256 == header_sha256 and body == body_sha256
                          and (isinstance(publisher, _Any) or pub == publisher)), None)
        else:
            found = _find_logged(self._conn, message_id, header_sha256, body_sha256, publisher)
        if found is not None:
            return found
        for i in self._by_mid.get(message_id, ()):
            e, ev, _ = self._pending[i]
            if (e.header_sha256 == header_sha256 and ev.body_sha256 == body_sha256
                    and (isinstance(publisher, _Any) or ev.publisher == publisher)):
                return e
        return None

    def append(self, draft: EntryDraft, evidence: Evidence) -> Entry:
        """Give ``draft`` the next seq, bind ``evidence`` to it and add both; committed
        when the batch exits cleanly.

        Raises:
            EntryFormatError: the draft is not an entry of wire spec 6.1, or the
                evidence does not fit it.
        """
        if not isinstance(evidence, Evidence):
            raise TypeError("evidence must be an Evidence")
        entry, line = Entry.with_evidence(draft, self._frontier.size, evidence)
        self._append_leaf(entry.leaf_hash)
        self._by_mid.setdefault(entry.message_id, []).append(len(self._pending))
        self._pending.append((entry, evidence, line))
        size = self._frontier.size
        if self._sign is not None and size - self._last_checkpoint >= CHECKPOINT_EVERY:
            # Signed here, in the batch's transaction, so that no more than 1,000
            # entries ever follow the last checkpoint (wire spec 6.2), however
            # the router sizes its batches. The entry's time dates it.
            self._checkpoints.append({
                "size": size, "note": self._sign(size, self._frontier.root()),
                "created_at": entry.time.isoformat()})
            self._last_checkpoint = size
        return entry

    def _append_leaf(self, leaf: bytes) -> None:
        size = self._frontier.size + 1
        if size % (1 << TILE_HEIGHT):
            self._frontier.append(leaf)
            return
        completed: list[tuple[int, bytes]] = []
        self._frontier.append(leaf, completed)
        self._subtrees += [{"level": height // TILE_HEIGHT, "idx": (size >> height) - 1,
                            "hash": h} for height, h in completed if height % TILE_HEIGHT == 0]

    def _flush(self) -> None:
        if not self._pending:
            return
        # One executemany per table in the driver's own form: the rows are plain
        # tuples, so no statement is compiled or cached per batch (psycopg 3
        # pipelines them; sqlite3 steps one prepared statement).
        m = "?" if self._conn.dialect.paramstyle == "qmark" else "%s"
        run = self._conn.exec_driver_sql
        run(f"INSERT INTO entries (seq, message_id, header_sha256, leaf_hash, body) "
            f"VALUES ({m}, {m}, {m}, {m}, {m})",
            [(e.seq, e.message_id, e.header_sha256, e.leaf_hash, e.to_bytes())
             for e, _, _ in self._pending])
        run(f"INSERT INTO evidence (seq, publisher, body_sha256, line) "
            f"VALUES ({m}, {m}, {m}, {m})",
            [(e.seq, ev.publisher, ev.body_sha256, line) for e, ev, line in self._pending])
        run(f"UPDATE frontier SET size = {m}, hashes = {m} WHERE id = 1",
            (self._frontier.size, self._frontier.to_bytes()))
        if self._checkpoints:
            self._conn.execute(_checkpoints.insert(), self._checkpoints)
        if self._subtrees:
            self._conn.execute(_subtrees.insert(), self._subtrees)


# --- the log ---------------------------------------------------------------------------


class TransferLog:
    """The transfer log on SQLite or PostgreSQL. Thread-safe: every call takes its own
    connection from the pool, and writers serialise on the database's lock."""

    def __init__(self, engine: Engine, *, signer: NoteSigner | None, origin: str) -> None:
        self._engine = engine
        self._signer = signer
        self._origin = origin
        self._sqlite = engine.dialect.name == "sqlite"
        self._has_subtrees: bool | None = None
        #: (when, size, newest checkpoint's size and time) as this object's last batch
        #: committed them; trusted for :data:`_SEEN_FOR` seconds, since other writers
        #: may append meanwhile.
        self._seen: tuple[float, int, int | None, str | None] | None = None

    @classmethod
    def open(cls, url: str, *, signer: NoteSigner | None, origin: str) -> TransferLog:
        """Open the log at ``url`` (a SQLAlchemy URL or a SQLite file path).

        With a ``signer`` the tables are created if missing. Without one the
        log is opened to read (and to prove inclusion): it must exist, and
        :meth:`checkpoint` refuses.

        Raises:
            TransferLogError: the database cannot be reached, set up or found.
        """
        if signer is not None and (not origin or "\n" in origin):
            raise TransferLogError("a log that signs checkpoints needs a one-line origin")
        engine = _engine_for(url, must_exist=signer is None)
        log = cls(engine, signer=signer, origin=origin)
        try:
            if signer is None:
                with engine.connect() as conn:
                    if not sa.inspect(conn).has_table("frontier"):
                        raise TransferLogError("there is no transfer log at this URL")
                    _check_schema(conn)
                    _read_frontier(conn)
            else:
                with log._write() as conn:
                    _meta.create_all(conn)
                    _check_schema(conn)
                    for statement in _append_only_ddl(engine.dialect.name):
                        conn.exec_driver_sql(statement)
                    if conn.execute(sa.select(_frontier.c.id)).first() is None:
                        conn.execute(_frontier.insert().values(
                            id=1, size=0, hashes=merkle.CompactRange().to_bytes()))
                    _fill_subtrees(conn)
        except TransferLogError:
            engine.dispose()
            raise
        except sa.exc.SQLAlchemyError as e:
            engine.dispose()
            raise TransferLogError(
                f"cannot open the transfer log ({type(e).__name__})") from e
        return log

    def close(self) -> None:
        self._engine.dispose()

    def _tiled(self, conn: Connection) -> bool:
        """Whether the log keeps subtree hashes (one opened only to read may predate them
        until a writer opens it)."""
        if self._has_subtrees is None:
            self._has_subtrees = sa.inspect(conn).has_table("subtrees")
        return self._has_subtrees

    def backup(self, target: Path) -> int:
        """Copy a log on SQLite to a new file (0600) while routers keep writing, with
        SQLite's online backup: the copy is the log as of one committed transaction.
        Returns the number of entries in the copy.

        Raises:
            TransferLogError: the log is on PostgreSQL (back it up with pg_dump), or
                ``target`` exists or cannot be written.
        """
        if not self._sqlite:
            raise TransferLogError("the log is on PostgreSQL: back it up with pg_dump")
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as e:
            raise TransferLogError(f"{target}: cannot create the backup ({e.strerror})") from e
        copy = sqlite3.connect(target)
        try:
            with self._engine.connect() as conn:
                conn.connection.dbapi_connection.backup(copy)  # type: ignore[union-attr]
            (size,) = copy.execute("SELECT size FROM frontier").fetchone()
        except (sqlite3.Error, sa.exc.SQLAlchemyError) as e:
            raise TransferLogError(f"the backup failed ({type(e).__name__})") from e
        finally:
            copy.close()
        return int(size)

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def can_sign(self) -> bool:
        return self._signer is not None

    @property
    def verifier(self) -> NoteVerifier:
        """The note verifier key of this log's checkpoints.

        Raises:
            TransferLogError: the log was opened without a signer.
        """
        if self._signer is None:
            raise TransferLogError("the transfer log was opened without its key")
        return self._signer.verifier

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A transaction holding the log's write lock; commits on a clean exit."""
        try:
            with self._engine.connect() as conn:
                if self._sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    try:
                        yield conn
                    except BaseException:
                        conn.exec_driver_sql("ROLLBACK")
                        raise
                    conn.exec_driver_sql("COMMIT")
                else:
                    with conn.begin():
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"),
                                     {"k": _LOCK_KEY})
                        # Durable whatever the server's default: an entry is
                        # acknowledged to the router only once it is on disk.
                        conn.exec_driver_sql("SET LOCAL synchronous_commit TO on")
                        yield conn
        except sa.exc.SQLAlchemyError as e:
            raise _failure("write", e) from e

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as e:
            raise _failure("read", e) from e

    @contextmanager
    def batch(self) -> Iterator[LogBatch]:
        """One write transaction holding the log's lock; commits durably on a clean exit
        and rolls back (leaving nothing) on an exception.

        Raises:
            TransferLogError: the database failed; nothing of the batch is logged.
        """
        with self._write() as conn:
            last = _latest_checkpoint(conn)
            b = LogBatch(conn, _read_frontier(conn), None if self._signer is None else self._sign,
                         0 if last is None else int(last.size))
            yield b
            b._flush()
        signed = b._checkpoints[-1] if b._checkpoints else None
        if signed is not None:
            self._seen = (time.monotonic(), b.size, signed["size"], signed["created_at"])
        else:
            self._seen = (time.monotonic(), b.size, None if last is None else int(last.size),
                          None if last is None else str(last.created_at))

    def _sign(self, size: int, root: bytes) -> str:
        assert self._signer is not None
        return self._signer.sign(Checkpoint(self._origin, size, root).text())

    # --- checkpoints ------------------------------------------------------------------

    def checkpoint_if_due(self, now: datetime) -> str | None:
        """Sign a checkpoint when 1,000 entries arrived since the last one, or 10 s passed
        since it and any entry arrived (wire spec 6.2). Returns the new note, else None.

        Raises:
            TransferLogError: the log was opened without its key, or the database failed.
        """
        now = _aware(now)
        seen = self._seen
        # What this object's last batch saw, a moment ago: the router asks after every
        # batch, and most often nothing is due.
        if (seen is not None and time.monotonic() - seen[0] < _SEEN_FOR
                and not _is_due(*seen[1:], now)):
            return None
        # A cheap look first without the lock: most calls find nothing due.
        with self._read() as conn:
            if not self._due(conn, now):
                return None
        with self._write() as conn:
            if not self._due(conn, now):  # another writer may have signed meanwhile
                return None
            return self._sign_current(conn, now)

    def _due(self, conn: Connection, now: datetime) -> bool:
        last = _latest_checkpoint(conn)
        return _is_due(_read_frontier(conn).size, None if last is None else int(last.size),
                       None if last is None else str(last.created_at), now)

    def checkpoint(self, now: datetime) -> str:
        """A signed checkpoint of the current size: a new one, or the last if it has that size.

        Raises:
            TransferLogError: the log was opened without its key, or the database failed.
        """
        with self._write() as conn:
            return self._sign_current(conn, _aware(now))

    def _sign_current(self, conn: Connection, now: datetime) -> str:
        if self._signer is None:
            raise TransferLogError("the transfer log was opened without its key: cannot sign")
        frontier = _read_frontier(conn)
        last = _latest_checkpoint(conn)
        if last is not None and int(last.size) == frontier.size:
            return str(last.note)
        note = self._sign(frontier.size, frontier.root())
        conn.execute(_checkpoints.insert().values(size=frontier.size, note=note,
                                                  created_at=now.isoformat()))
        return note

    def checkpoints(self, upto: int | None = None) -> list[str]:
        """Every checkpoint note, oldest (smallest) first; only sizes <= ``upto`` if given."""
        q = sa.select(_checkpoints.c.note).order_by(_checkpoints.c.size)
        if upto is not None:
            q = q.where(_checkpoints.c.size <= upto)
        with self._read() as conn:
            return [str(r.note) for r in conn.execute(q)]

    def latest_checkpoint(self) -> str | None:
        with self._read() as conn:
            last = _latest_checkpoint(conn)
        return None if last is None else str(last.note)

    def checkpoint_at(self, size: int) -> str | None:
        with self._read() as conn:
            row = conn.execute(sa.select(_checkpoints.c.note)
                               .where(_checkpoints.c.size == size)).first()
        return None if row is None else str(row.note)

    # --- reading ----------------------------------------------------------------------

    def find(self, message_id: str) -> list[LoggedMessage]:
        """Committed entries naming ``message_id``, oldest first (a ``policy.LogView``)."""
        with self._read() as conn:
            return [e.logged() for e in _find(conn, message_id)]

    def find_entries(self, message_id: str) -> list[Entry]:
        """Committed entries naming ``message_id``, oldest first."""
        with self._read() as conn:
            return _find(conn, message_id)

    def find_logged(self, message_id: str | None, header_sha256: str, body_sha256: str,
                    publisher: str | _Any | None = ANY_PUBLISHER) -> Entry | None:
        """Like :meth:`LogBatch.find_logged`, over committed entries."""
        with self._read() as conn:
            return _find_logged(conn, message_id, header_sha256, body_sha256, publisher)

    def size(self) -> int:
        with self._read() as conn:
            return _read_frontier(conn).size

    def entry(self, seq: int) -> Entry:
        """Raises: TransferLogError: no entry ``seq``."""
        with self._read() as conn:
            row = conn.execute(sa.select(_entries.c.body).where(_entries.c.seq == seq)).first()
        if row is None:
            raise TransferLogError(f"no entry {seq}")
        return Entry.from_bytes(bytes(row.body))

    def evidence(self, seq: int) -> Evidence:
        """Raises: TransferLogError: no entry ``seq``."""
        with self._read() as conn:
            row = conn.execute(sa.select(_evidence.c.line)
                               .where(_evidence.c.seq == seq)).first()
        if row is None:
            raise TransferLogError(f"no evidence for entry {seq}")
        return Evidence.from_line(bytes(row.line))[1]

    def _pages(self, table: sa.Table, columns: Sequence[sa.ColumnElement[Any]], start: int,
               end: int | None) -> Iterator[Any]:
        # Short queries by seq range rather than one long cursor: entries never
        # change, so pages are consistent, and no transaction stays open while
        # the caller works (a long reader would hold back SQLite's WAL).
        size = self.size()
        stop = size if end is None else min(end, size)
        pos = max(0, start)
        while pos < stop:
            upto = min(stop, pos + _PAGE)
            with self._read() as conn:
                rows = conn.execute(sa.select(*columns).where(
                    table.c.seq >= pos, table.c.seq < upto).order_by(table.c.seq)).all()
            if len(rows) != upto - pos:
                raise TransferLogError(f"entries {pos}..{upto - 1} are not all present")
            yield from rows
            pos = upto

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The exact bytes of entries ``start`` to ``end - 1``; ``end`` is at most (and by
        default) the size when the call is made."""
        for r in self._pages(_entries, [_entries.c.body], start, end):
            yield bytes(r.body)

    def evidence_lines(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The exact evidence lines of entries ``start`` to ``end - 1`` (6.1), in order."""
        for r in self._pages(_evidence, [_evidence.c.line], start, end):
            yield bytes(r.line)

    def leaf_hashes(self, start: int = 0, end: int | None = None) -> list[bytes]:
        return [bytes(r.leaf_hash)
                for r in self._pages(_entries, [_entries.c.leaf_hash], start, end)]

    def root(self, size: int | None = None) -> bytes:
        """The tree root at ``size`` (default: now). The current root reads no entries.

        Raises:
            TransferLogError: ``size`` is beyond the log.
        """
        with self._read() as conn:
            frontier = _read_frontier(conn)
            if size is None or size == frontier.size:
                return frontier.root()
            self._check_size(size, frontier.size)
            if size == 0:
                return merkle.EMPTY_ROOT
            return self._tree(conn, size).subtree(0, size)

    def _check_size(self, size: int, current: int | None = None) -> None:
        current = self.size() if current is None else current
        if not 0 <= size <= current:
            raise TransferLogError(f"the log has no tree of size {size} (its size is {current})")

    def _tree(self, conn: Connection, size: int) -> TileStore:
        """Subtree hashes of the tree of ``size`` read over ``conn``: a few rows per level."""
        if not self._tiled(conn):
            leaves = [bytes(r.leaf_hash)
                      for r in self._pages(_entries, [_entries.c.leaf_hash], 0, size)]
            return TileStore(lambda level, start, end: (
                leaves[start:end] if level == 0 else _perfect_roots(leaves, level, start, end)),
                size)

        # The driver's own cursor: a proof makes a few dozen small queries, and
        # SQLAlchemy's statement and result handling would cost more than the rows.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        mark = "?" if self._sqlite else "%s"
        leaf_rows = (f"SELECT leaf_hash FROM entries WHERE seq >= {mark} AND seq < {mark} "
                     "ORDER BY seq")
        nodes = (f"SELECT hash FROM subtrees WHERE level = {mark} AND idx >= {mark} "
                 f"AND idx < {mark} ORDER BY idx")

        def read(level: int, start: int, end: int) -> list[bytes]:
            try:
                if level == 0:
                    cursor.execute(leaf_rows, (start, end))
                else:
                    cursor.execute(nodes, (level, start, end))
                hashes = [bytes(r[0]) for r in cursor.fetchall()]
            except conn.dialect.loaded_dbapi.Error as e:
                raise LogUnavailable(f"transfer log read failed ({type(e).__name__})") from e
            if len(hashes) != end - start:
                raise TransferLogError(f"subtree hashes {start}..{end - 1} of level {level} "
                                       "are not all present")
            return hashes

        return TileStore(read, size)

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        """The proof that entry ``seq`` is in the tree of ``size``.

        Raises:
            TransferLogError: ``seq`` is not below ``size`` or ``size`` beyond the log.
        """
        self._check_size(size)
        if not 0 <= seq < size:
            raise TransferLogError(f"entry {seq} is not in a tree of size {size}")
        with self._read() as conn:
            return self._tree(conn, size).inclusion_proof(seq, size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """The proof that the tree of ``old`` is a prefix of the tree of ``new``.

        Raises:
            TransferLogError: not ``0 <= old <= new <= size``.
        """
        self._check_size(new)
        if not 0 <= old <= new:
            raise TransferLogError(f"no consistency from size {old} to {new}")
        with self._read() as conn:
            return self._tree(conn, new).consistency_proof(old, new)


def _perfect_roots(leaves: Sequence[bytes], level: int, start: int, end: int) -> list[bytes]:
    """Hashes ``start`` to ``end - 1`` of ``level`` computed from every leaf (a log that
    predates its subtree hashes, opened only to read)."""
    width = 1 << (TILE_HEIGHT * level)
    return [merkle.root(leaves[i * width:(i + 1) * width]) for i in range(start, end)]


def _fill_subtrees(conn: Connection) -> None:
    """Write the subtree hashes of a log written before they were kept: one pass over
    the leaf hashes, once (the log's lock is held)."""
    size = _read_frontier(conn).size
    have = conn.execute(sa.select(sa.func.count()).select_from(_subtrees)).scalar_one()
    if size < (1 << TILE_HEIGHT) or have:
        return
    cr = merkle.CompactRange()
    rows: list[dict[str, Any]] = []
    for pos in range(0, size, _PAGE):
        for r in conn.execute(sa.select(_entries.c.leaf_hash).where(
                _entries.c.seq >= pos, _entries.c.seq < pos + _PAGE).order_by(_entries.c.seq)):
            completed: list[tuple[int, bytes]] = []
            cr.append(bytes(r.leaf_hash), completed)
            rows += [{"level": h // TILE_HEIGHT, "idx": (cr.size >> h) - 1, "hash": x}
                     for h, x in completed if h % TILE_HEIGHT == 0]
        if rows:
            conn.execute(_subtrees.insert(), rows)
            rows = []
