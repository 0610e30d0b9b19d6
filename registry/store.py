"""The registry's store: every change is a new, signed registry version.

Design: the ``versions`` table holds, for each registry version, who made the
change, when, what it was, and the signed directory document exactly as it is
served. A change loads the latest directory, applies a pure function from
:mod:`registry.changes`, signs the result as version + 1 and inserts it. So:

* old versions are read back byte for byte (the audit replay needs the rules
  as they were, signed as they were);
* the primary key on ``version`` makes two concurrent writers conflict; the
  loser retries once on the new latest version, then gives up with
  :class:`~registry.errors.Conflict`;
* tokens are not part of the directory and live in their own table, stored as
  SHA-256 of the secret (the secret is shown once, at creation).

SQLite (a file) by default, PostgreSQL by URL; both behave the same here.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from keys import PublicKeyFile, SigningKeyPair
from protocols.directory import format_time, parse_time, sign_directory, verify_directory
from protocols.errors import DefinitionError, DirectoryError
from protocols.loader import load_protocol_text
from protocols.model import Directory
from registry import changes
from registry.errors import Conflict, Invalid, NotFound, NotInitialised, RegistryError
from registry.tables import metadata, protocol_sources, tokens, versions, web_sessions

__all__ = ["ROLES", "HistoryEntry", "Store", "TokenInfo", "VersionInfo", "hash_secret"]

ROLES = ("admin", "auditor", "agency")
TOKEN_PREFIX = "isr_"
TOKEN_ID_RE = "[0-9a-f]{16}"
#: Versions are 32-bit in the database; anything above cannot exist.
MAX_VERSION = 2**31 - 1
LABEL_MAX = 100
#: Parsed directories are immutable per version, so a small cache is always right.
_CACHE_SIZE = 32


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created_at: datetime
    actor: str
    action: str


@dataclass(frozen=True)
class HistoryEntry:
    version: int
    created_at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class TokenInfo:
    id: str
    role: str
    label: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_secret(secret: str) -> str:
    """The SHA-256 (hex) under which a token secret is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _empty_directory(now: datetime) -> Directory:
    return Directory(version=0, issued_at=now, organisations=(), protocols=(), keys=())


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # WAL lets readers go on while a change commits; NORMAL is durable enough
    # with WAL and keeps a change well under a millisecond.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(database_url: str) -> Engine:
    """An engine for a SQLite file or a PostgreSQL URL."""
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url, connect_args={"timeout": 15})
        if ":memory:" not in database_url and database_url not in ("sqlite://", "sqlite:///"):
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(database_url, pool_pre_ping=True)


def _is_missing_table(e: SQLAlchemyError) -> bool:
    text = str(getattr(e, "orig", e)).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def _is_write_race(e: SQLAlchemyError) -> bool:
    """A lost race between two writers: the version was taken, or SQLite was busy."""
    if isinstance(e, IntegrityError):
        return True
    return isinstance(e, OperationalError) and "locked" in str(getattr(e, "orig", e)).lower()


class Store:
    """Registry versions, history, protocol sources and tokens in one database.

    Reads need only the registry's public key; writes need its signing key.
    Every write takes ``actor`` (who made the change) and returns the new
    registry version.
    """

    def __init__(self, database_url: str, *, signing_key: SigningKeyPair | None = None,
                 public_key: bytes | None = None,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        if signing_key is None and public_key is None:
            raise ValueError("a store needs the registry's signing key or its public key")
        self._key = signing_key
        self._public = signing_key.public if signing_key is not None else public_key
        self._clock = clock
        self.engine = make_engine(database_url)
        self._cache: OrderedDict[int, Directory] = OrderedDict()
        self._cache_lock = threading.Lock()

    @property
    def public_key(self) -> bytes:
        assert self._public is not None
        return self._public

    def close(self) -> None:
        self.engine.dispose()

    # --- set-up ------------------------------------------------------------------------

    def create_tables(self) -> None:
        """Create the registry's tables where they are missing."""
        metadata.create_all(self.engine)

    def initialise(self, *, actor: str) -> int:
        """Create the tables and version 0, an empty directory.

        Raises:
            Conflict: the database holds a registry already.
        """
        self.create_tables()
        with self.engine.connect() as conn:
            if conn.execute(select(func.count()).select_from(versions)).scalar_one():
                raise Conflict("this database holds a registry already")
        try:
            with self.engine.begin() as conn:
                self._insert_version(conn, _empty_directory(self._now()), actor=actor,
                                     action="init", detail={})
        except IntegrityError as e:
            raise Conflict("this database holds a registry already") from e
        return 0

    # --- reading -----------------------------------------------------------------------

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    def latest_version(self) -> int:
        """The current registry version.

        Raises:
            NotInitialised: the database has no registry.
        """
        with self._connect() as conn:
            v = conn.execute(select(func.max(versions.c.version))).scalar_one()
        if v is None:
            raise NotInitialised("the registry database is empty; run registry init")
        return int(v)

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except OperationalError as e:
            raise RegistryError("the registry database cannot be reached") from e

    def _signed_row(self, conn: Connection, version: int | None) -> tuple[int, bytes]:
        if version is not None and not 0 <= version <= MAX_VERSION:
            raise NotFound(f"registry version {version} does not exist")
        query = select(versions.c.version, versions.c.signed_directory)
        if version is None:
            query = query.order_by(versions.c.version.desc()).limit(1)
        else:
            query = query.where(versions.c.version == version)
        try:
            row = conn.execute(query).first()
        except (OperationalError, ProgrammingError) as e:
            # A missing table reads as "not initialised", not as a crash.
            if _is_missing_table(e):
                raise NotInitialised(
                    "the registry database is not set up; run registry init") from e
            raise
        if row is None:
            if version is None:
                raise NotInitialised("the registry database is empty; run registry init")
            raise NotFound(f"registry version {version} does not exist")
        return int(row.version), bytes(row.signed_directory)

    def signed_directory(self, version: int | None = None) -> bytes:
        """The signed directory document of ``version`` (default: the latest), as stored.

        Raises:
            NotFound: no such version.
        """
        with self._connect() as conn:
            return self._signed_row(conn, version)[1]

    def signed_directory_with_version(self, version: int | None = None) -> tuple[int, bytes]:
        """Like :meth:`signed_directory`, with the version number it holds."""
        with self._connect() as conn:
            return self._signed_row(conn, version)

    def _parse(self, version: int, document: bytes) -> Directory:
        with self._cache_lock:
            cached = self._cache.get(version)
            if cached is not None:
                self._cache.move_to_end(version)
                return cached
        try:
            d = verify_directory(document, self.public_key)
        except DirectoryError as e:
            # The database holds a document this registry's key did not sign:
            # tampering or a key mix-up. Never serve it as if it were fine.
            raise RegistryError(f"registry version {version} does not verify") from e
        with self._cache_lock:
            self._cache[version] = d
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return d

    def directory(self, version: int | None = None) -> Directory:
        """The directory at ``version`` (default: the latest), verified.

        Raises:
            NotFound: no such version.
        """
        with self._connect() as conn:
            v, doc = self._signed_row(conn, version)
        return self._parse(v, doc)

    def versions(self) -> list[VersionInfo]:
        """Every registry version, oldest first."""
        query = select(versions.c.version, versions.c.created_at, versions.c.actor,
                       versions.c.action).order_by(versions.c.version)
        with self._connect() as conn:
            return [VersionInfo(version=r.version, created_at=parse_time(r.created_at),
                                actor=r.actor, action=r.action) for r in conn.execute(query)]

    def history(self) -> list[HistoryEntry]:
        """Every change with who made it, when, and what it was, oldest first."""
        query = select(versions.c.version, versions.c.created_at, versions.c.actor,
                       versions.c.action, versions.c.detail).order_by(versions.c.version)
        with self._connect() as conn:
            return [HistoryEntry(version=r.version, created_at=parse_time(r.created_at),
                                 actor=r.actor, action=r.action, detail=dict(r.detail))
                    for r in conn.execute(query)]

    def change(self, version: int) -> HistoryEntry:
        """The history entry of one version.

        Raises:
            NotFound: no such version.
        """
        if not 0 <= version <= MAX_VERSION:
            raise NotFound(f"registry version {version} does not exist")
        query = select(versions.c.version, versions.c.created_at, versions.c.actor,
                       versions.c.action, versions.c.detail).where(versions.c.version == version)
        with self._connect() as conn:
            r = conn.execute(query).first()
        if r is None:
            raise NotFound(f"registry version {version} does not exist")
        return HistoryEntry(version=r.version, created_at=parse_time(r.created_at),
                            actor=r.actor, action=r.action, detail=dict(r.detail))

    def protocol_source(self, protocol_id: str, protocol_version: int) -> str:
        """The protocol file text as it was loaded.

        Raises:
            NotFound: that protocol version was never loaded.
        """
        query = select(protocol_sources.c.yaml).where(
            protocol_sources.c.protocol_id == protocol_id,
            protocol_sources.c.protocol_version == protocol_version)
        with self._connect() as conn:
            text = conn.execute(query).scalar_one_or_none()
        if text is None:
            raise NotFound(f"protocol {protocol_id} version {protocol_version} was not loaded")
        return str(text)

    # --- writing -----------------------------------------------------------------------

    def _signing_key(self) -> SigningKeyPair:
        if self._key is None:
            raise RegistryError("the registry key is not loaded; changes cannot be signed")
        return self._key

    def _latest(self, conn: Connection) -> Directory:
        v, doc = self._signed_row(conn, None)
        return self._parse(v, doc)

    def _insert_version(self, conn: Connection, d: Directory, *, actor: str, action: str,
                        detail: dict[str, Any]) -> bytes:
        signed = sign_directory(d, self._signing_key())
        conn.execute(insert(versions).values(
            version=d.version, created_at=format_time(d.issued_at), actor=actor,
            action=action, detail=detail, signed_directory=signed))
        return signed

    def _commit(self, action: str, actor: str,
                change: Callable[[Directory], changes.Change],
                also: Callable[[Connection, int], None] | None = None) -> int:
        changes.check_text("actor", actor)
        self._signing_key()
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    current = self._latest(conn)
                    changed, detail = change(current)
                    new = replace(changed, version=current.version + 1, issued_at=self._now())
                    self._insert_version(conn, new, actor=actor, action=action, detail=detail)
                    if also is not None:
                        also(conn, new.version)
                return new.version
            except (IntegrityError, OperationalError) as e:
                if not _is_write_race(e):
                    raise RegistryError("the registry database failed") from e
                if attempt == 2:
                    raise Conflict("another change was made at the same time; "
                                   "try again") from e
        raise AssertionError("unreachable")

    def load_protocol(self, yaml_text: str, *, actor: str, source: str = "upload") -> int:
        """Load a protocol file: a new protocol or a higher version of one.

        Its parties are added or updated (units not in the file are kept).

        Raises:
            Invalid: the file is not a valid protocol file (``fields`` names each problem).
            Conflict: the protocol is registered at this version or a later one.
        """
        if not isinstance(yaml_text, str):
            raise Invalid("a protocol file is text", {"yaml": ["must be text"]})
        try:
            loaded = load_protocol_text(yaml_text, source)
        except DefinitionError as e:
            raise Invalid("the protocol file is not valid", e.problems) from e

        def save_source(conn: Connection, version: int) -> None:
            conn.execute(insert(protocol_sources).values(
                protocol_id=loaded.protocol.id, protocol_version=loaded.protocol.version,
                yaml=yaml_text, registry_version=version))

        return self._commit("load_protocol", actor,
                            lambda d: changes.load_protocol(d, loaded), save_source)

    def set_protocol_status(self, protocol_id: str, status: str, *,
                            effective_from: datetime | None = None,
                            ends_at: datetime | None = None, actor: str) -> int:
        """Change a protocol's status (and in-force dates when given).

        Raises:
            NotFound, Invalid.
        """
        return self._commit("set_protocol_status", actor, lambda d: changes.set_protocol_status(
            d, protocol_id, status, effective_from=effective_from, ends_at=ends_at))

    def add_unit(self, org: str, unit: str, name: str, roles: Iterable[str], *,
                 actor: str) -> int:
        """Add a unit to an organisation. Raises: Invalid, NotFound, Conflict."""
        roles = list(roles)
        return self._commit("add_unit", actor,
                            lambda d: changes.add_unit(d, org, unit, name, roles))

    def set_unit_roles(self, org: str, unit: str, roles: Iterable[str], *, actor: str) -> int:
        """Replace a unit's roles. Raises: Invalid, NotFound."""
        roles = list(roles)
        return self._commit("set_unit_roles", actor,
                            lambda d: changes.set_unit_roles(d, org, unit, roles))

    def remove_unit(self, org: str, unit: str, *, actor: str) -> int:
        """Remove a unit that has no valid key. Raises: NotFound, Conflict."""
        return self._commit("remove_unit", actor,
                            lambda d: changes.remove_unit(d, org, unit, self._now()))

    def register_keys(self, expected: changes.KeyOwner, offered: Mapping[str, PublicKeyFile],
                      valid_from: datetime | None = None, valid_until: datetime | None = None,
                      *, actor: str) -> int:
        """Register keys from their public key files, by the use each is offered for.

        ``expected`` names whose keys they must be; ``valid_from`` defaults to now.
        See :func:`registry.changes.register_keys` for every check.

        Raises:
            Invalid, NotFound, Conflict.
        """
        start = self._now() if valid_from is None else _whole(valid_from)
        until = _whole_or_none(valid_until)
        return self._commit("register_keys", actor, lambda d: changes.register_keys(
            d, expected, offered, start, until))

    def manager_keys(self, manager_id: str) -> changes.KeyOwner:
        """Whom a manager's keys are for: the manager and their organisation.

        Raises:
            NotFound: no such manager.
        """
        m = next((x for x in self.directory().managers if x.id == manager_id), None)
        if m is None:
            raise NotFound(f"manager {manager_id} is not registered; register the manager "
                           "first")
        return changes.KeyOwner("manager", m.org, m.id)

    def revoke_key(self, key_id: str, reason: str, at: datetime | None = None, *,
                   actor: str, last_broker_key: bool = False) -> int:
        """Revoke a key from ``at`` (default: now).

        Revoking the broker's last valid key stops every notice and checkpoint;
        it is refused unless ``last_broker_key`` confirms it.

        Raises: Invalid, NotFound, Conflict, LastBrokerKey.
        """
        return self._commit("revoke_key", actor, lambda d: changes.revoke_key(
            d, key_id, reason, self._now() if at is None else _whole(at),
            now=self._now(), last_broker_key=last_broker_key))

    def register_manager(self, id: str, org: str, title: str, *, actor: str) -> int:
        """Register a manager of ``org``. Raises: Invalid, NotFound, Conflict."""
        return self._commit("register_manager", actor,
                            lambda d: changes.register_manager(d, id, org, title))

    # --- tokens ------------------------------------------------------------------------

    def create_token(self, role: str, label: str, *, actor: str) -> tuple[str, str]:
        """Create an API token; returns ``(id, secret)``. The secret is not kept.

        Raises:
            Invalid: unknown role or bad label.
        """
        if role not in ROLES:
            raise Invalid("unknown role", {"role": ["one of " + ", ".join(ROLES)]})
        changes.check_text("label", label, LABEL_MAX)
        changes.check_text("actor", actor)
        token_id = secrets.token_hex(8)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(insert(tokens).values(
                id=token_id, role=role, label=label, token_sha256=hash_secret(secret),
                created_at=format_time(self._now()), created_by=actor))
        return token_id, secret

    def list_tokens(self) -> list[TokenInfo]:
        """Every token ever made (revoked ones too), oldest first; never a secret."""
        query = select(tokens).order_by(tokens.c.created_at, tokens.c.id)
        with self._connect() as conn:
            return [_token_info(r._mapping) for r in conn.execute(query)]

    def revoke_token(self, token_id: str, *, actor: str) -> None:
        """Revoke a token.

        Raises:
            NotFound. Conflict: revoked already, or the last active admin token
            (nobody could administer the registry after it).
        """
        changes.check_text("actor", actor)
        if not re.fullmatch(TOKEN_ID_RE, token_id):
            raise NotFound(f"token {token_id} does not exist")
        with self.engine.begin() as conn:
            row = conn.execute(select(tokens.c.revoked_at, tokens.c.role)
                               .where(tokens.c.id == token_id)).first()
            if row is None:
                raise NotFound(f"token {token_id} does not exist")
            if row.revoked_at is not None:
                raise Conflict(f"token {token_id} was revoked already")
            if row.role == "admin":
                admins = conn.execute(select(func.count()).select_from(tokens).where(
                    tokens.c.role == "admin", tokens.c.revoked_at.is_(None))).scalar_one()
                if admins <= 1:
                    raise Conflict(f"token {token_id} is the last active admin token; create "
                                   "another admin token before revoking this one")
            conn.execute(update(tokens).where(tokens.c.id == token_id,
                                              tokens.c.revoked_at.is_(None))
                         .values(revoked_at=format_time(self._now()), revoked_by=actor))

    def authenticate(self, secret: str) -> TokenInfo | None:
        """The active token whose secret this is, or None."""
        if not isinstance(secret, str) or not secret.startswith(TOKEN_PREFIX) \
                or len(secret) > 100:
            return None
        return self.token_by_hash(hash_secret(secret))

    def token_by_hash(self, token_sha256: str) -> TokenInfo | None:
        """The active token stored under this hash, or None (used by web sessions)."""
        query = select(tokens).where(tokens.c.token_sha256 == token_sha256,
                                     tokens.c.revoked_at.is_(None))
        with self._connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _token_info(row._mapping)


    # --- web sessions ------------------------------------------------------------------

    def ensure_session_table(self) -> None:
        """Create the web sessions table in a registry made before it existed."""
        metadata.create_all(self.engine, tables=[web_sessions])

    def open_session(self, token_id: str, lifetime: timedelta) -> str:
        """Start a web session for a token; returns its secret id (for the cookie only)."""
        session_id = secrets.token_urlsafe(32)
        now = self._now()
        with self.engine.begin() as conn:
            # Expired sessions are of no use to anyone; clear them as new ones start.
            conn.execute(delete(web_sessions).where(
                web_sessions.c.expires_at < format_time(now)))
            conn.execute(insert(web_sessions).values(
                id_sha256=hash_secret(session_id), token_id=token_id,
                created_at=format_time(now), expires_at=format_time(now + lifetime)))
        return session_id

    def session_token(self, session_id: str) -> TokenInfo | None:
        """The active token of a live session, or None (ended, expired, unknown, revoked)."""
        if not isinstance(session_id, str) or len(session_id) > 100:
            return None
        now = format_time(self._now())
        query = (select(tokens).join(web_sessions, web_sessions.c.token_id == tokens.c.id)
                 .where(web_sessions.c.id_sha256 == hash_secret(session_id),
                        web_sessions.c.ended_at.is_(None), web_sessions.c.expires_at > now,
                        tokens.c.revoked_at.is_(None)))
        with self._connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _token_info(row._mapping)

    def end_session(self, session_id: str) -> None:
        """End a session: its cookie, and every copy of it, no longer signs anyone in."""
        if not isinstance(session_id, str) or len(session_id) > 100:
            return
        with self.engine.begin() as conn:
            conn.execute(update(web_sessions).where(
                web_sessions.c.id_sha256 == hash_secret(session_id),
                web_sessions.c.ended_at.is_(None)).values(ended_at=format_time(self._now())))


def _token_info(r: Any) -> TokenInfo:
    return TokenInfo(id=r["id"], role=r["role"], label=r["label"],
                     created_at=parse_time(r["created_at"]), created_by=r["created_by"],
                     revoked_at=None if r["revoked_at"] is None else parse_time(r["revoked_at"]),
                     revoked_by=r["revoked_by"])


def _whole(t: datetime) -> datetime:
    # The directory keeps whole seconds in UTC; store what will be read back.
    if t.tzinfo is None:
        raise Invalid("a time without a time zone", {"time": ["give a UTC time"]})
    return t.astimezone(UTC).replace(microsecond=0)


def _whole_or_none(t: datetime | None) -> datetime | None:
    return None if t is None else _whole(t)


def dump_detail(detail: dict[str, Any]) -> str:
    """History detail as compact JSON text (for the CLI and the pages)."""
    return json.dumps(detail, sort_keys=True, separators=(", ", ": "))
