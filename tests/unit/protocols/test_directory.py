"""The directory as JSON and as a signed document: round trips and tampering (hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys import SigningKeyPair, b64decode, b64encode, key_id, verify_signature
from protocols.directory import (
    directory_bytes,
    directory_from_dict,
    directory_to_dict,
    format_time,
    parse_time,
    sign_directory,
    verify_directory,
)
from protocols.errors import DirectoryError
from protocols.model import (
    Category,
    CategoryId,
    Directory,
    Ground,
    GroundId,
    KeyRecord,
    LegalBasis,
    Manager,
    Organisation,
    OrgId,
    Protocol,
    ProtocolId,
    ProtocolStatus,
    Purpose,
    PurposeId,
    Role,
    Unit,
    UnitId,
)

REGISTRY_KEY = SigningKeyPair.from_seed(bytes(range(32)))

# Wire spec names: runs of letters and digits joined by single hyphens.
names = st.lists(st.text("abcdez0189", min_size=1, max_size=6), min_size=1,
                 max_size=3).map("-".join)
text = st.text(max_size=30)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(UTC)).map(lambda t: t.replace(microsecond=0))
optional_times = st.none() | times
name_sets = st.frozensets(names, max_size=4)


@st.composite
def purposes(draw: st.DrawFn) -> Purpose:
    return Purpose(
        id=PurposeId(draw(names)), title=draw(text), description=draw(text),
        opens=draw(st.frozensets(st.sampled_from(["referral", "request"]), min_size=1)),
        sender_roles=frozenset(Role(r) for r in draw(name_sets | st.just(frozenset({"*"})))),
        recipient_roles=frozenset(Role(r) for r in draw(name_sets)),
        data_categories=frozenset(CategoryId(c) for c in draw(name_sets)),
        consent_required=draw(st.booleans()),
        grounds=frozenset(GroundId(g) for g in draw(name_sets)),
        subject_may_be_withheld=draw(st.booleans()),
        approval=draw(st.sampled_from(["never", "always", "when_refused"])),
        legal_basis=LegalBasis(article6=draw(text), article9=draw(st.none() | text),
                               dpa_schedule1=draw(st.none() | text),
                               dpa_part3=draw(st.none() | text)),
    )


@st.composite
def protocols_(draw: st.DrawFn) -> Protocol:
    return Protocol(
        id=ProtocolId(draw(names)), version=draw(st.integers(1, 1000)), title=draw(text),
        status=draw(st.sampled_from(list(ProtocolStatus))), effective_from=draw(times),
        ends_at=draw(optional_times), review_by=draw(optional_times), approved_by=draw(text),
        signatories=frozenset(OrgId(o) for o in draw(name_sets)),
        grounds=tuple(Ground(id=GroundId(g), title=draw(text))
                      for g in draw(st.lists(names, max_size=3))),
        categories=tuple(Category(id=CategoryId(c), title=draw(text), special=draw(st.booleans()))
                         for c in draw(st.lists(names, max_size=3))),
        purposes=tuple(draw(st.lists(purposes(), max_size=3))),
        security=draw(text), retention=draw(text),
    )


@st.composite
def organisations(draw: st.DrawFn) -> Organisation:
    org = OrgId(draw(names))
    units = tuple(Unit(org=org, id=UnitId(u), name=draw(text),
                       roles=frozenset(Role(r) for r in draw(name_sets)))
                  for u in draw(st.lists(names, max_size=3, unique=True)))
    return Organisation(id=org, name=draw(text), sector=draw(names), units=units)


@st.composite
def key_records(draw: st.DrawFn) -> KeyRecord:
    public = draw(st.binary(min_size=32, max_size=32))
    holder = draw(st.sampled_from(["unit", "manager", "broker"]))
    return KeyRecord(
        key_id=key_id(public), holder=holder, owner=draw(names),
        use=draw(st.sampled_from(["signing", "encryption"])), public=public,
        valid_from=draw(times), valid_until=draw(optional_times), revoked_at=draw(optional_times),
        revocation_reason=draw(st.none() | text),
        manager=draw(names) if holder == "manager" else None,
    )


@st.composite
def directories(draw: st.DrawFn) -> Directory:
    return Directory(
        version=draw(st.integers(0, 10**6)), issued_at=draw(times),
        organisations=tuple(draw(st.lists(organisations(), max_size=3))),
        protocols=tuple(draw(st.lists(protocols_(), max_size=2))),
        keys=tuple(draw(st.lists(key_records(), max_size=4))),
        managers=tuple(Manager(id=m, org=OrgId(draw(names)), title=draw(text))
                       for m in draw(st.lists(names, max_size=2))),
    )


SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SLOW
@given(directories())
def test_to_dict_from_dict_round_trip(d: Directory) -> None:
    assert directory_from_dict(directory_to_dict(d)) == d
    assert directory_from_dict(json.loads(directory_bytes(d))) == d


@SLOW
@given(directories())
def test_signed_directory_verifies(d: Directory) -> None:
    assert verify_directory(sign_directory(d, REGISTRY_KEY), REGISTRY_KEY.public) == d


@SLOW
@given(directories(), st.data())
def test_any_flipped_byte_of_a_signed_directory_is_refused(d: Directory,
                                                          data: st.DataObject) -> None:
    document = bytearray(sign_directory(d, REGISTRY_KEY))
    at = data.draw(st.integers(0, len(document) - 1))
    document[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DirectoryError):
        verify_directory(bytes(document), REGISTRY_KEY.public)


@SLOW
@given(directories(), st.data())
def test_a_flipped_byte_of_the_directory_body_breaks_the_signature(
        d: Directory, data: st.DataObject) -> None:
    # Re-encoded correctly, so only the signature can catch it.
    doc = json.loads(sign_directory(d, REGISTRY_KEY))
    body = bytearray(b64decode(doc["directory"]))
    at = data.draw(st.integers(0, len(body) - 1))
    body[at] ^= data.draw(st.integers(1, 255))
    doc["directory"] = b64encode(bytes(body))
    with pytest.raises(DirectoryError, match="does not verify"):
        verify_directory(json.dumps(doc).encode(), REGISTRY_KEY.public)


@given(st.binary(max_size=200), st.data())
def test_sign_verify_with_one_flipped_byte(message: bytes, data: st.DataObject) -> None:
    pair = SigningKeyPair.from_seed(bytes(32))
    sig = pair.sign(message)
    assert verify_signature(pair.public, message, sig)
    flip_sig = data.draw(st.booleans()) or not message
    target = bytearray(sig if flip_sig else message)
    target[data.draw(st.integers(0, len(target) - 1))] ^= data.draw(st.integers(1, 255))
    if flip_sig:
        assert not verify_signature(pair.public, message, bytes(target))
    else:
        assert not verify_signature(pair.public, bytes(target), sig)


def test_a_directory_signed_by_another_key_is_refused() -> None:
    d = Directory(version=1, issued_at=datetime(2026, 1, 1, tzinfo=UTC), organisations=(),
                  protocols=(), keys=())
    with pytest.raises(DirectoryError, match="not pinned"):
        verify_directory(sign_directory(d, SigningKeyPair.generate()), REGISTRY_KEY.public)


@pytest.mark.parametrize("field", ["public", "key_id"])
def test_malformed_key_entries_are_directory_errors(field: str) -> None:
    pair = SigningKeyPair.generate()
    entry = {"key_id": pair.key_id, "holder": "unit", "owner": "a/b", "use": "signing",
             "public": b64encode(pair.public), "valid_from": "2026-01-01T00:00:00Z",
             "valid_until": None, "revoked_at": None}
    entry[field] = 5 if field == "public" else "0" * 32
    doc = {"version": 1, "issued_at": "2026-01-01T00:00:00Z", "organisations": [],
           "protocols": [], "keys": [entry]}
    with pytest.raises(DirectoryError):
        directory_from_dict(doc)


@given(times)
def test_time_text_round_trip(t: datetime) -> None:
    assert parse_time(format_time(t)) == t


@pytest.mark.parametrize("value", ["2016-04- 1T00:00:00Z", "2016-04-01T00:00:00+00:00",
                                   "2016-04-01 00:00:00Z", "2016-04-01T00:00:00.5Z",
                                   "2016-04-01T24:00:00Z"])
def test_only_canonical_times_parse(value: str) -> None:
    with pytest.raises(ValueError):
        parse_time(value)
