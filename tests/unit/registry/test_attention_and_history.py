"""What needs attention, and the history in words: pure functions over a real store."""

from __future__ import annotations

from datetime import timedelta

from registry_testing import START, FakeClock, wy_text

from keys import new_keys
from registry.attention import attention
from registry.changes import KeyOwner
from registry.history import events, summary
from registry.store import Store

FRONT = "leeds-cc/front-door"


def test_attention_names_expiring_keys_units_without_keys_the_broker_and_reviews(
        store: Store, clock: FakeClock) -> None:
    store.load_protocol(wy_text(), actor="test:admin")
    made = new_keys("unit", FRONT)
    store.register_keys(KeyOwner("unit", FRONT), made.files, START, START + timedelta(days=10),
                        actor="test:admin")
    now = START + timedelta(days=1)
    found = attention(store.directory(), now)
    assert [k.key_id for k in found.expiring] == [f.key_id for f in made.files.values()]
    units = {w.unit.address: w.missing for w in found.units_without_keys}
    assert FRONT not in units
    assert units["wy-police/safeguarding-hub"] == ("signing", "encryption")
    assert found.broker_without_key
    # The West Yorkshire protocol's review date (2019) is long past at START (2024).
    assert [p.id for p in found.protocols_to_review] == ["wy-iisp-2016"]
    # Expired keys are no longer "expiring": the unit cannot send.
    later = attention(store.directory(), START + timedelta(days=11))
    assert later.expiring == ()
    assert dict((w.unit.address, w.missing) for w in later.units_without_keys)[FRONT] == (
        "signing", "encryption")
    broker = new_keys("broker", "broker")
    store.register_keys(KeyOwner("broker", "broker"), broker.files, START, actor="test:admin")
    assert not attention(store.directory(), now).broker_without_key
    assert attention(store.directory(), now, horizon=timedelta(days=5)).expiring == ()


def test_every_change_reads_as_a_sentence_with_the_tokens_label(store: Store) -> None:
    token_id, _ = store.create_token("admin", "IG officer, Leeds", actor="test:init")
    actor = f"token:{token_id}"
    store.load_protocol(wy_text(), actor=actor)
    store.add_unit("leeds-cc", "youth-justice", "Youth Justice", ["youth-justice"], actor=actor)
    store.set_unit_roles("leeds-cc", "youth-justice", ["youth-justice", "marac"], actor=actor)
    made = new_keys("unit", "leeds-cc/youth-justice")
    store.register_keys(KeyOwner("unit", "leeds-cc/youth-justice"), made.files, START,
                        actor=actor)
    store.revoke_key(made.files["signing"].key_id, "rotated", actor=actor)
    store.register_manager("m-1", "leeds-cc", "Head of Service", actor=actor)
    store.set_protocol_status("wy-iisp-2016", "suspended", actor=actor)
    agency, _ = store.create_token("agency", "Leeds gateway", actor=actor)
    store.revoke_token(agency, actor=actor)
    mine = [e for e in events(store) if e.actor == actor]
    assert {e.who for e in mine} == {"IG officer, Leeds"}
    said = [e.summary for e in mine]
    sig = made.files["signing"].key_id
    assert said == [
        "Loaded protocol wy-iisp-2016 version 1, with parties bradford-mdc, calderdale-mbc, "
        "kirklees-mbc, leeds-cc, wakefield-mdc and wy-police",
        "Added unit leeds-cc/youth-justice with roles youth-justice",
        "Changed the roles of unit leeds-cc/youth-justice to marac and youth-justice "
        "(were youth-justice)",
        f"Registered the signing and encryption keys of unit leeds-cc/youth-justice ({sig}, "
        f"{made.files['encryption'].key_id}), valid from 2024-05-01T09:00:00Z",
        f"Revoked the signing key {sig} of unit leeds-cc/youth-justice from "
        "2024-05-01T09:00:00Z: rotated",
        "Registered manager m-1 of leeds-cc",
        "Set protocol wy-iisp-2016 version 1 to suspended (was in force)",
        f'Granted an agency token {agency} labelled "Leeds gateway"',
        f'Revoked the agency token {agency} labelled "Leeds gateway"',
    ]
    assert "{" not in " ".join(said)


def test_an_unknown_or_damaged_record_is_named_not_a_crash() -> None:
    assert summary("add_unit", {}) == "Add unit ()"
    assert summary("rename_everything", {"a": 1}) == "Rename everything (a)"
