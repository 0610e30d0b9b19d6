"""The agency client's state store: what a unit received, sent and was told.

Ids and codes only (no record, no reasons): SQLite in the client's
``state_dir``, WAL with ``synchronous=FULL``, so that a committed row survives
a power cut and the client may ack after committing.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agency.errors import StateError
from protocols.directory import format_time, parse_time
from protocols.envelope import Notice, ParsedEnvelope
from protocols.model import Header, MessageId
from protocols.policy import LoggedMessage

# receipt_sent in the received table.
RECEIPT_PENDING = 0
RECEIPT_SENT = 1
RECEIPT_NONE = 2  # a receipt, or a rejected envelope: nothing to acknowledge
RECEIPT_REFUSED = 3  # the broker would refuse the receipt (reason logged)
RECEIPT_DEFERRED = 4  # sent once the record is opened (acknowledge)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    message_id TEXT PRIMARY KEY,
    header_sha256 TEXT,
    kind TEXT,
    sender TEXT,
    protocol TEXT,
    purpose TEXT,
    status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reason TEXT,
    receipt_sent INTEGER NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sent (
    message_id TEXT PRIMARY KEY,
    header_sha256 TEXT NOT NULL,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    protocol TEXT NOT NULL,
    purpose TEXT NOT NULL,
    in_reply_to TEXT,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notices (
    message_id TEXT,
    decision TEXT NOT NULL,
    reason TEXT,
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notices_by_message ON notices (message_id);
CREATE TABLE IF NOT EXISTS outbox (
    message_id TEXT PRIMARY KEY,
    in_reply_to TEXT NOT NULL,
    header_sha256 TEXT NOT NULL,
    recipient TEXT NOT NULL,
    protocol TEXT NOT NULL,
    purpose TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Outgoing:
    """A receipt waiting in the outbox: its exact bytes and what the sent table needs."""

    message_id: str
    in_reply_to: str
    header_sha256: str
    recipient: str
    protocol: str
    purpose: str
    body: bytes


class StateStore:
    """The client's SQLite state: what it received, sent, and was told (ids and codes only).

    WAL with ``synchronous=FULL``: a committed row survives a power cut, which
    is what lets the client ack after committing. One SQLite connection per
    thread.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "state.db"
        self._local = threading.local()
        try:
            Path(state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
            # executescript commits by itself; the statements are idempotent.
            self._db().executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise StateError(f"{self.path}: cannot open the state store "
                             f"({type(e).__name__})") from e

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=10000")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as e:
            # SQLite's messages name tables and constraints, never values.
            raise StateError(f"{self.path}: {type(e).__name__}: {e}") from e

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db().execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise StateError(f"{self.path}: {type(e).__name__}") from e

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # received

    def status(self, message_id: str) -> str | None:
        rows = self._query("SELECT status FROM received WHERE message_id = ?", (message_id,))
        return str(rows[0][0]) if rows else None

    def accept(self, header: Header, header_sha256: str, at: datetime,
               receipt: Outgoing | None, receipt_state: int) -> None:
        """Record an opened envelope, and its receipt in the outbox, in one transaction."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO received VALUES (?, ?, ?, ?, ?, ?, 'accepted', NULL, ?, ?)",
                (header.message_id, header_sha256, header.kind, header.sender, header.protocol,
                 header.purpose, receipt_state, format_time(at)))
            if receipt is not None:
                db.execute("INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (receipt.message_id, receipt.in_reply_to, receipt.header_sha256,
                            receipt.recipient, receipt.protocol, receipt.purpose,
                            receipt.body, format_time(at)))

    def reject(self, message_id: str, reason: str, header: Header | None,
               header_sha256: str | None, at: datetime) -> None:
        """Record a rejected envelope, unless the same id was accepted before."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO received VALUES (?, ?, ?, ?, ?, ?, 'rejected', ?, ?, ?) "
                "ON CONFLICT (message_id) DO UPDATE SET reason = excluded.reason, "
                "header_sha256 = excluded.header_sha256, at = excluded.at "
                "WHERE received.status = 'rejected'",
                (message_id, header_sha256, header.kind if header else None,
                 header.sender if header else None, header.protocol if header else None,
                 header.purpose if header else None, reason, RECEIPT_NONE, format_time(at)))

    def logged(self, message_id: str, recipient: str) -> list[LoggedMessage]:
        """What this unit received under ``message_id``: the broker routed it, or it
        would not be in the inbox."""
        rows = self._query(
            "SELECT header_sha256, kind, protocol, purpose, sender FROM received "
            "WHERE message_id = ? AND kind IS NOT NULL", (message_id,))
        return [LoggedMessage(message_id=MessageId(message_id), header_sha256=r[0], kind=r[1],
                              decision="routed", reason=None, protocol=r[2], purpose=r[3],
                              sender=r[4], recipient=recipient) for r in rows]

    # outbox and sent

    def outbox(self) -> list[Outgoing]:
        rows = self._query("SELECT message_id, in_reply_to, header_sha256, recipient, protocol, "
                           "purpose, body FROM outbox ORDER BY created_at, message_id")
        return [Outgoing(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6])) for r in rows]

    def queue_receipt(self, message_id: str, receipt: Outgoing | None, state: int,
                      at: datetime) -> bool:
        """Put a deferred receipt into the outbox, or record why there is none.

        Returns False if the message's receipt was not deferred (done already).
        """
        with self._tx() as db:
            cur = db.execute("UPDATE received SET receipt_sent = ? WHERE message_id = ? "
                             "AND receipt_sent = ?", (state, message_id, RECEIPT_DEFERRED))
            if cur.rowcount != 1:
                return False
            if receipt is not None:
                db.execute("INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (receipt.message_id, receipt.in_reply_to, receipt.header_sha256,
                            receipt.recipient, receipt.protocol, receipt.purpose,
                            receipt.body, format_time(at)))
            return True

    def receipt_sent(self, receipt: Outgoing, at: datetime) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM outbox WHERE message_id = ?", (receipt.message_id,))
            db.execute("UPDATE received SET receipt_sent = ? WHERE message_id = ?",
                       (RECEIPT_SENT, receipt.in_reply_to))
            db.execute("INSERT OR IGNORE INTO sent VALUES (?, ?, 'receipt', ?, ?, ?, ?, ?)",
                       (receipt.message_id, receipt.header_sha256, receipt.recipient,
                        receipt.protocol, receipt.purpose, receipt.in_reply_to,
                        format_time(at)))

    def record_sent(self, envs: Sequence[ParsedEnvelope], at: datetime) -> None:
        """Record envelopes as sent, in one transaction."""
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [(env.header.message_id, env.header_sha256, env.header.kind,
                             env.header.recipient, env.header.protocol, env.header.purpose,
                             env.header.in_reply_to, format_time(at)) for env in envs])

    def sent(self, message_id: str) -> tuple[str, str] | None:
        """(kind, header_sha256) of a message this unit sent."""
        rows = self._query("SELECT kind, header_sha256 FROM sent WHERE message_id = ?",
                           (message_id,))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def receipt_state(self, message_id: str) -> int | None:
        rows = self._query("SELECT receipt_sent FROM received WHERE message_id = ?",
                           (message_id,))
        return int(rows[0][0]) if rows else None

    # notices

    def add_notices(self, notices: Sequence[Notice]) -> list[Notice]:
        """Store notices in one transaction; returns those not stored before (a
        redelivered notice has a ``seq`` stored already)."""
        new = []
        with self._tx() as db:
            for notice in notices:
                cur = db.execute("INSERT OR IGNORE INTO notices VALUES (?, ?, ?, ?, ?)",
                                 (notice.message_id, notice.decision, notice.reason,
                                  notice.seq, format_time(notice.at)))
                if cur.rowcount == 1:
                    new.append(notice)
        return new

    def notices(self, message_id: str | None = None) -> list[Notice]:
        if message_id is None:
            rows = self._query("SELECT message_id, decision, reason, seq, at FROM notices "
                               "ORDER BY seq")
        else:
            rows = self._query("SELECT message_id, decision, reason, seq, at FROM notices "
                               "WHERE message_id = ? ORDER BY seq", (message_id,))
        return [Notice(message_id=r[0], decision=r[1], reason=r[2], seq=int(r[3]),
                       at=parse_time(r[4])) for r in rows]


class LocalLog:
    """The policy's log view, from what this unit received (all of it routed by the broker)."""

    def __init__(self, store: StateStore, unit: str,
                 extra: Sequence[LoggedMessage] = ()) -> None:
        self._store = store
        self._unit = unit
        self._extra = extra

    def find(self, message_id: str) -> Sequence[LoggedMessage]:
        found = self._store.logged(message_id, self._unit)
        return [*found, *(e for e in self._extra if e.message_id == message_id)]
