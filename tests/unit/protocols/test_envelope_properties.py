"""Properties of protocols.envelope: round trips, and every flipped byte is refused."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from envelope_factories import (
    CATEGORIES,
    FRONT_DOOR,
    POLICE,
    PROTOCOL,
    REFERRAL,
    T0,
    EmptyLog,
    compact,
    flip_byte,
    referral,
    world,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keys import b64encode, verify_signature
from protocols.envelope import (
    EnvelopeRefused,
    ParsedEnvelope,
    PayloadRefused,
    build_envelope,
    countersign,
    open_payload,
    parse_envelope,
    verify_sender_signature,
)
from protocols.model import Consent, GroundId, amqp_user
from protocols.policy import decide, signing_input
from protocols.reasons import Reason

# No deadline: these assert behaviour, never time.
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
records = st.dictionaries(st.sampled_from(CATEGORIES), json_values, max_size=len(CATEGORIES))
consents = st.sampled_from([
    Consent("given", None),
    Consent("not_sought", GroundId("child-significant-harm")),
])
offsets = st.integers(min_value=0)
masks = st.integers(min_value=1, max_value=255)


def _decide(env: ParsedEnvelope) -> Reason | None:
    sub = env.submission(amqp_user(env.header.sender))
    return decide(sub, world().directory, EmptyLog(), T0).reason


@cache
def _signed_twice() -> tuple[bytes, ParsedEnvelope]:
    """A referral countersigned by a manager of the sender's organisation, valid as built."""
    body, _ = referral()
    body = countersign(body, world().police_manager)
    env = parse_envelope(body)
    assert _decide(env) is None
    return body, env


def _with(body: bytes, **top: Any) -> bytes:
    d = json.loads(body)
    d.update(top)
    return compact(d)


@PROPERTY
@given(record=records, reasons=st.text(), consent=consents, informed=st.booleans())
def test_round_trip(record: dict[str, Any], reasons: str, consent: Consent,
                    informed: bool) -> None:
    w = world()
    body, built = build_envelope(
        kind="referral", protocol=PROTOCOL, purpose=REFERRAL, sender=POLICE,
        recipient=FRONT_DOOR, record=record, reasons=reasons, sender_key=w.police_sign,
        recipient_key=w.door_enc.public, created_at=T0, consent=consent,
        subject_informed=informed)
    env = parse_envelope(body)
    assert env == built
    assert env.header.data_categories == tuple(sorted(record))
    assert verify_sender_signature(env, w.police_sign.public)
    assert _decide(env) is None
    payload = open_payload(env, w.door_enc)
    assert payload.record == record and payload.reasons == reasons


@PROPERTY
@given(offset=offsets, mask=masks)
def test_flipped_header_byte_is_refused(offset: int, mask: int) -> None:
    body, env = _signed_twice()
    flipped = flip_byte(env.header_bytes, offset % len(env.header_bytes), mask)
    try:
        tampered = parse_envelope(_with(body, header=b64encode(flipped)))
    except EnvelopeRefused as e:
        assert e.reason == Reason.MALFORMED
        return
    assert tampered.header_bytes == flipped
    assert not verify_sender_signature(tampered, world().police_sign.public)
    assert not verify_signature(world().police_manager.public, signing_input(flipped),
                                tampered.signatures[1].sig)
    assert _decide(tampered) is not None


@PROPERTY
@given(which=st.sampled_from([0, 1]), offset=st.integers(0, 63), mask=masks)
def test_flipped_signature_byte_is_refused(which: int, offset: int, mask: int) -> None:
    body, env = _signed_twice()
    d = json.loads(body)
    d["signatures"][which]["sig"] = b64encode(flip_byte(env.signatures[which].sig, offset, mask))
    tampered = parse_envelope(compact(d))
    signer = (world().police_sign, world().police_manager)[which]
    assert not verify_signature(signer.public, signing_input(tampered.header_bytes),
                                tampered.signatures[which].sig)
    assert verify_sender_signature(tampered, world().police_sign.public) == (which == 1)
    assert _decide(tampered) == Reason.BAD_SIGNATURE


@PROPERTY
@given(which=st.sampled_from([0, 1]), offset=st.integers(0, 31), mask=masks)
def test_flipped_signature_key_id_is_refused(which: int, offset: int, mask: int) -> None:
    body, _ = _signed_twice()
    d = json.loads(body)
    key = d["signatures"][which]["key"].encode()
    d["signatures"][which]["key"] = flip_byte(key, offset, mask).decode("latin-1")
    try:
        tampered = parse_envelope(compact(d))
    except EnvelopeRefused as e:
        assert e.reason == Reason.MALFORMED
        return
    expected = Reason.KEY_NOT_VALID if which == 0 else Reason.BAD_SIGNATURE
    assert _decide(tampered) == expected


@PROPERTY
@given(offset=offsets, mask=masks)
def test_flipped_payload_byte_is_refused(offset: int, mask: int) -> None:
    body, env = _signed_twice()
    flipped = flip_byte(env.payload, offset % len(env.payload), mask)
    tampered = parse_envelope(_with(body, payload=b64encode(flipped)))
    # The header and its signatures are untouched, so only the payload check fails.
    assert verify_sender_signature(tampered, world().police_sign.public)
    assert _decide(tampered) == Reason.PAYLOAD_MISMATCH
    with pytest.raises(PayloadRefused) as e:
        open_payload(tampered, world().door_enc)
    assert e.value.code == "payload_mismatch"


@PROPERTY
@given(data=st.data(),
       separators=st.sampled_from([(",", ":"), (", ", ": "), (",", ": "), (" ,", " :")]),
       indent=st.sampled_from([None, 0, 1, 2, "\t"]),
       ascii_only=st.booleans())
def test_reserialised_header_fails_the_signature(data: st.DataObject,
                                                 separators: tuple[str, str],
                                                 indent: int | str | None,
                                                 ascii_only: bool) -> None:
    body, env = _signed_twice()
    doc = json.loads(env.header_bytes)
    order = data.draw(st.permutations(list(doc)))
    again = json.dumps({k: doc[k] for k in order}, separators=separators, indent=indent,
                       ensure_ascii=ascii_only).encode()
    assume(again != env.header_bytes)
    tampered = parse_envelope(_with(body, header=b64encode(again)))
    # The same header, read back: only the bytes differ, and the bytes are what is signed.
    assert tampered.header == env.header
    assert not verify_sender_signature(tampered, world().police_sign.public)
    assert _decide(tampered) == Reason.BAD_SIGNATURE
