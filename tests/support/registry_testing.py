"""Helpers and fixtures shared by the registry's unit and integration tests.

Loaded by path from both conftests (see ``load_shared`` there), so it has a
name no other test module uses.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from keys import EncryptionKeyPair, SigningKeyPair
from registry.store import Store

REPO = Path(__file__).resolve().parents[2]
WY_FILE = REPO / "protocols" / "definitions" / "west-yorkshire-iisp-2016.yaml"
START = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    """A clock the test moves; every change is stamped with ``now``."""

    now: datetime = START
    calls: list[datetime] = field(default_factory=list)

    def __call__(self) -> datetime:
        self.calls.append(self.now)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def wy_text() -> str:
    return WY_FILE.read_text("utf-8")


def with_version(text: str, version: int) -> str:
    """The protocol file with its top-level ``version`` changed."""
    changed, n = re.subn(r"(?m)^version: \d+$", f"version: {version}", text)
    assert n == 1
    return changed


def flip_byte(data: bytes, index: int) -> bytes:
    """``data`` with one byte changed (PyNaCl's tests do the same)."""
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


def signing_public() -> bytes:
    return SigningKeyPair.generate().public


def encryption_public() -> bytes:
    return EncryptionKeyPair.generate().public


@contextmanager
def served_in_thread(app: object) -> Iterator[str]:
    """A WSGI ``app`` on a real socket (werkzeug, threaded) until the block ends; yields
    its address."""
    server = make_server("127.0.0.1", 0, app, threaded=True)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def west_yorkshire(store: Store, admin_label: str) -> tuple[str, str]:
    """Tables, a first admin token, version 0 and the West Yorkshire protocol, each change
    made by that administrator (so the history names them). Returns the actor they are
    recorded as and the admin token."""
    store.create_tables()
    admin_id, admin = store.create_token("admin", admin_label, actor="setup")
    actor = f"token:{admin_id}"
    store.initialise(actor=actor)
    store.load_protocol(wy_text(), actor=actor)
    return actor, admin


StoreFactory = Callable[..., Store]


@pytest.fixture
def registry_key() -> SigningKeyPair:
    return SigningKeyPair.generate()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_store_factory(url: str, registry_key: SigningKeyPair, clock: FakeClock,
                       opened: list[Store]) -> StoreFactory:
    def make(*, initialise: bool = False, **kwargs: object) -> Store:
        options: dict[str, object] = {"signing_key": registry_key, "clock": clock}
        options.update(kwargs)
        store = Store(url, **options)  # type: ignore[arg-type]
        opened.append(store)
        if initialise:
            store.initialise(actor="test:init")
        return store

    return make


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.sqlite3'}"


@pytest.fixture
def opened_stores() -> Iterator[list[Store]]:
    opened: list[Store] = []
    yield opened
    for s in opened:
        s.close()
