"""The gateway's store on SQLite and PostgreSQL, and a submission while the registry is down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from registry_testing import wy_text

from agency.bundle import Bundle
from agency.gateway.home import UnitKeys
from agency.gateway.service import DirectoryCache, Draft, Gateway, RegistryDown
from agency.gateway.store import GatewayStore
from keys import SecretKey, SigningKeyPair, new_keys, public_key_text
from protocols.model import Directory
from registry.changes import KeyOwner
from registry.store import Store

pytestmark = pytest.mark.integration

UNIT = "leeds-cc/childrens-social-care"
SECRET = "a child's name"


def _check_store(store: GatewayStore) -> None:
    assert store.add_message(message_id="5b0f3f4e-8c5a-4d2e-9f55-111111111111",
                             direction="out", unit=UNIT, counterpart="wy-police/x",
                             kind="referral", protocol="p", purpose="q", in_reply_to=None,
                             case_ref="C-1", status="queued", reason=None, origin="api",
                             content={"record": {"identity": SECRET}})
    assert not store.add_message(message_id="5b0f3f4e-8c5a-4d2e-9f55-111111111111",
                                 direction="out", unit=UNIT, counterpart="wy-police/x",
                                 kind="referral", protocol="p", purpose="q", in_reply_to=None,
                                 case_ref="C-1", status="queued", reason=None, origin="api",
                                 content={})
    store.add_event(unit=UNIT, type="not_shared", case_ref="C-1", details={"reasons": SECRET})
    tag = store.case_tag(UNIT, "C-1")
    [m] = store.messages(unit=UNIT, case_tag=tag)
    assert m.content["record"]["identity"] == SECRET
    assert store.events(unit=UNIT, case_tag=tag)[0].details["reasons"] == SECRET
    assert store.update_message(m.message_id, "out", expect=["queued"], status="submitted")
    assert not store.update_message(m.message_id, "out", expect=["queued"], status="routed")
    assert store.pending_ids() == []


def test_sqlite_store_seals_what_it_keeps(tmp_path: Path) -> None:
    store = GatewayStore(f"sqlite:///{tmp_path / 'g.db'}", SecretKey.generate())
    _check_store(store)
    store.close()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("g.db*"))
    assert SECRET.encode() not in data and b"C-1" not in data
    assert (tmp_path / "g.db").stat().st_mode & 0o777 == 0o600


@pytest.mark.postgres
def test_postgres_store(postgres_url: str) -> None:
    store = GatewayStore(postgres_url, SecretKey.generate())
    _check_store(store)
    store.close()


def test_a_submission_while_the_registry_is_down_is_kept_and_checked_later(
        tmp_path: Path) -> None:
    registry = Store(f"sqlite:///{tmp_path / 'r.db'}", signing_key=SigningKeyPair.generate())
    registry.initialise(actor="test")
    registry.load_protocol(wy_text(), actor="test")
    since = datetime.now(UTC) - timedelta(minutes=1)
    made = {addr: new_keys("unit", addr) for addr in (UNIT, "wy-police/intelligence-bureau")}
    for addr, new in made.items():
        registry.register_keys(KeyOwner("unit", addr), new.files, since, actor="test")
    ours = made[UNIT]
    assert ours.encryption is not None
    keys = UnitKeys(UNIT, ours.signing, [ours.encryption])
    up = {"yes": False}

    def fetch() -> Directory:
        if not up["yes"]:
            raise ConnectionRefusedError("registry down")
        return registry.directory()

    text = public_key_text(SigningKeyPair.generate().public)
    gateway = Gateway(org="leeds-cc", store=GatewayStore(f"sqlite:///{tmp_path / 'g.db'}",
                                                         SecretKey.generate()),
                      bundle=Bundle(org="leeds-cc", units={UNIT: "x"},
                                    amqp_nodes=("amqp://127.0.0.1:1",), vhost="v",
                                    registry_url="http://127.0.0.1:1", registry_key=text,
                                    broker_key=text),
                      units={UNIT: keys}, directory=DirectoryCache(fetch),
                      state_dir=lambda u: tmp_path / "units" / u.replace("/", "."))
    draft = Draft(kind="referral", protocol="wy-iisp-2016", purpose="police-intelligence",
                  recipient="wy-police/intelligence-bureau", record={"concern": SECRET},
                  reasons="r", consent="not_sought", ground="serious-crime")
    outcome = gateway.submit(UNIT, "test", draft, origin="api")
    assert outcome.status == "queued" and outcome.note is not None
    assert "registry cannot be reached" in outcome.note
    with pytest.raises(RegistryDown):
        gateway.permissions(UNIT)
    m = gateway.store.message(outcome.message_id, "out")
    assert m is not None and m.body is None
    assert gateway._check_late(m) is None  # still down: kept as it is
    up["yes"] = True
    assert gateway._check_late(m) is not None  # checked, built, ready to publish
    m = gateway.store.message(outcome.message_id, "out")
    assert m is not None and m.body is not None and m.status == "queued"
    gateway.close()


