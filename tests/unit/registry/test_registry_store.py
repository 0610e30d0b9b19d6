"""The registry store: every operation, history, exact old versions, signatures, races.

These tests take a ``store``/``make_store`` fixture; the unit conftest gives a
SQLite file, and tests/integration/registry runs the very same functions on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from registry_testing import (
    START,
    FakeClock,
    StoreFactory,
    flip_byte,
    with_version,
    wy_text,
)
from sqlalchemy import select, update

from keys import PublicKeyFile, SigningKeyPair, key_id, new_keys
from protocols.directory import DIRECTORY_CONTEXT, format_time, verify_directory
from protocols.errors import DirectoryError
from protocols.model import ProtocolStatus
from registry.changes import KeyOwner
from registry.errors import (
    Conflict,
    Invalid,
    LastBrokerKey,
    NotFound,
    NotInitialised,
    RegistryError,
)
from registry.store import Store, hash_secret
from registry.tables import tokens, versions

LEEDS_FRONT = "leeds-cc/front-door"


@pytest.fixture
def loaded(store: Store) -> Store:
    store.load_protocol(wy_text(), actor="test:admin")
    return store


def _unit_key(store: Store, owner: str = LEEDS_FRONT, use: str = "signing") -> tuple[bytes, int]:
    made = new_keys("unit", owner)
    offered = {"signing": made.files["signing"]}
    if use == "encryption":
        offered["encryption"] = made.files["encryption"]
    v = store.register_keys(KeyOwner("unit", owner), offered, START, actor="test:admin")
    return made.files[use].public, v


# --- set-up ---------------------------------------------------------------------------


def test_initialise_makes_version_0_an_empty_directory(store: Store) -> None:
    d = store.directory()
    assert (d.version, d.organisations, d.protocols, d.keys, d.managers) == (0, (), (), (), ())
    [v0] = store.history()
    assert (v0.version, v0.actor, v0.action) == (0, "test:init", "init")


def test_initialise_twice_is_a_conflict(store: Store, make_store: StoreFactory) -> None:
    with pytest.raises(Conflict):
        make_store().initialise(actor="test:again")
    assert store.latest_version() == 0


def test_reading_an_uninitialised_database_says_so(make_store: StoreFactory) -> None:
    with pytest.raises(NotInitialised):
        make_store().directory()


# --- protocols ------------------------------------------------------------------------


def test_load_protocol_adds_protocol_and_parties(loaded: Store) -> None:
    d = loaded.directory()
    assert d.version == 1
    p = d.protocol("wy-iisp-2016")
    assert p is not None and p.version == 1 and len(p.purposes) == 10
    assert {o.id for o in d.organisations} >= set(p.signatories)
    assert d.unit(LEEDS_FRONT) is not None
    entry = loaded.history()[-1]
    assert (entry.version, entry.actor, entry.action) == (1, "test:admin", "load_protocol")
    assert entry.detail["protocol"] == "wy-iisp-2016"
    assert entry.detail["protocol_version"] == 1
    assert entry.detail["previous_version"] is None
    assert loaded.protocol_source("wy-iisp-2016", 1) == wy_text()


def test_loading_the_same_protocol_version_again_is_a_conflict(loaded: Store) -> None:
    with pytest.raises(Conflict):
        loaded.load_protocol(wy_text(), actor="test:admin")
    assert loaded.latest_version() == 1


def test_a_higher_version_replaces_the_protocol_and_keeps_other_units(loaded: Store) -> None:
    loaded.add_unit("leeds-cc", "youth-justice", "Youth Justice Service", ["youth-justice"],
                    actor="test:admin")
    v = loaded.load_protocol(with_version(wy_text(), 2), actor="test:admin")
    d = loaded.directory()
    assert v == 3 and d.protocol("wy-iisp-2016").version == 2  # type: ignore[union-attr]
    assert d.unit("leeds-cc/youth-justice") is not None
    assert loaded.history()[-1].detail["previous_version"] == 1
    # The older version's file is still there, as loaded.
    assert loaded.protocol_source("wy-iisp-2016", 1) == wy_text()
    with pytest.raises(Conflict):
        loaded.load_protocol(wy_text(), actor="test:admin")


def test_an_invalid_protocol_file_names_its_problems_and_changes_nothing(store: Store) -> None:
    broken = wy_text().replace("status: in_force", "status: sometimes", 1)
    with pytest.raises(Invalid) as e:
        store.load_protocol(broken, actor="test:admin")
    assert "status" in e.value.fields
    with pytest.raises(Invalid):
        store.load_protocol("{{{ not yaml", actor="test:admin")
    assert store.latest_version() == 0


def test_set_protocol_status_and_dates(loaded: Store) -> None:
    ends = START + timedelta(days=365)
    v = loaded.set_protocol_status("wy-iisp-2016", "suspended", ends_at=ends,
                                   actor="test:admin")
    p = loaded.directory().protocol("wy-iisp-2016")
    assert p is not None
    assert (p.status, p.ends_at) == (ProtocolStatus.SUSPENDED, ends)
    assert not p.in_force(START)
    h = loaded.history()[-1]
    assert (h.version, h.action) == (v, "set_protocol_status")
    assert h.detail["status"] == "suspended" and h.detail["previous_status"] == "in_force"
    assert h.detail["ends_at"] == format_time(ends)


@pytest.mark.parametrize(("protocol", "status", "ends_days", "error"), [
    ("no-such-protocol", "in_force", None, NotFound),
    ("wy-iisp-2016", "paused", None, Invalid),
    ("wy-iisp-2016", "in_force", -365 * 20, Invalid),
])
def test_set_protocol_status_refuses(loaded: Store, protocol: str, status: str,
                                     ends_days: int | None, error: type[Exception]) -> None:
    ends = None if ends_days is None else START + timedelta(days=ends_days)
    with pytest.raises(error):
        loaded.set_protocol_status(protocol, status, ends_at=ends, actor="test:admin")
    assert loaded.latest_version() == 1


# --- units ----------------------------------------------------------------------------


def test_add_set_roles_and_remove_a_unit(loaded: Store) -> None:
    loaded.add_unit("leeds-cc", "youth-justice", "Youth Justice Service", ["youth-justice"],
                    actor="test:a")
    loaded.set_unit_roles("leeds-cc", "youth-justice", ["youth-justice", "marac"],
                          actor="test:b")
    u = loaded.directory().unit("leeds-cc/youth-justice")
    assert u is not None and u.roles == {"youth-justice", "marac"}
    loaded.remove_unit("leeds-cc", "youth-justice", actor="test:c")
    assert loaded.directory().unit("leeds-cc/youth-justice") is None
    assert [(h.actor, h.action) for h in loaded.history()[-3:]] == [
        ("test:a", "add_unit"), ("test:b", "set_unit_roles"), ("test:c", "remove_unit")]
    # Version 3 still has the unit with both roles.
    assert loaded.directory(3).unit("leeds-cc/youth-justice") is not None


@pytest.mark.parametrize(("org", "unit", "name", "roles", "error"), [
    ("no-such-org", "team", "Team", ["r"], NotFound),
    ("leeds-cc", "front-door", "Twice", ["r"], Conflict),
    ("leeds-cc", "Bad_Id", "Team", ["r"], Invalid),
    ("leeds-cc", "team", "   ", ["r"], Invalid),
    ("leeds-cc", "team", "Team", [], Invalid),
    ("leeds-cc", "team", "Team", ["r", "r"], Invalid),
    ("leeds-cc", "team", "Team\x00", ["r"], Invalid),
])
def test_add_unit_refuses(loaded: Store, org: str, unit: str, name: str, roles: list[str],
                          error: type[Exception]) -> None:
    with pytest.raises(error):
        loaded.add_unit(org, unit, name, roles, actor="test:admin")
    assert loaded.latest_version() == 1


def test_set_roles_and_remove_of_a_missing_unit_are_not_found(loaded: Store) -> None:
    with pytest.raises(NotFound):
        loaded.set_unit_roles("leeds-cc", "nobody", ["r"], actor="test:admin")
    with pytest.raises(NotFound):
        loaded.remove_unit("leeds-cc", "nobody", actor="test:admin")


def test_a_unit_with_a_valid_key_cannot_be_removed_until_it_is_revoked(loaded: Store) -> None:
    public, _ = _unit_key(loaded)
    with pytest.raises(Conflict):
        loaded.remove_unit("leeds-cc", "front-door", actor="test:admin")
    loaded.revoke_key(key_id(public), "unit closing", actor="test:admin")
    loaded.remove_unit("leeds-cc", "front-door", actor="test:admin")
    assert loaded.directory().unit(LEEDS_FRONT) is None


# --- keys and managers ----------------------------------------------------------------


def test_register_a_units_two_keys_from_their_files(loaded: Store) -> None:
    made = new_keys("unit", LEEDS_FRONT)
    v = loaded.register_keys(KeyOwner("unit", LEEDS_FRONT), made.files, START,
                             START + timedelta(days=365), actor="test:admin")
    d = loaded.directory()
    sig, enc = made.files["signing"], made.files["encryption"]
    k = d.unit_key(sig.key_id, LEEDS_FRONT, "signing")
    assert v == 2 and k is not None and k.public == made.signing.public
    assert k.valid_from == START and k.valid_until == START + timedelta(days=365)
    assert d.unit_key(enc.key_id, LEEDS_FRONT, "encryption") is not None
    assert loaded.history()[-1].detail == {
        "holder": "unit", "owner": LEEDS_FRONT, "valid_from": format_time(START),
        "valid_until": format_time(START + timedelta(days=365)),
        "keys": [{"key_id": sig.key_id, "use": "signing"},
                 {"key_id": enc.key_id, "use": "encryption"}]}


def test_an_encryption_key_alone_needs_its_units_signing_key_registered(loaded: Store) -> None:
    made = new_keys("unit", LEEDS_FRONT)
    owner = KeyOwner("unit", LEEDS_FRONT)
    with pytest.raises(Invalid) as refused:
        loaded.register_keys(owner, {"encryption": made.files["encryption"]}, START,
                             actor="test:admin")
    assert refused.value.code == "proof_key_not_registered"
    loaded.register_keys(owner, {"signing": made.files["signing"]}, START, actor="test:admin")
    loaded.register_keys(owner, {"encryption": made.files["encryption"]}, START,
                         actor="test:admin")
    assert loaded.directory().current_key(LEEDS_FRONT, "encryption", START) is not None


def _forged(f: PublicKeyFile, **change: object) -> PublicKeyFile:
    return replace(f, **change)  # type: ignore[arg-type]


def test_key_files_for_another_unit_use_or_without_proof_are_refused(loaded: Store) -> None:
    owner = KeyOwner("unit", LEEDS_FRONT)
    mine = new_keys("unit", LEEDS_FRONT)
    other = new_keys("unit", "leeds-cc/early-help")
    sig, enc = mine.files["signing"], mine.files["encryption"]
    cases: list[tuple[dict[str, PublicKeyFile], str]] = [
        (other.files, "wrong_owner"),
        ({"signing": other.files["signing"]}, "wrong_owner"),
        ({"signing": enc, "encryption": sig}, "wrong_use"),
        ({"signing": _forged(sig, owner="leeds-cc/early-help")}, "wrong_owner"),
        ({"signing": _forged(sig, proof_sig=flip_byte(sig.proof_sig, 5))}, "bad_proof"),
        # A copy of someone's public key claimed as one's own: the proof does not verify.
        ({"signing": _forged(other.files["signing"], owner=LEEDS_FRONT)}, "bad_proof"),
        ({"signing": sig, "encryption": _forged(enc, proof_sig=flip_byte(enc.proof_sig, 0))},
         "bad_proof"),
        ({"signing": sig, "encryption": other.files["encryption"]}, "wrong_owner"),
        ({"signing": sig, "encryption": _forged(other.files["encryption"], owner=LEEDS_FRONT)},
         "proof_key_not_registered"),
    ]
    for offered, code in cases:
        with pytest.raises(Invalid) as refused:
            loaded.register_keys(owner, offered, START, actor="test:admin")
        assert refused.value.code == code, (offered, refused.value)
        assert refused.value.fields, "a sentence saying what to change"
    assert loaded.latest_version() == 1


def test_register_keys_refuses(loaded: Store) -> None:
    made = new_keys("unit", LEEDS_FRONT)
    loaded.register_keys(KeyOwner("unit", LEEDS_FRONT), made.files, START, actor="test:admin")
    nobody = new_keys("unit", "leeds-cc/nobody")
    with pytest.raises(NotFound):
        loaded.register_keys(KeyOwner("unit", "leeds-cc/nobody"), nobody.files, START,
                             actor="test:admin")
    with pytest.raises(Conflict):
        loaded.register_keys(KeyOwner("unit", LEEDS_FRONT), made.files, START,
                             actor="test:admin")
    fresh = new_keys("unit", LEEDS_FRONT)
    with pytest.raises(Invalid):
        loaded.register_keys(KeyOwner("unit", LEEDS_FRONT), fresh.files, START,
                             START - timedelta(seconds=1), actor="test:admin")
    with pytest.raises(Invalid):
        loaded.register_keys(KeyOwner("unit", LEEDS_FRONT), {}, START, actor="test:admin")
    assert loaded.latest_version() == 2


def test_manager_and_broker_keys(loaded: Store) -> None:
    loaded.register_manager("lcc-hos-01", "leeds-cc", "Head of Service", actor="test:admin")
    manager = new_keys("manager", "leeds-cc", "lcc-hos-01")
    expected = loaded.manager_keys("lcc-hos-01")
    assert expected == KeyOwner("manager", "leeds-cc", "lcc-hos-01")
    with pytest.raises(NotFound):
        loaded.manager_keys("m-404")
    unit_keys = new_keys("unit", LEEDS_FRONT)
    with pytest.raises(Invalid):  # a unit's encryption key offered for a manager
        loaded.register_keys(expected, {"encryption": unit_keys.files["encryption"]}, START,
                             actor="test:admin")
    bradford = new_keys("manager", "bradford-mdc", "lcc-hos-01")
    with pytest.raises(Invalid) as refused:  # the manager belongs to Leeds, not Bradford
        loaded.register_keys(expected, bradford.files, START, actor="test:admin")
    assert refused.value.code == "wrong_owner"
    loaded.register_keys(expected, manager.files, START, actor="test:admin")
    broker = new_keys("broker", "broker")
    with pytest.raises(Invalid) as refused:
        loaded.register_keys(KeyOwner("broker", "broker"), manager.files, START,
                             actor="test:admin")
    assert refused.value.code == "wrong_owner"
    loaded.register_keys(KeyOwner("broker", "broker"), broker.files, START, actor="test:admin")
    d = loaded.directory()
    assert d.manager_key(manager.files["signing"].key_id, "leeds-cc") is not None
    assert d.current_key("broker", "signing", START, holder="broker").public == \
        broker.signing.public  # type: ignore[union-attr]
    assert [m.id for m in d.managers] == ["lcc-hos-01"]


def test_the_last_valid_broker_key_needs_a_second_confirmation(loaded: Store,
                                                               clock: FakeClock) -> None:
    broker = KeyOwner("broker", "broker")
    first, second = new_keys("broker", "broker"), new_keys("broker", "broker")
    loaded.register_keys(broker, first.files, START, actor="test:admin")
    loaded.register_keys(broker, second.files, START, actor="test:admin")
    loaded.revoke_key(first.files["signing"].key_id, "rotated", actor="test:admin")
    with pytest.raises(LastBrokerKey):
        loaded.revoke_key(second.files["signing"].key_id, "stopping", actor="test:admin")
    loaded.revoke_key(second.files["signing"].key_id, "stopping", actor="test:admin",
                      last_broker_key=True)
    assert loaded.directory().current_key("broker", "signing", clock.now,
                                          holder="broker") is None


def test_register_manager_refuses(loaded: Store) -> None:
    loaded.register_manager("lcc-hos-01", "leeds-cc", "Head of Service", actor="test:admin")
    with pytest.raises(Conflict):
        loaded.register_manager("lcc-hos-01", "leeds-cc", "Other", actor="test:admin")
    with pytest.raises(NotFound):
        loaded.register_manager("x-1", "no-such-org", "Head", actor="test:admin")
    with pytest.raises(Invalid):
        loaded.register_manager("X 1", "leeds-cc", "Head", actor="test:admin")


def test_revoke_key_now_or_backdated(loaded: Store, clock: FakeClock) -> None:
    a, _ = _unit_key(loaded)
    b, _ = _unit_key(loaded)
    clock.advance(3600)
    loaded.revoke_key(key_id(a), "device lost", actor="test:admin")
    loaded.revoke_key(key_id(b), "compromised", at=START + timedelta(minutes=5),
                      actor="test:admin")
    d = loaded.directory()
    ka, kb = d.key(key_id(a)), d.key(key_id(b))
    assert ka is not None and kb is not None
    assert (ka.revoked_at, ka.revocation_reason) == (clock.now, "device lost")
    assert (kb.revoked_at, kb.revocation_reason) == (START + timedelta(minutes=5), "compromised")
    assert kb.valid_at(START) and not kb.valid_at(START + timedelta(minutes=5))
    with pytest.raises(Conflict):
        loaded.revoke_key(key_id(a), "again", actor="test:admin")
    with pytest.raises(NotFound):
        loaded.revoke_key("0" * 32, "no such key", actor="test:admin")
    with pytest.raises(Invalid):
        loaded.revoke_key(key_id(_unit_key(loaded)[0]), "", actor="test:admin")


# --- versions, history, signatures ----------------------------------------------------


def test_every_change_is_a_version_with_actor_and_time(store: Store, clock: FakeClock) -> None:
    clock.advance(10)
    store.load_protocol(wy_text(), actor="token:aaaa")
    clock.advance(10)
    store.register_manager("lcc-hos-01", "leeds-cc", "Head of Service", actor="cli:alice")
    infos = store.versions()
    assert [(v.version, v.actor, v.action) for v in infos] == [
        (0, "test:init", "init"), (1, "token:aaaa", "load_protocol"),
        (2, "cli:alice", "register_manager")]
    assert [v.created_at for v in infos] == [START, START + timedelta(seconds=10),
                                             START + timedelta(seconds=20)]
    assert store.directory(2).issued_at == START + timedelta(seconds=20)
    assert store.change(2).detail == {"manager": "lcc-hos-01", "org": "leeds-cc"}


def test_a_change_needs_an_actor(loaded: Store) -> None:
    with pytest.raises(Invalid):
        loaded.register_manager("m-1", "leeds-cc", "Head", actor="")
    assert loaded.latest_version() == 1


def test_old_versions_read_back_byte_for_byte(store: Store, clock: FakeClock) -> None:
    seen = {0: store.signed_directory()}
    store.load_protocol(wy_text(), actor="test:admin")
    seen[1] = store.signed_directory()
    public, v = _unit_key(store)
    seen[v] = store.signed_directory()
    clock.advance(60)
    v = store.revoke_key(key_id(public), "rotated", actor="test:admin")
    seen[v] = store.signed_directory()
    store.load_protocol(with_version(wy_text(), 2), actor="test:admin")
    for version, document in seen.items():
        assert store.signed_directory(version) == document
        assert store.directory(version).version == version
    assert store.directory(2).key(key_id(public)).revoked_at is None  # type: ignore[union-attr]
    assert store.directory(3).key(key_id(public)).revoked_at is not None  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        store.signed_directory(99)


def test_signed_directory_verifies_and_one_changed_byte_fails(
        loaded: Store, registry_key: SigningKeyPair) -> None:
    document = loaded.signed_directory()
    assert verify_directory(document, registry_key.public) == loaded.directory()
    doc = json.loads(document)
    body = base64.b64decode(doc["directory"])
    for index in (0, len(body) // 2, len(body) - 1):
        forged = dict(doc, directory=base64.b64encode(flip_byte(body, index)).decode())
        with pytest.raises(DirectoryError):
            verify_directory(json.dumps(forged).encode(), registry_key.public)
    sig = base64.b64decode(doc["signature"]["sig"])
    forged = dict(doc, signature={**doc["signature"],
                                  "sig": base64.b64encode(flip_byte(sig, 10)).decode()})
    with pytest.raises(DirectoryError):
        verify_directory(json.dumps(forged).encode(), registry_key.public)
    with pytest.raises(DirectoryError):
        verify_directory(document, SigningKeyPair.generate().public)
    # The signature covers the context string too: the body alone is not what is signed.
    assert registry_key.sign(body) != base64.b64decode(doc["signature"]["sig"])
    assert registry_key.sign(DIRECTORY_CONTEXT + body) == base64.b64decode(
        doc["signature"]["sig"])


def test_a_tampered_row_is_never_served_as_valid(loaded: Store) -> None:
    document = loaded.signed_directory(1)
    doc = json.loads(document)
    body = base64.b64decode(doc["directory"]).replace(b'"in_force"', b'"suspended"', 1)
    forged = json.dumps(dict(doc, directory=base64.b64encode(body).decode())).encode()
    with loaded.engine.begin() as conn:
        conn.execute(update(versions).where(versions.c.version == 1)
                     .values(signed_directory=forged))
    reader = Store(str(loaded.engine.url.render_as_string(hide_password=False)),
                   public_key=loaded.public_key)
    try:
        with pytest.raises(RegistryError):
            reader.directory(1)
    finally:
        reader.close()


def test_a_read_only_store_reads_but_cannot_write(loaded: Store, make_store: StoreFactory,
                                                  registry_key: SigningKeyPair) -> None:
    reader = make_store(signing_key=None, public_key=registry_key.public)
    assert reader.directory() == loaded.directory()
    with pytest.raises(RegistryError):
        reader.register_manager("m-1", "leeds-cc", "Head", actor="test:admin")


# --- concurrent writers ---------------------------------------------------------------


def _racing(store: Store, rival: Store, races: int) -> list[int]:
    """Make ``rival`` commit a change between ``store`` reading and writing, ``races`` times."""
    original = store._latest
    rival_versions: list[int] = []

    def latest_then_rival_writes(conn):  # type: ignore[no-untyped-def]
        current = original(conn)
        if len(rival_versions) < races:
            n = len(rival_versions)
            rival_versions.append(rival.register_manager(f"rival-{n}", "leeds-cc", "Rival",
                                                         actor="test:rival"))
        return current

    store._latest = latest_then_rival_writes  # type: ignore[method-assign]
    return rival_versions


def test_a_writer_that_loses_a_race_retries_once_on_the_new_latest(
        loaded: Store, make_store: StoreFactory) -> None:
    rival = make_store()
    rival_versions = _racing(loaded, rival, races=1)
    v = loaded.register_manager("winner", "leeds-cc", "Head", actor="test:admin")
    assert rival_versions == [2] and v == 3
    d = loaded.directory()
    assert {m.id for m in d.managers} == {"rival-0", "winner"}
    assert [h.version for h in loaded.history()] == [0, 1, 2, 3]


def test_a_writer_that_loses_twice_gets_a_conflict(loaded: Store,
                                                   make_store: StoreFactory) -> None:
    rival = make_store()
    rival_versions = _racing(loaded, rival, races=2)
    with pytest.raises(Conflict):
        loaded.register_manager("loser", "leeds-cc", "Head", actor="test:admin")
    assert rival_versions == [2, 3]
    assert "loser" not in {m.id for m in loaded.directory().managers}
    assert [h.actor for h in loaded.history()[-2:]] == ["test:rival", "test:rival"]


def test_threads_writing_at_once_never_share_or_skip_a_version(
        loaded: Store, make_store: StoreFactory) -> None:
    stores = [make_store() for _ in range(3)]
    results: list[int] = []
    conflicts: list[Conflict] = []
    lock = threading.Lock()

    def work(i: int, s: Store) -> None:
        for n in range(8):
            try:
                v = s.register_manager(f"t{i}-{n}", "leeds-cc", "Head", actor=f"test:{i}")
            except Conflict as e:
                with lock:
                    conflicts.append(e)
            else:
                with lock:
                    results.append(v)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) + len(conflicts) == 24
    assert sorted(results) == list(range(2, 2 + len(results)))
    assert len(loaded.directory().managers) == len(results)


# --- tokens ---------------------------------------------------------------------------


def test_tokens_are_stored_hashed_and_shown_once(store: Store) -> None:
    token_id, secret = store.create_token("auditor", "DPO audit 2024", actor="test:admin")
    [info] = store.list_tokens()
    assert (info.id, info.role, info.label, info.created_by) == (
        token_id, "auditor", "DPO audit 2024", "test:admin")
    with store.engine.connect() as conn:
        row = conn.execute(select(tokens)).one()._mapping
    assert secret not in {str(v) for v in row.values()}
    assert row["token_sha256"] == hash_secret(secret)
    assert store.authenticate(secret) == info
    assert store.authenticate(secret + "x") is None
    assert store.authenticate("") is None


def test_the_last_active_admin_token_cannot_be_revoked(store: Store) -> None:
    first, _ = store.create_token("admin", "first", actor="test:admin")
    with pytest.raises(Conflict):
        store.revoke_token(first, actor="test:admin")
    second, _ = store.create_token("admin", "second", actor="test:admin")
    store.revoke_token(first, actor="test:admin")
    with pytest.raises(Conflict):
        store.revoke_token(second, actor="test:admin")


def test_a_revoked_token_no_longer_authenticates(store: Store) -> None:
    token_id, secret = store.create_token("agency", "broker", actor="test:admin")
    store.revoke_token(token_id, actor="test:admin")
    assert store.authenticate(secret) is None
    [info] = store.list_tokens()
    assert info.revoked_at is not None and info.revoked_by == "test:admin"
    with pytest.raises(Conflict):
        store.revoke_token(token_id, actor="test:admin")
    with pytest.raises(NotFound):
        store.revoke_token("0123456789abcdef", actor="test:admin")
    with pytest.raises(NotFound):
        store.revoke_token("not\x00hex", actor="test:admin")


@pytest.mark.parametrize(("role", "label"), [("root", "x"), ("admin", ""), ("admin", "a" * 101)])
def test_create_token_refuses(store: Store, role: str, label: str) -> None:
    with pytest.raises(Invalid):
        store.create_token(role, label, actor="test:admin")
    assert store.list_tokens() == []


def test_the_cache_never_serves_another_versions_directory(loaded: Store) -> None:
    first = loaded.directory(1)
    loaded.register_manager("m-1", "leeds-cc", "Head", actor="test:admin")
    assert loaded.directory(1) is first
    assert loaded.directory().version == 2
    assert replace(loaded.directory(2), managers=()) != first
