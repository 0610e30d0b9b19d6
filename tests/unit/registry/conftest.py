"""Registry unit tests run the store on a SQLite file."""

from __future__ import annotations

import pytest
import registry_testing as shared

from keys import SigningKeyPair
from registry.store import Store

# Fixtures shared with tests/integration/registry.
clock = shared.clock
registry_key = shared.registry_key
sqlite_url = shared.sqlite_url
opened_stores = shared.opened_stores


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def make_store(database_url: str, registry_key: SigningKeyPair, clock: shared.FakeClock,
               opened_stores: list[Store]) -> shared.StoreFactory:
    return shared.make_store_factory(database_url, registry_key, clock, opened_stores)


@pytest.fixture
def store(make_store: shared.StoreFactory) -> Store:
    return make_store(initialise=True)
