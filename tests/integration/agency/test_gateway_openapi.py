"""schemathesis against the gateway's /openapi.json: every operation, all checks, 0 failures.

The gateway here has a real store and a real registry store for its
directory; it is not connected to RabbitMQ (submissions wait in its queue),
which is all the API needs. As for the registry, ``positive_data_acceptance``
also accepts 422: a body the document calls well formed may still be refused
by the protocol (the reason and a sentence come back).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from registry_testing import wy_text

from agency.bundle import Bundle
from agency.gateway.api import token_digest
from agency.gateway.app import create_app
from agency.gateway.home import UnitKeys
from agency.gateway.service import DirectoryCache, Gateway
from agency.gateway.store import GatewayStore
from keys import SecretKey, SigningKeyPair, new_keys, public_key_text
from registry.changes import KeyOwner
from registry.store import Store

pytestmark = pytest.mark.integration

CONFIG = schemathesis.Config.from_dict({
    "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]}},
})
UNIT = "leeds-cc/education-safeguarding"


@pytest.fixture(scope="module")
def token_and_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    path: Path = tmp_path_factory.mktemp("gateway-openapi")
    registry = Store(f"sqlite:///{path / 'registry.db'}", signing_key=SigningKeyPair.generate())
    registry.initialise(actor="test")
    registry.load_protocol(wy_text(), actor="test")
    since = datetime.now(UTC) - timedelta(minutes=1)
    made = new_keys("unit", UNIT)
    assert made.encryption is not None
    keys = UnitKeys(UNIT, made.signing, [made.encryption])
    registry.register_keys(KeyOwner("unit", UNIT), made.files, since, actor="test")
    store = GatewayStore(f"sqlite:///{path / 'gateway.db'}", SecretKey.generate())
    key_text = public_key_text(SigningKeyPair.generate().public)
    bundle = Bundle(org="leeds-cc", units={UNIT: "unused"}, amqp_nodes=("amqp://127.0.0.1:1",),
                    vhost="infoshare", registry_url="http://127.0.0.1:1",
                    registry_key=key_text, broker_key=key_text)
    gateway = Gateway(org="leeds-cc", store=store, bundle=bundle, units={UNIT: keys},
                      directory=DirectoryCache(registry.directory),
                      state_dir=lambda u: path / "units" / u.replace("/", "."))
    store.add_case_system(id="cs1", unit=UNIT, label="test", token_sha256=token_digest("tok"))
    yield "tok", create_app(gateway, "test secret")
    gateway.close()


@pytest.fixture(scope="module")
def api_schema(token_and_app: tuple[str, Any]) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", token_and_app[1], config=CONFIG)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_gateway_api_conforms_to_its_openapi_document(case: Any,
                                                      token_and_app: tuple[str, Any]) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {token_and_app[0]}"})
