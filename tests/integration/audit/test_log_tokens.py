"""Auditor tokens checked with a real registry over HTTP: roles, revocation, the cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_testing import served_in_thread

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
    try:
        with served_in_thread(app) as url:
            yield url, store
    finally:
        store.close()


def test_only_an_auditors_token_reads_the_log(registry: tuple[str, Store]) -> None:
    url, store = registry
    tokens = {role: store.create_token(role, f"test {role}", actor="test:init")
              for role in ("auditor", "admin", "agency")}
    check = RegistryTokens(url)
    reader = check.check(tokens["auditor"][1])
    assert reader.token == tokens["auditor"][1] and tokens["auditor"][1] not in reader.label
    # The registry's own words for the token: its label on the pages, its id in the logs.
    assert reader.label == f"test auditor (token {tokens['auditor'][0]})"
    assert reader.ref == f"token:{tokens['auditor'][0]}"
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
