"""RegistryClient against a served registry: pinning, refusing to go back, errors."""

from __future__ import annotations

import socket

import pytest
from registry_testing import wy_text
from sqlalchemy import delete

from keys import SigningKeyPair
from registry.client import RegistryClient
from registry.errors import (
    Forbidden,
    NotFound,
    RegistryUnavailable,
    Unauthenticated,
    UntrustedDirectory,
)
from registry.tables import versions

pytestmark = pytest.mark.integration


@pytest.fixture
def agency(served):  # type: ignore[no-untyped-def]
    served.store.load_protocol(wy_text(), actor="test:admin")
    served.store.register_manager("m-1", "leeds-cc", "Head", actor="test:admin")
    _, secret = served.store.create_token("agency", "client tests", actor="test:admin")
    return secret


def test_directory_verifies_against_the_pinned_key(served, agency) -> None:  # type: ignore[no-untyped-def]
    client = RegistryClient(served.url, agency, served.key.public)
    d = client.directory()
    assert d == served.store.directory()
    assert client.highest_seen == 2
    assert client.directory(1) == served.store.directory(1)
    assert client.signed_directory(0) == served.store.signed_directory(0)
    assert [(v.version, v.change) for v in client.versions()] == [
        (0, "init"), (1, "load_protocol"), (2, "register_manager")]


def test_a_directory_signed_by_another_key_is_refused(served, agency) -> None:  # type: ignore[no-untyped-def]
    client = RegistryClient(served.url, agency, SigningKeyPair.generate().public)
    with pytest.raises(UntrustedDirectory):
        client.directory()
    assert client.highest_seen == -1


def test_a_lower_current_version_is_refused(served, agency) -> None:  # type: ignore[no-untyped-def]
    client = RegistryClient(served.url, agency, served.key.public)
    assert client.directory().version == 2
    # The registry is rolled back (a restored backup, a replaying proxy): its
    # current directory is now version 1, validly signed but older.
    with served.store.engine.begin() as conn:
        conn.execute(delete(versions).where(versions.c.version == 2))
    with pytest.raises(UntrustedDirectory):
        client.directory()
    # An old version asked for by number is still fine (the audit replay does that).
    assert client.directory(1).version == 1
    # A new client that never saw version 2 accepts version 1.
    assert RegistryClient(served.url, agency, served.key.public).directory().version == 1


def test_errors_are_translated(served, agency) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unauthenticated):
        RegistryClient(served.url, "isr_wrong", served.key.public).directory()
    with pytest.raises(NotFound):
        RegistryClient(served.url, agency, served.key.public).directory(99)
    _, auditor = served.store.create_token("agency", "x", actor="test:admin")
    with pytest.raises(Forbidden):
        RegistryClient(served.url, auditor, served.key.public)._get("/history")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(RegistryUnavailable):
        RegistryClient(f"http://127.0.0.1:{closed}", agency, served.key.public,
                       timeout=5).directory()


def test_an_unchanged_directory_is_revalidated_not_sent_again(served, agency) -> None:  # type: ignore[no-untyped-def]
    import urllib.error
    import urllib.request

    client = RegistryClient(served.url, agency, served.key.public)
    first = client.directory()
    # The same verified object comes back: the registry answered 304 without a body.
    assert client.directory() is first
    request = urllib.request.Request(f"{served.url}/api/v1/directory", headers={
        "Authorization": f"Bearer {agency}"})
    with urllib.request.urlopen(request) as r:
        etag = r.headers["ETag"]
    request.add_header("If-None-Match", etag)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request)
    assert e.value.code == 304 and e.value.read() == b""
    # A change is a new document: fetched, verified, and higher.
    served.store.register_manager("m-2", "leeds-cc", "Deputy", actor="test:admin")
    second = client.directory()
    assert second.version == first.version + 1 and client.directory() is second
