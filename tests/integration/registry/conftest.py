"""Registry integration fixtures: stores on SQLite and PostgreSQL, a served registry.

``database_url`` is parametrised, so every test that uses a store runs on a
SQLite file and on a fresh PostgreSQL database (``postgres_url`` from
tests/conftest.py). ``served`` runs the app on a real socket with werkzeug.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import registry_testing as shared
from flask import Flask

clock = shared.clock
registry_key = shared.registry_key
sqlite_url = shared.sqlite_url
opened_stores = shared.opened_stores

from keys import SigningKeyPair  # noqa: E402
from registry.app import create_app  # noqa: E402
from registry.store import Store  # noqa: E402


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def make_store(database_url: str, registry_key: SigningKeyPair, clock: Any,
               opened_stores: list[Store]) -> Any:
    return shared.make_store_factory(database_url, registry_key, clock, opened_stores)


@pytest.fixture
def store(make_store: Any) -> Store:
    s: Store = make_store(initialise=True)
    return s


@dataclass
class Served:
    """A registry on a real socket, with its store, key and an admin token."""

    url: str
    app: Flask
    store: Store
    key: SigningKeyPair
    admin: str
    clock: Any


@pytest.fixture
def served(tmp_path: Path, clock: Any) -> Iterator[Served]:
    key = SigningKeyPair.generate()
    # Real time for versions: the client and pages show them.
    store = Store(f"sqlite:///{tmp_path / 'served.sqlite3'}", signing_key=key)
    store.initialise(actor="test:init")
    _, admin = store.create_token("admin", "test admin", actor="test:init")
    app = create_app({"REGISTRY_STORE": store, "SECRET_KEY": "test-secret"})
    try:
        with shared.served_in_thread(app) as url:
            yield Served(url=url, app=app, store=store, key=key, admin=admin, clock=clock)
    finally:
        store.close()
