"""The transfer log: append-only entries, their evidence, Merkle tree and checkpoints.

Invariants:

- ``seq`` runs 0..n-1 with no gaps. Appends happen in a write transaction that
  holds the log's lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL an advisory
  transaction lock), so several routers can append side by side.
- Entries are never updated or deleted; nothing in this module issues either.
- An entry, its evidence, the tree's compact range after it, and any
  checkpoint due at that size are committed in one transaction: a crash
  leaves all of them or none. SQLite runs in WAL mode with ``synchronous=FULL``.
- A checkpoint is signed at every multiple of 1,000 entries, and for the
  current size when 10 s have passed since the last one and entries arrived
  (wire spec 6.2).
- The entry bytes are the compact JSON of wire spec 6.1, keys in the spec's
  order; they are stored and exported exactly, and hashed as stored.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from broker import merkle
from keys import Checkpoint, NoteSigner, NoteVerifier
from protocols.policy import LoggedMessage

CHECKPOINT_EVERY = 1000
CHECKPOINT_INTERVAL = timedelta(seconds=10)
_LOCK_KEY = 0x696E666F  # "info": the advisory lock of the log on PostgreSQL

ENTRY_FIELDS = ("seq", "at", "message_id", "kind", "decision", "reason", "protocol", "purpose",
                "sender", "recipient", "in_reply_to", "consent", "subject_informed",
                "data_categories", "header_sha256", "payload_sha256", "registry_version")


class TransferLogError(Exception):
    """The log cannot be opened, or an entry is not of the wire spec's form."""


@dataclass(frozen=True)
class EntryDraft:
    """An entry before the log gives it its sequence number."""

    at: str
    message_id: str | None
    kind: str | None
    decision: str
    reason: str | None
    protocol: str | None
    purpose: str | None
    sender: str | None
    recipient: str | None
    in_reply_to: str | None
    consent: dict[str, Any] | None
    subject_informed: bool | None
    data_categories: list[str] | None
    header_sha256: str
    payload_sha256: str | None
    registry_version: int


@dataclass(frozen=True)
class Entry(EntryDraft):
    """One decision, as logged (wire spec 6.1)."""

    seq: int = -1

    def to_bytes(self) -> bytes:
        doc = {name: getattr(self, name) for name in ENTRY_FIELDS}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @property
    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.to_bytes())

    @classmethod
    def from_draft(cls, draft: EntryDraft, seq: int) -> Entry:
        return cls(seq=seq, **{f.name: getattr(draft, f.name) for f in fields(EntryDraft)})

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """Parse entry bytes; they must be exactly what :meth:`to_bytes` writes.

        Raises:
            TransferLogError: not an entry in its one canonical form.
        """
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise TransferLogError("an entry is not JSON") from e
        if not isinstance(doc, dict) or tuple(doc) != ENTRY_FIELDS:
            raise TransferLogError("an entry has exactly the fields of wire spec 6.1, in order")
        if not isinstance(doc["seq"], int) or isinstance(doc["seq"], bool):
            raise TransferLogError("an entry's seq is an integer")
        entry = cls(**doc)
        if entry.to_bytes() != data:
            raise TransferLogError("an entry is not in canonical form")
        return entry

    def logged(self) -> LoggedMessage:
        return LoggedMessage(
            message_id=self.message_id or "", header_sha256=self.header_sha256,
            kind=self.kind, decision=self.decision, reason=self.reason,  # type: ignore[arg-type]
            protocol=self.protocol, purpose=self.purpose, sender=self.sender,
            recipient=self.recipient)


@dataclass(frozen=True)
class Evidence:
    """How a decision's envelope arrived: no personal data, enough to re-run every check."""

    header: bytes | None
    signatures: list[dict[str, str]] | None
    user_id: str | None
    body_sha256: str


_meta = sa.MetaData()
_entries = sa.Table(
    "log_entries", _meta,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("message_id", sa.String(36), index=True),
    sa.Column("header_sha256", sa.String(64), nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
)
_evidence = sa.Table(
    "log_evidence", _meta,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("header", sa.LargeBinary),
    sa.Column("signatures", sa.Text),
    sa.Column("user_id", sa.String(100)),
    sa.Column("body_sha256", sa.String(64), nullable=False),
)
_frontier = sa.Table(
    "log_frontier", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("hashes", sa.Text, nullable=False),
)
_checkpoints = sa.Table(
    "log_checkpoints", _meta,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _frontier_doc(cr: merkle.CompactRange) -> str:
    return json.dumps([h.hex() for h in cr.hashes])


class LogBatch:
    """Appends inside one write transaction; ``find`` sees them before they commit."""

    def __init__(self, log: TransferLog, conn: Connection, frontier: merkle.CompactRange,
                 now: datetime) -> None:
        self._log = log
        self._conn = conn
        self._frontier = frontier
        self._now = now
        self._entries: list[Entry] = []
        self._evidence: list[Evidence] = []
        self._checkpoints: list[tuple[int, str]] = []

    def find(self, message_id: str) -> list[LoggedMessage]:
        committed = self._log._find(self._conn, message_id)
        return committed + [e.logged() for e in self._entries if e.message_id == message_id]

    def find_logged(self, message_id: str | None, header_sha256: str, body_sha256: str,
                    user_id: str | None) -> Entry | None:
        for e, ev in zip(self._entries, self._evidence, strict=True):
            if (e.message_id == message_id and e.header_sha256 == header_sha256
                    and ev.body_sha256 == body_sha256 and ev.user_id == user_id):
                return e
        return self._log._find_logged(self._conn, message_id, header_sha256, body_sha256,
                                      user_id)

    def append(self, draft: EntryDraft, evidence: Evidence) -> Entry:
        entry = Entry.from_draft(draft, self._frontier.size)
        self._frontier.append(entry.leaf_hash)
        if self._frontier.size % CHECKPOINT_EVERY == 0:
            self._checkpoints.append((self._frontier.size, self._log._sign(
                self._frontier.size, self._frontier.root())))
        self._entries.append(entry)
        self._evidence.append(evidence)
        return entry

    def _flush(self) -> None:
        if not self._entries:
            return
        rows = []
        for e in self._entries:
            body = e.to_bytes()
            rows.append({"seq": e.seq, "message_id": e.message_id,
                         "header_sha256": e.header_sha256, "leaf_hash": merkle.leaf_hash(body),
                         "body": body})
        self._conn.execute(_entries.insert(), rows)
        self._conn.execute(_evidence.insert(), [
            {"seq": e.seq, "header": ev.header,
             "signatures": None if ev.signatures is None else json.dumps(ev.signatures),
             "user_id": ev.user_id, "body_sha256": ev.body_sha256}
            for e, ev in zip(self._entries, self._evidence, strict=True)])
        self._conn.execute(_frontier.update().where(_frontier.c.id == 1).values(
            size=self._frontier.size, hashes=_frontier_doc(self._frontier)))
        if self._checkpoints:
            self._conn.execute(_checkpoints.insert(), [
                {"size": size, "note": note, "created_at": self._now}
                for size, note in self._checkpoints])


class TransferLog:
    """The log on SQLite (a file URL) or PostgreSQL (a ``postgresql+psycopg://`` URL)."""

    def __init__(self, engine: Engine, *, signer: NoteSigner, origin: str) -> None:
        self._engine = engine
        self._signer = signer
        self._origin = origin
        self._sqlite = engine.dialect.name == "sqlite"
        self._local = threading.local()

    @classmethod
    def open(cls, url: str, *, signer: NoteSigner, origin: str) -> TransferLog:
        """Open (creating if needed) the log at ``url``.

        Raises:
            TransferLogError: the database cannot be reached or set up.
        """
        try:
            if url.startswith("sqlite"):
                # Transactions are begun by hand (BEGIN IMMEDIATE takes the write
                # lock up front), so the driver must not begin them itself.
                engine = sa.create_engine(url, isolation_level="AUTOCOMMIT",
                                          connect_args={"check_same_thread": False,
                                                        "timeout": 30})
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = sa.create_engine(url, pool_pre_ping=True)
            _meta.create_all(engine)
            log = cls(engine, signer=signer, origin=origin)
            with log._write() as conn:
                if conn.execute(sa.select(_frontier.c.id)).first() is None:
                    conn.execute(_frontier.insert().values(id=1, size=0, hashes="[]"))
        except sa.exc.SQLAlchemyError as e:
            raise TransferLogError(f"cannot open the transfer log ({type(e).__name__})") from e
        return log

    def close(self) -> None:
        self._engine.dispose()

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def verifier(self) -> NoteVerifier:
        return self._signer.verifier

    # --- writing ------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
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
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
                    yield conn

    def _read_frontier(self, conn: Connection) -> merkle.CompactRange:
        row = conn.execute(sa.select(_frontier.c.size, _frontier.c.hashes)
                           .where(_frontier.c.id == 1)).one()
        return merkle.CompactRange(int(row.size), [bytes.fromhex(h)
                                                   for h in json.loads(row.hashes)])

    @contextmanager
    def batch(self, now: datetime | None = None) -> Iterator[LogBatch]:
        """A write transaction: append entries, commit them durably on a clean exit."""
        with self._write() as conn:
            batch = LogBatch(self, conn, self._read_frontier(conn), now or datetime.now(UTC))
            yield batch
            batch._flush()

    def _sign(self, size: int, root: bytes) -> str:
        return self._signer.sign(Checkpoint(self._origin, size, root).text())

    def checkpoint_if_due(self, now: datetime) -> str | None:
        """Sign a checkpoint of the current size if 10 s have passed with new entries."""
        last = self._last_checkpoint_row()
        size = self.size()
        if size == 0 or (last is not None and last[0] >= size):
            return None
        if last is not None and now - _aware(last[1]) < CHECKPOINT_INTERVAL:
            return None
        return self.checkpoint(now)

    def checkpoint(self, now: datetime) -> str:
        """Sign a checkpoint of the current size now (or return the one that exists)."""
        with self._write() as conn:
            frontier = self._read_frontier(conn)
            existing = conn.execute(sa.select(_checkpoints.c.note)
                                    .where(_checkpoints.c.size == frontier.size)).first()
            if existing is not None:
                return str(existing.note)
            note = self._sign(frontier.size, frontier.root())
            conn.execute(_checkpoints.insert().values(size=frontier.size, note=note,
                                                      created_at=now))
            return note

    # --- reading ------------------------------------------------------------------------

    def _find(self, conn: Connection, message_id: str) -> list[LoggedMessage]:
        rows = conn.execute(sa.select(_entries.c.body).where(_entries.c.message_id == message_id)
                            .order_by(_entries.c.seq)).all()
        return [Entry.from_bytes(bytes(r.body)).logged() for r in rows]

    def _find_logged(self, conn: Connection, message_id: str | None, header_sha256: str,
                     body_sha256: str, user_id: str | None) -> Entry | None:
        """The entry of an earlier delivery of this very ingress message, if logged.

        Wire spec 6.3 matches on message id and header hash; the body hash and
        the publishing user narrow that to the same AMQP message, so that a
        copy of someone's envelope published by another unit (refused as
        ``sender_mismatch``) never stands in for the real one.
        """
        mid = (_entries.c.message_id.is_(None) if message_id is None
               else _entries.c.message_id == message_id)
        user = (_evidence.c.user_id.is_(None) if user_id is None
                else _evidence.c.user_id == user_id)
        row = conn.execute(
            sa.select(_entries.c.body)
            .join(_evidence, _evidence.c.seq == _entries.c.seq)
            .where(mid, user, _entries.c.header_sha256 == header_sha256,
                   _evidence.c.body_sha256 == body_sha256)
            .order_by(_entries.c.seq).limit(1)).first()
        return None if row is None else Entry.from_bytes(bytes(row.body))

    def find(self, message_id: str) -> list[LoggedMessage]:
        with self._engine.connect() as conn:
            return self._find(conn, message_id)

    def find_logged(self, message_id: str | None, header_sha256: str, body_sha256: str,
                    user_id: str | None) -> Entry | None:
        with self._engine.connect() as conn:
            return self._find_logged(conn, message_id, header_sha256, body_sha256, user_id)

    def size(self) -> int:
        with self._engine.connect() as conn:
            return self._read_frontier(conn).size

    def entry(self, seq: int) -> Entry:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(_entries.c.body).where(_entries.c.seq == seq)).first()
        if row is None:
            raise TransferLogError(f"no entry {seq}")
        return Entry.from_bytes(bytes(row.body))

    def entries(self, start: int = 0, end: int | None = None,
                chunk: int = 10_000) -> Iterator[bytes]:
        """The exact entry bytes of ``seq`` in [start, end), in order."""
        end = self.size() if end is None else end
        pos = start
        while pos < end:
            upto = min(end, pos + chunk)
            with self._engine.connect() as conn:
                rows = conn.execute(sa.select(_entries.c.body)
                                    .where(_entries.c.seq >= pos, _entries.c.seq < upto)
                                    .order_by(_entries.c.seq)).all()
            for r in rows:
                yield bytes(r.body)
            pos = upto

    def evidence(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, Evidence]]:
        end = self.size() if end is None else end
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_evidence).where(
                _evidence.c.seq >= start, _evidence.c.seq < end).order_by(_evidence.c.seq))
            for r in rows:
                yield int(r.seq), Evidence(
                    header=None if r.header is None else bytes(r.header),
                    signatures=None if r.signatures is None else json.loads(r.signatures),
                    user_id=r.user_id, body_sha256=r.body_sha256)

    def leaf_hashes(self, size: int | None = None) -> list[bytes]:
        size = self.size() if size is None else size
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_entries.c.leaf_hash).where(_entries.c.seq < size)
                                .order_by(_entries.c.seq)).all()
        return [bytes(r.leaf_hash) for r in rows]

    def root(self, size: int | None = None) -> bytes:
        with self._engine.connect() as conn:
            frontier = self._read_frontier(conn)
        if size is None or size == frontier.size:
            return frontier.root()
        if not 0 <= size <= frontier.size:
            raise TransferLogError(f"the log has no tree of size {size}")
        return merkle.root(self.leaf_hashes(size))

    def _last_checkpoint_row(self) -> tuple[int, datetime] | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(_checkpoints.c.size, _checkpoints.c.created_at)
                               .order_by(_checkpoints.c.size.desc()).limit(1)).first()
        return None if row is None else (int(row.size), row.created_at)

    def checkpoints(self) -> list[str]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_checkpoints.c.note)
                                .order_by(_checkpoints.c.size)).all()
        return [str(r.note) for r in rows]

    def latest_checkpoint(self) -> str | None:
        notes = self.checkpoints()
        return notes[-1] if notes else None

    def checkpoint_at(self, size: int) -> str | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(_checkpoints.c.note)
                               .where(_checkpoints.c.size == size)).first()
        return None if row is None else str(row.note)

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(self.leaf_hashes(size), seq, size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return merkle.consistency_proof(self.leaf_hashes(new), old, new)

    def seq_of(self, message_id: str) -> Sequence[int]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_entries.c.seq).where(
                _entries.c.message_id == message_id).order_by(_entries.c.seq)).all()
        return [int(r.seq) for r in rows]


def _aware(t: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything here is stored in UTC.
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
