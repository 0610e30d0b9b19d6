"""Auditor tokens checked with a real registry over HTTP: roles, revocation, the cache."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from audit.web.auth import Refused, RegistryTokens
from keys import SigningKeyPair
from registry.app import create_app
from registry.store import Store

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, Store]]:
    store = Store(f"sqlite:///{tmp_path / 'r.sqlite3'}", signing_key=SigningKeyPair.generate())
    store.initialise(actor="test:init")
    app = create_app({"REGISTRY_STORE": store, "SECRET_KEY": "test-secret"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", store
    finally:
        server.shutdown()
        thread.join()
        store.close()


def test_only_an_auditors_token_reads_the_log(registry: tuple[str, Store]) -> None:
    url, store = registry
    tokens = {role: store.create_token(role, f"test {role}", actor="test:init")
              for role in ("auditor", "admin", "agency")}
    check = RegistryTokens(url)
    reader = check.check(tokens["auditor"][1])
    assert reader.token == tokens["auditor"][1] and tokens["auditor"][1] not in reader.label
    for role, says in (("admin", "administrator"), ("agency", "agency")):
        with pytest.raises(Refused) as e:
            check.check(tokens[role][1])
        assert e.value.status == 403 and says in str(e.value)
    with pytest.raises(Refused) as e:
        check.check("not-a-token")
    assert e.value.status == 401


def test_a_revoked_token_is_refused_once_its_answer_expires(registry: tuple[str, Store]) -> None:
    url, store = registry
    token_id, secret = store.create_token("auditor", "test auditor", actor="test:init")
    now = [0.0]
    check = RegistryTokens(url, ttl=30, clock=lambda: now[0])
    check.check(secret)
    store.revoke_token(token_id, actor="test:init")
    check.check(secret)  # still within the cached answer's 30 s
    now[0] = 31.0
    with pytest.raises(Refused) as e:
        check.check(secret)
    assert e.value.status == 401


def test_an_unreachable_registry_is_a_503_not_a_refusal(tmp_path: Path) -> None:
    check = RegistryTokens("http://127.0.0.1:9")
    with pytest.raises(Refused) as e:
        check.check("anything")
    assert e.value.status == 503
