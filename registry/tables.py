"""The registry's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Invariants: ``versions`` only grows and its rows are never updated; the
primary key on ``version`` is what makes two concurrent writers conflict.
Times are stored as the wire's RFC 3339 text (``2024-05-01T09:00:00Z``) so
that both databases read back exactly what was written.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

TIME = String(20)

versions = Table(
    "versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("created_at", TIME, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(40), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("signed_directory", LargeBinary, nullable=False),
)

protocol_sources = Table(
    "protocol_sources",
    metadata,
    Column("protocol_id", String(40), primary_key=True),
    Column("protocol_version", Integer, primary_key=True, autoincrement=False),
    Column("yaml", Text, nullable=False),
    Column("registry_version", Integer, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("label", String(100), nullable=False),
    Column("token_sha256", String(64), nullable=False),
    Column("created_at", TIME, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at", TIME, nullable=True),
    Column("revoked_by", String(200), nullable=True),
    UniqueConstraint("token_sha256", name="tokens_sha256_unique"),
)

#: Web sessions, so that signing out ends a session on the server: the cookie
#: carries a random id whose SHA-256 is the key here; an ended or expired row,
#: or a revoked token, signs the cookie out wherever a copy of it is.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("token_id", String(32), nullable=False),
    Column("created_at", TIME, nullable=False),
    Column("expires_at", TIME, nullable=False),
    Column("ended_at", TIME, nullable=True),
)
