"""schemathesis against /openapi.json: every operation, all checks, zero failures.

One allowance, stated here rather than hidden: ``positive_data_acceptance``
also accepts 422. Some rules cannot be written in JSON Schema (a protocol
file's content is YAML inside a string; a date must exist, such as not
2023-02-30; a key expires after it starts), so a request the document calls
well formed may still be refused as invalid. Every other check runs with its
defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from registry_testing import wy_text

from keys import SigningKeyPair
from registry.app import create_app
from registry.store import Store

pytestmark = pytest.mark.integration

CONFIG = schemathesis.Config.from_dict({
    "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]}},
})


@pytest.fixture(scope="module")
def admin_and_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    path: Path = tmp_path_factory.mktemp("openapi")
    store = Store(f"sqlite:///{path / 'registry.sqlite3'}",
                  signing_key=SigningKeyPair.generate())
    store.initialise(actor="test:init")
    store.load_protocol(wy_text(), actor="test:init")
    _, admin = store.create_token("admin", "schemathesis", actor="test:init")
    # ignored_auth sends one wrong token per operation on purpose; the
    # throttle is tested elsewhere, so here it must not turn those into 429s.
    app = create_app({"REGISTRY_STORE": store, "SECRET_KEY": "test",
                      "REGISTRY_AUTH_FAILURE_LIMIT": 1_000_000})
    yield admin, app
    store.close()


@pytest.fixture(scope="module")
def admin(admin_and_app: tuple[str, Any]) -> str:
    return admin_and_app[0]


@pytest.fixture(scope="module")
def api_schema(admin_and_app: tuple[str, Any]) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", admin_and_app[1], config=CONFIG)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_openapi_document(case: Any, admin: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {admin}"})
