"""The session's private PostgreSQL stores and returns rows, one fresh database per test."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from broker.postgres import PostgresInstance

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _run(url: str, *statements: str) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            rows: list[Any] = []
            for statement in statements:
                result = conn.execute(sa.text(statement))
                if result.returns_rows:
                    rows = list(result)
            return rows
    finally:
        engine.dispose()


# The same table name in two tests: the second fails if databases are shared.
@pytest.mark.parametrize("run", [1, 2])
def test_create_table_insert_and_read_back(postgres_url: str, run: int) -> None:
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    _run(
        postgres_url,
        "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)",
        f"INSERT INTO notes (body) VALUES ('first {run}'), ('second {run}')",
    )
    rows = _run(postgres_url, "SELECT id, body FROM notes ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, f"first {run}"), (2, f"second {run}")]


def test_server_is_postgres_15_on_loopback(
    postgres_instance: PostgresInstance, postgres_url: str
) -> None:
    [(version, address, port)] = _run(
        postgres_url,
        "SELECT current_setting('server_version_num')::int, inet_server_addr()::text, "
        "inet_server_port()",
    )
    assert 150000 <= int(str(version)) < 160000
    assert address == "127.0.0.1/32"
    assert port == postgres_instance.port
    assert postgres_instance.is_running()
