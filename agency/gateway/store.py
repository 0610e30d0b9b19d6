"""The gateway's store (SQLAlchemy Core): SQLite by default, PostgreSQL by URL.

What a gateway holds about children and families is personal data, so every
column that could hold it is a ``SecretBox`` sealed with the gateway's own key
(:class:`keys.SecretKey`): records, reasons, case references, consent
discussions, who did what. Clear columns hold ids, codes, times and keyed
hashes (``case_tag``) only, so that lookups by case need no plaintext.

Invariants:

- A message is keyed by its id and direction: a message between two units
  of the same organisation is the sender's (``out``) and the recipient's
  (``in``). A submission, its approval and its status changes are updates
  of one row, in transactions.
- The envelope's bytes are stored before it is first published and never
  rebuilt afterwards, so a publish repeated after a crash is the same body
  (the broker logs it once).
- Folder files are keyed by (unit, name, content hash): a file is accepted
  once, whatever happens to the process.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from agency.gateway.errors import StoreUnavailable
from agency.gateway.group_commit import GroupCommit
from keys import DecryptionError, SecretKey
from protocols.directory import format_time, parse_time

__all__ = ["Account", "CaseSystem", "Event", "GatewayStore", "Message", "utcnow"]

T = TypeVar("T")
metadata = MetaData()
TIME = String(20)

messages = Table(
    "messages", metadata,
    Column("message_id", String(36), primary_key=True),
    Column("direction", String(3), primary_key=True),  # out | in
    Column("unit", String(81), nullable=False),
    Column("counterpart", String(81), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("protocol", String(40), nullable=False),
    Column("purpose", String(40), nullable=False),
    Column("in_reply_to", String(36)),
    Column("case_tag", String(32)),
    Column("status", String(20), nullable=False),
    Column("reason", String(40)),
    Column("seq", Integer),
    Column("leaf_hash", String(64)),
    Column("leaf_source", String(8)),  # broker | gateway (see agency.gateway.leaf)
    Column("header_sha256", String(64)),
    Column("registry_version", Integer),
    Column("origin", String(10), nullable=False),  # api | page | folder | broker
    Column("body", LargeBinary),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
)
Index("messages_by_status", messages.c.status, messages.c.direction)
Index("messages_by_case", messages.c.unit, messages.c.case_tag)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", TIME, nullable=False),
    Column("unit", String(81), nullable=False),
    Column("case_tag", String(32)),
    Column("type", String(30), nullable=False),
    Column("message_id", String(36)),
    Column("reason", String(40)),
    Column("sealed", LargeBinary, nullable=False),
)
Index("events_by_case", events.c.unit, events.c.case_tag)

accounts = Table(
    "accounts", metadata,
    Column("username", String(64), primary_key=True),
    Column("unit", String(81), nullable=False),
    Column("role", String(12), nullable=False),  # practitioner | manager
    Column("password_hash", String(200), nullable=False),
    Column("manager_id", String(40)),
    Column("manager_key", Text),  # sealed with the manager's own passphrase
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", TIME, nullable=False),
)

case_systems = Table(
    "case_systems", metadata,
    Column("id", String(16), primary_key=True),
    Column("unit", String(81), nullable=False),
    Column("label", String(80), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", TIME, nullable=False),
    Column("revoked_at", TIME),
)

folder_files = Table(
    "folder_files", metadata,
    Column("unit", String(81), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("message_id", String(36)),
    Column("outcome", String(10), nullable=False),  # sent | failed
    Column("done", Boolean, nullable=False, default=False),
    Column("at", TIME, nullable=False),
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Message:
    message_id: str
    direction: str
    unit: str
    counterpart: str
    kind: str
    protocol: str
    purpose: str
    in_reply_to: str | None
    case_tag: str | None
    status: str
    reason: str | None
    seq: int | None
    leaf_hash: str | None
    leaf_source: str | None
    header_sha256: str | None
    registry_version: int | None
    origin: str
    body: bytes | None
    content: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Event:
    id: int
    at: datetime
    unit: str
    type: str
    message_id: str | None
    reason: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class Account:
    username: str
    unit: str
    role: str
    password_hash: str
    manager_id: str | None
    manager_key: str | None
    disabled: bool


@dataclass(frozen=True)
class CaseSystem:
    id: str
    unit: str
    label: str


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # FULL: a row the gateway has answered 202 for survives a power cut.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        # Readers on every request and courier thread; writes go through one group
        # commit, so the pool mostly serves reads.
        engine = create_engine(database_url, connect_args={"timeout": 15}, pool_size=10,
                               max_overflow=30)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(database_url, pool_pre_ping=True)


class GatewayStore:
    """Messages, events, accounts, case systems and folder files, sealed where personal."""

    def __init__(self, database_url: str, key: SecretKey) -> None:
        self._key = key
        self.engine = make_engine(database_url)
        self._group: GroupCommit[Connection] = GroupCommit(self._tx)
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as e:
            raise StoreUnavailable(f"cannot open the gateway's database "
                                   f"({type(e).__name__})") from e
        if database_url.startswith("sqlite:///"):
            path = Path(database_url.removeprefix("sqlite:///"))
            for p in (path, path.with_name(path.name + "-wal"),
                      path.with_name(path.name + "-shm")):
                if p.exists() and stat.S_IMODE(p.stat().st_mode) & 0o077:
                    p.chmod(0o600)

    def close(self) -> None:
        self.engine.dispose()

    # --- sealing -------------------------------------------------------------------------

    def seal(self, doc: Mapping[str, Any]) -> bytes:
        return self._key.encrypt(json.dumps(doc, ensure_ascii=False).encode("utf-8"))

    def unseal(self, data: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(self._key.decrypt(bytes(data)))
        except DecryptionError as e:
            raise StoreUnavailable("a sealed row does not open with the gateway's key") from e
        assert isinstance(doc, dict)
        return doc

    def case_tag(self, unit: str, case_ref: str | None) -> str | None:
        """The keyed hash a case reference is found by (per organisation)."""
        if not case_ref:
            return None
        return self._key.tag(f"{unit.split('/')[0]}\x00{case_ref}")

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise
        except SQLAlchemyError as e:
            raise StoreUnavailable(f"the gateway's database failed ({type(e).__name__})") \
                from e

    def _rows(self, query: Any) -> Sequence[Any]:
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(query))
        except SQLAlchemyError as e:
            raise StoreUnavailable(f"the gateway's database failed ({type(e).__name__})") \
                from e

    # --- messages ------------------------------------------------------------------------

    def _message(self, r: Any) -> Message:
        return Message(
            message_id=r.message_id, direction=r.direction, unit=r.unit,
            counterpart=r.counterpart, kind=r.kind, protocol=r.protocol, purpose=r.purpose,
            in_reply_to=r.in_reply_to, case_tag=r.case_tag, status=r.status, reason=r.reason,
            seq=r.seq, leaf_hash=r.leaf_hash, leaf_source=r.leaf_source,
            header_sha256=r.header_sha256,
            registry_version=r.registry_version, origin=r.origin,
            body=bytes(r.body) if r.body is not None else None,
            content=self.unseal(r.sealed), created_at=parse_time(r.created_at),
            updated_at=parse_time(r.updated_at))

    def add_message(self, *, message_id: str, direction: str, unit: str, counterpart: str,
                    kind: str, protocol: str, purpose: str, in_reply_to: str | None,
                    case_ref: str | None, status: str, reason: str | None, origin: str,
                    content: Mapping[str, Any], body: bytes | None = None,
                    header_sha256: str | None = None, registry_version: int | None = None,
                    seq: int | None = None, leaf_hash: str | None = None,
                    conn: Connection | None = None) -> bool:
        """Insert a message (``leaf_hash``, if given, is the broker's); False if its id is
        stored already in that direction (nothing changes then)."""
        now = format_time(utcnow())
        row = dict(message_id=message_id, direction=direction, unit=unit,
                   counterpart=counterpart, kind=kind, protocol=protocol, purpose=purpose,
                   in_reply_to=in_reply_to, case_tag=self.case_tag(unit, case_ref),
                   status=status, reason=reason, seq=seq, leaf_hash=leaf_hash,
                   leaf_source=None if leaf_hash is None else "broker",
                   header_sha256=header_sha256, registry_version=registry_version,
                   origin=origin, body=body, sealed=self.seal(content), created_at=now,
                   updated_at=now)
        if conn is not None:
            return self._insert_message(conn, row)
        try:
            return self.write(lambda c: self._insert_message(c, row))
        except IntegrityError:
            return False

    @staticmethod
    def _insert_message(conn: Connection, row: dict[str, Any]) -> bool:
        exists = conn.execute(select(messages.c.message_id).where(
            messages.c.message_id == row["message_id"]).where(
            messages.c.direction == row["direction"])).first()
        if exists:
            return False
        conn.execute(insert(messages).values(**row))
        return True

    def message(self, message_id: str, direction: str) -> Message | None:
        rows = self._rows(select(messages).where(messages.c.message_id == message_id)
                          .where(messages.c.direction == direction))
        return self._message(rows[0]) if rows else None

    def messages(self, *, unit: str | None = None, org: str | None = None,
                 direction: str | None = None, statuses: Sequence[str] | None = None,
                 case_tag: str | None = None, kind_not: str | None = None,
                 limit: int = 500) -> list[Message]:
        q = select(messages)
        if unit is not None:
            q = q.where(messages.c.unit == unit)
        if org is not None:
            q = q.where(messages.c.unit.like(f"{org}/%"))
        if direction is not None:
            q = q.where(messages.c.direction == direction)
        if statuses is not None:
            q = q.where(messages.c.status.in_(list(statuses)))
        if case_tag is not None:
            q = q.where(messages.c.case_tag == case_tag)
        if kind_not is not None:
            q = q.where(messages.c.kind != kind_not)
        q = q.order_by(messages.c.created_at.desc(), messages.c.message_id).limit(limit)
        return [self._message(r) for r in self._rows(q)]

    def pending_ids(self, limit: int = 200) -> list[str]:
        """Ids of outgoing messages waiting to be published, oldest first."""
        q = (select(messages.c.message_id).where(messages.c.direction == "out")
             .where(messages.c.status == "queued").order_by(messages.c.created_at)
             .limit(limit))
        return [r.message_id for r in self._rows(q)]

    def pending(self, limit: int = 200) -> list[tuple[str, str, bytes | None]]:
        """(message id, unit, envelope bytes or None if stored unchecked) of the outgoing
        messages waiting to be published, oldest first; nothing sealed is opened."""
        q = (select(messages.c.message_id, messages.c.unit, messages.c.body)
             .where(messages.c.direction == "out").where(messages.c.status == "queued")
             .order_by(messages.c.created_at).limit(limit))
        return [(r.message_id, r.unit, None if r.body is None else bytes(r.body))
                for r in self._rows(q)]

    def update_message(self, message_id: str, direction: str, *,
                       expect: Sequence[str] | None = None,
                       content: Mapping[str, Any] | None = None,
                       conn: Connection | None = None, **values: Any) -> bool:
        """Change a message's columns (and sealed content); with ``expect``, only from
        one of those statuses. Returns whether a row changed."""
        values["updated_at"] = format_time(utcnow())
        if content is not None:
            values["sealed"] = self.seal(content)
        if "case_ref" in values:
            ref = values.pop("case_ref")
            unit = values.pop("unit_for_case")
            values["case_tag"] = self.case_tag(unit, ref)
        q = (update(messages).where(messages.c.message_id == message_id)
             .where(messages.c.direction == direction).values(**values))
        if expect is not None:
            q = q.where(messages.c.status.in_(list(expect)))
        if conn is not None:
            return bool(conn.execute(q).rowcount)
        return self.write(lambda c: bool(c.execute(q).rowcount))

    def mark_submitted(self, conn: Connection, message_ids: Sequence[str]) -> None:
        """Queued messages handed to RabbitMQ, in one statement (a batch may be hundreds)."""
        if message_ids:
            conn.execute(update(messages).where(messages.c.direction == "out")
                         .where(messages.c.status == "queued")
                         .where(messages.c.message_id.in_(list(message_ids)))
                         .values(status="submitted", updated_at=format_time(utcnow())))

    def set_leaf(self, message_id: str, leaf_hash: str, source: str,
                 conn: Connection | None = None) -> bool:
        """Give a sent message its leaf hash. The broker's (``broker``) replaces any; one
        computed by the gateway (``gateway``) never replaces the broker's, whichever
        arrives first. Returns whether it was set."""
        q = (update(messages).where(messages.c.message_id == message_id)
             .where(messages.c.direction == "out")
             .values(leaf_hash=leaf_hash, leaf_source=source,
                     updated_at=format_time(utcnow())))
        if source != "broker":
            q = q.where(or_(messages.c.leaf_source.is_(None),
                            messages.c.leaf_source != "broker"))
        if conn is not None:
            return bool(conn.execute(q).rowcount)
        return self.write(lambda c: bool(c.execute(q).rowcount))

    # --- events --------------------------------------------------------------------------

    def add_event(self, *, unit: str, type: str, case_ref: str | None = None,
                  message_id: str | None = None, reason: str | None = None,
                  details: Mapping[str, Any] | None = None,
                  conn: Connection | None = None) -> None:
        row = dict(at=format_time(utcnow()), unit=unit, case_tag=self.case_tag(unit, case_ref),
                   type=type, message_id=message_id, reason=reason,
                   sealed=self.seal(details or {}))
        if conn is not None:
            conn.execute(insert(events).values(**row))
            return
        self.write(lambda c: c.execute(insert(events).values(**row)))

    def events(self, *, unit: str, case_tag: str | None = None,
               types: Sequence[str] | None = None, limit: int = 500) -> list[Event]:
        q = select(events).where(events.c.unit == unit)
        if case_tag is not None:
            q = q.where(events.c.case_tag == case_tag)
        if types is not None:
            q = q.where(events.c.type.in_(list(types)))
        q = q.order_by(events.c.id.desc()).limit(limit)
        return [Event(id=r.id, at=parse_time(r.at), unit=r.unit, type=r.type,
                      message_id=r.message_id, reason=r.reason, details=self.unseal(r.sealed))
                for r in self._rows(q)]

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction of its own, for a caller that decides between its statements."""
        with self._tx() as conn:
            yield conn

    def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` in a transaction shared with the writes of other threads
        (:mod:`agency.gateway.group_commit`); its result, once committed."""
        return self._group.run(fn)

    # --- accounts and case systems -------------------------------------------------------

    def add_account(self, account: Account) -> None:
        try:
            with self._tx() as c:
                c.execute(insert(accounts).values(
                    username=account.username, unit=account.unit, role=account.role,
                    password_hash=account.password_hash, manager_id=account.manager_id,
                    manager_key=account.manager_key, disabled=account.disabled,
                    created_at=format_time(utcnow())))
        except IntegrityError as e:
            from agency.gateway.errors import Conflict
            raise Conflict(f"an account {account.username} exists already") from e

    def account(self, username: str) -> Account | None:
        rows = self._rows(select(accounts).where(accounts.c.username == username))
        if not rows:
            return None
        r = rows[0]
        return Account(r.username, r.unit, r.role, r.password_hash, r.manager_id,
                       r.manager_key, bool(r.disabled))

    def add_case_system(self, *, id: str, unit: str, label: str, token_sha256: str) -> None:
        with self._tx() as c:
            c.execute(insert(case_systems).values(id=id, unit=unit, label=label,
                                                  token_sha256=token_sha256,
                                                  created_at=format_time(utcnow())))

    def case_system(self, token_sha256: str) -> CaseSystem | None:
        rows = self._rows(select(case_systems).where(
            case_systems.c.token_sha256 == token_sha256).where(
            case_systems.c.revoked_at.is_(None)))
        return CaseSystem(rows[0].id, rows[0].unit, rows[0].label) if rows else None

    # --- folder files --------------------------------------------------------------------

    def folder_file(self, unit: str, name: str, sha256: str) -> tuple[str | None, str, bool] \
            | None:
        rows = self._rows(select(folder_files).where(folder_files.c.unit == unit).where(
            folder_files.c.name == name).where(folder_files.c.sha256 == sha256))
        if not rows:
            return None
        return rows[0].message_id, rows[0].outcome, bool(rows[0].done)

    def add_folder_file(self, conn: Connection, *, unit: str, name: str, sha256: str,
                        message_id: str | None, outcome: str) -> None:
        conn.execute(insert(folder_files).values(unit=unit, name=name, sha256=sha256,
                                                 message_id=message_id, outcome=outcome,
                                                 done=False, at=format_time(utcnow())))

    def folder_file_done(self, unit: str, name: str, sha256: str) -> None:
        self.write(lambda c: c.execute(update(folder_files).where(
            folder_files.c.unit == unit).where(folder_files.c.name == name).where(
            folder_files.c.sha256 == sha256).values(done=True)))

    def folder_pending(self) -> list[tuple[str, str, str, str | None, str]]:
        rows = self._rows(select(folder_files).where(folder_files.c.done.is_(False)))
        return [(r.unit, r.name, r.sha256, r.message_id, r.outcome) for r in rows]
