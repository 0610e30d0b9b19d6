"""protocols.envelope: round trips, the malformed-body table, payload bindings, notices."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from envelope_factories import (
    FRONT_DOOR,
    POLICE,
    PROTOCOL,
    REFERRAL,
    S47,
    SECRET_NAME,
    T0,
    EmptyLog,
    body_of,
    compact,
    flip_byte,
    forge,
    header_doc,
    referral,
    world,
)

from keys import SigningKeyPair, b64encode
from protocols.envelope import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_SIGNATURES,
    EnvelopeRefused,
    Notice,
    NoticeRefused,
    ParsedEnvelope,
    PayloadRefused,
    build_envelope,
    build_header,
    build_notice,
    countersign,
    open_payload,
    parse_envelope,
    parse_header,
    parse_notice,
    verify_sender_signature,
)
from protocols.model import Consent, GroundId, amqp_user
from protocols.policy import LoggedMessage, decide
from protocols.reasons import Reason

MALFORMED, TOO_LARGE, UNSUPPORTED = (Reason.MALFORMED, Reason.TOO_LARGE,
                                     Reason.UNSUPPORTED_VERSION)


def _decide(env: ParsedEnvelope, log: Any = None, user: str | None = None) -> Reason | None:
    sub = env.submission(user or amqp_user(env.header.sender))
    return decide(sub, world().directory, log or EmptyLog(), T0).reason


class _Log:
    def __init__(self, *entries: ParsedEnvelope) -> None:
        self._by_id = {e.header.message_id: [_logged(e)] for e in entries}

    def find(self, message_id: str) -> Sequence[LoggedMessage]:
        return self._by_id.get(message_id, [])


def _logged(env: ParsedEnvelope) -> LoggedMessage:
    h = env.header
    return LoggedMessage(message_id=h.message_id, header_sha256=env.header_sha256, kind=h.kind,
                         decision="routed", reason=None, protocol=h.protocol,
                         purpose=h.purpose, sender=h.sender, recipient=h.recipient)


# --- round trips ----------------------------------------------------------------------


def test_referral_round_trip() -> None:
    w = world()
    body, built = referral()
    env = parse_envelope(body)
    assert env == built
    assert env.header.kind == "referral" and env.header.sender == POLICE
    assert env.header.data_categories == ("concern", "identity")
    assert env.header.payload.recipient_key == w.door_enc.key_id
    assert [s.key for s in env.signatures] == [w.police_sign.key_id]
    assert verify_sender_signature(env, w.police_sign.public)
    payload = open_payload(env, w.door_enc)
    assert payload.record["identity"] == {"name": SECRET_NAME, "dob": "2015-03-01"}
    assert (payload.message_id, payload.sender, payload.recipient, payload.purpose) == (
        env.header.message_id, POLICE, FRONT_DOOR, REFERRAL)
    assert _decide(env) is None


def test_header_bytes_are_compact_in_spec_order() -> None:
    _, env = referral()
    assert b" " not in env.header_bytes and b"\n" not in env.header_bytes
    assert list(header_doc(env)) == [
        "message_id", "kind", "protocol", "purpose", "sender", "recipient", "created_at",
        "in_reply_to", "consent", "subject_informed", "data_categories", "payload"]
    assert header_doc(env)["created_at"] == "2026-11-24T13:50:41Z"


def test_header_whitespace_is_kept_as_received() -> None:
    """A header in another (valid) spelling is hashed and verified as those bytes."""
    w = world()
    _, env = referral()
    spaced = json.dumps(header_doc(env), indent=2).encode()
    got = parse_envelope(body_of(spaced, env.payload, [w.police_sign]))
    assert got.header == env.header
    assert got.header_bytes == spaced and got.header_sha256 != env.header_sha256
    assert verify_sender_signature(got, w.police_sign.public)


def test_explicit_categories_may_be_wider_than_the_record() -> None:
    _, env = referral(data_categories=["identity", "concern", "health"])
    assert env.header.data_categories == ("concern", "health", "identity")
    assert open_payload(env, world().door_enc).record.keys() == {"identity", "concern"}


def test_request_response_declined_receipt() -> None:
    w = world()
    common: dict[str, Any] = dict(protocol=PROTOCOL, purpose=S47, created_at=T0,
                                  subject_informed=False,
                                  consent=Consent("not_sought",
                                                  GroundId("child-significant-harm")))
    _, req = build_envelope(kind="request", sender=FRONT_DOOR, recipient=POLICE,
                            record={}, reasons="s47 strategy", sender_key=w.door_sign,
                            recipient_key=w.police_enc.public, data_categories=["identity"],
                            **common)
    assert _decide(req) is None
    _, resp = build_envelope(kind="response", sender=POLICE, recipient=FRONT_DOOR,
                             record={"identity": {"name": SECRET_NAME}}, reasons="answer",
                             sender_key=w.police_sign, recipient_key=w.door_enc.public,
                             in_reply_to=req.header.message_id, **common)
    assert _decide(resp, _Log(req)) is None
    _, declined = build_envelope(
        kind="declined", sender=POLICE, recipient=FRONT_DOOR, record={},
        reasons="not proportionate", sender_key=w.police_sign,
        recipient_key=w.door_enc.public, in_reply_to=req.header.message_id,
        protocol=PROTOCOL, purpose=S47, created_at=T0, consent=None, subject_informed=True)
    assert declined.header.consent is None and declined.header.data_categories == ()
    assert _decide(declined, _Log(req)) is None
    assert open_payload(declined, w.door_enc).reasons == "not proportionate"
    receipt_record = {"received": resp.header.message_id, "header_sha256": resp.header_sha256}
    _, receipt = build_envelope(
        kind="receipt", sender=FRONT_DOOR, recipient=POLICE, record=receipt_record,
        reasons="", sender_key=w.door_sign, recipient_key=w.police_enc.public,
        in_reply_to=resp.header.message_id, protocol=PROTOCOL, purpose=S47, created_at=T0,
        consent=None, subject_informed=True)
    assert _decide(receipt, _Log(resp)) is None
    assert open_payload(receipt, w.police_enc).record == receipt_record


def test_countersign_keeps_header_bytes_and_satisfies_approval() -> None:
    w = world()
    body, env = referral(consent=Consent("refused", GroundId("child-significant-harm")))
    assert _decide(env) == Reason.APPROVAL_REQUIRED
    signed = countersign(body, w.police_manager)
    env2 = parse_envelope(signed)
    assert json.loads(signed)["header"] == json.loads(body)["header"]
    assert env2.header_bytes == env.header_bytes and env2.payload == env.payload
    assert [s.key for s in env2.signatures] == [w.police_sign.key_id, w.police_manager.key_id]
    assert _decide(env2) is None


def test_countersignature_by_another_organisation_is_refused() -> None:
    body, _ = referral()
    assert _decide(parse_envelope(countersign(body, world().door_manager))) == (
        Reason.BAD_SIGNATURE)


def test_countersign_limits() -> None:
    w = world()
    managers = [SigningKeyPair.generate() for _ in range(MAX_SIGNATURES)]
    body, _ = referral()
    with pytest.raises(ValueError, match="already signed"):
        countersign(body, w.police_sign)
    for m in managers[:-1]:
        body = countersign(body, m)
    assert len(parse_envelope(body).signatures) == MAX_SIGNATURES
    with pytest.raises(ValueError, match="at most"):
        countersign(body, managers[-1])
    with pytest.raises(ValueError, match="at most"):
        referral(countersigners=managers)
    assert len(referral(countersigners=managers[:-1])[1].signatures) == MAX_SIGNATURES


def test_verify_sender_signature_refuses_other_keys() -> None:
    w = world()
    _, env = referral()
    assert not verify_sender_signature(env, w.door_sign.public)
    assert not verify_sender_signature(env, b"short")
    # Signed by the police key but naming the front door's key id.
    h = env.header_bytes
    wrong_id = json.loads(body_of(h, env.payload, [w.police_sign]))
    wrong_id["signatures"][0]["key"] = w.door_sign.key_id
    assert not verify_sender_signature(parse_envelope(compact(wrong_id)), w.police_sign.public)


def test_submission_measures_the_payload_received() -> None:
    _, env = referral()
    other = env.payload + b"x"
    body = body_of(env.header_bytes, other, [world().police_sign])
    sub = parse_envelope(body).submission("west-yorkshire-police.police-safeguarding")
    assert sub.payload_length == len(other) != env.header.payload.length
    assert _decide(parse_envelope(body)) == Reason.PAYLOAD_MISMATCH


@pytest.mark.parametrize("change", [
    dict(record={"health": "x"}, data_categories=["identity"]),
    dict(data_categories=["identity", "identity", "concern"]),
    dict(kind="declined", consent=None, subject_informed=True),
    dict(kind="declined", record={}, consent=Consent("given", None)),
    dict(kind="declined", record={}, consent=None, subject_informed=True,
         data_categories=["identity"]),
    dict(kind="receipt", record={"received": "x"}, consent=None, subject_informed=True),
    dict(kind="referral", consent=None),
    dict(kind="memo"),
    dict(created_at=datetime(2026, 1, 1)),
    dict(record={"identity": {1, 2}}),
    dict(record={"identity": float("nan")}),
    dict(recipient_key=b"\x00" * 31),
    dict(message_id=str(uuid.uuid4()).upper()),
    dict(sender="Leeds/front-door"),
    dict(record={"Identity": "x"}),
], ids=lambda c: ",".join(sorted(c)))
def test_build_refuses_what_it_would_not_accept(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        referral(**change)


def test_build_refuses_an_oversized_record() -> None:
    with pytest.raises(EnvelopeRefused) as e:
        referral(record={"concern": "x" * (MAX_BODY_BYTES // 4 * 3)})
    assert e.value.reason == TOO_LARGE


def test_build_refuses_a_header_over_16_kib_as_too_large() -> None:
    # Enough categories of the longest name form to pass 16 KiB of header.
    record = {f"{'c' * 34}{i:06d}": 1 for i in range(MAX_HEADER_BYTES // 40)}
    with pytest.raises(EnvelopeRefused) as e:
        referral(record=record)
    assert e.value.reason == TOO_LARGE


# --- the malformed table --------------------------------------------------------------

HEADER_FIELDS = ["message_id", "kind", "protocol", "purpose", "sender", "recipient",
                 "created_at", "in_reply_to", "consent", "subject_informed",
                 "data_categories", "payload"]


def _with_header(edit: Callable[[dict[str, Any]], object]) -> Callable[[], bytes]:
    """A body whose header is the referral's, edited, re-serialised and re-signed."""
    def make() -> bytes:
        _, env = referral()
        h = header_doc(env)
        edit(h)
        return body_of(compact(h), env.payload, [world().police_sign])
    return make


def _with_header_bytes(edit: Callable[[bytes], bytes]) -> Callable[[], bytes]:
    def make() -> bytes:
        _, env = referral()
        return body_of(edit(env.header_bytes), env.payload, [world().police_sign])
    return make


def _with_body(edit: Callable[[dict[str, Any]], object]) -> Callable[[], bytes]:
    def make() -> bytes:
        body, _ = referral()
        d = json.loads(body)
        edit(d)
        return compact(d)
    return make


def _with_body_bytes(edit: Callable[[bytes], bytes]) -> Callable[[], bytes]:
    return lambda: edit(referral()[0])


def _key(p: str) -> int | str:
    return int(p) if p.isdigit() else p


def _parent(d: Any, path: str) -> tuple[Any, int | str]:
    *parents, last = path.split(".")
    for p in parents:
        d = d[_key(p)]
    return d, _key(last)


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        parent, last = _parent(d, path)
        parent[last] = value
    return edit


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        parent, last = _parent(d, path)
        del parent[last]
    return edit


def _noncanonical(text: str) -> str:
    """Same bytes, but stray bits set in the last base64 character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    pad = len(text) - len(text.rstrip("="))
    assert pad, "a text without padding has no stray bits"
    i = len(text) - pad - 1
    stray = alphabet[alphabet.index(text[i]) | (0b1111 if pad == 2 else 0b11)]
    assert base64.b64decode(text[:i] + stray + text[i + 1:]) == base64.b64decode(text)
    return text[:i] + stray + text[i + 1:]


def _padded_header(size: int) -> Callable[[], bytes]:
    """The referral's header with trailing spaces (valid JSON) to ``size`` bytes, signed."""
    return _with_header_bytes(lambda h: h + b" " * (size - len(h)))


def _padded_body(size: int) -> Callable[[], bytes]:
    return _with_body_bytes(lambda b: b + b" " * (size - len(b)))


def _v1_uuid() -> str:
    return str(uuid.uuid1())


def _sigs(n: int) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        d["signatures"] = d["signatures"] * n
    return edit


CASES: list[tuple[str, Callable[[], bytes], Reason]] = [
    # every field missing, at every level
    *[(f"missing header.{f}", _with_header(_del(f)), MALFORMED) for f in HEADER_FIELDS],
    *[(f"missing header.consent.{f}", _with_header(_del(f"consent.{f}")), MALFORMED)
      for f in ("status", "ground")],
    *[(f"missing header.payload.{f}", _with_header(_del(f"payload.{f}")), MALFORMED)
      for f in ("cipher", "recipient_key", "sha256", "length")],
    *[(f"missing body.{f}", _with_body(_del(f)), MALFORMED)
      for f in ("version", "header", "signatures", "payload")],
    *[(f"missing signature.{f}", _with_body(_del(f"signatures.0.{f}")), MALFORMED)
      for f in ("key", "sig")],
    # unknown fields, at every level
    ("unknown body field", _with_body(_set("extra", 1)), MALFORMED),
    ("unknown header field", _with_header(_set("extra", None)), MALFORMED),
    ("unknown consent field", _with_header(_set("consent.extra", None)), MALFORMED),
    ("unknown payload field", _with_header(_set("payload.extra", 0)), MALFORMED),
    ("unknown signature field", _with_body(_set("signatures.0.extra", "")), MALFORMED),
    # duplicate keys
    ("duplicate body key", _with_body_bytes(lambda b: b.replace(b'{"version":1,',
                                                                 b'{"version":1,"version":1,')),
     MALFORMED),
    ("duplicate header key", _with_header_bytes(lambda h: b'{"kind":"request",' + h[1:]),
     MALFORMED),
    ("duplicate consent key", _with_header_bytes(
        lambda h: h.replace(b'"consent":{', b'"consent":{"ground":null,')), MALFORMED),
    # versions
    ("version 2", _with_body(_set("version", 2)), UNSUPPORTED),
    ("version 0", _with_body(_set("version", 0)), UNSUPPORTED),
    ("version 2, other shape", lambda: b'{"version":2,"whatever":[]}', UNSUPPORTED),
    ("version true", _with_body(_set("version", True)), MALFORMED),
    ("version 1.0", _with_body_bytes(lambda b: b.replace(b'"version":1,', b'"version":1.0,')),
     MALFORMED),
    ("version string", _with_body(_set("version", "1")), MALFORMED),
    ("version NaN", _with_body_bytes(lambda b: b.replace(b'"version":1,', b'"version":NaN,')),
     MALFORMED),
    # wrong types
    ("length bool", _with_header(_set("payload.length", True)), MALFORMED),
    ("length string", _with_header(_set("payload.length", "1")), MALFORMED),
    ("length float", _with_header(_set("payload.length", 1.5)), MALFORMED),
    ("length negative", _with_header(_set("payload.length", -1)), MALFORMED),
    ("length Infinity", _with_header_bytes(
        lambda h: re.sub(rb'"length":[0-9]+', b'"length":Infinity', h)), MALFORMED),
    ("length NaN", _with_header_bytes(
        lambda h: re.sub(rb'"length":[0-9]+', b'"length":NaN', h)), MALFORMED),
    ("subject_informed int", _with_header(_set("subject_informed", 1)), MALFORMED),
    ("subject_informed zero", _with_header(_set("subject_informed", 0)), MALFORMED),
    ("subject_informed string", _with_header(_set("subject_informed", "true")), MALFORMED),
    ("categories string", _with_header(_set("data_categories", "identity")), MALFORMED),
    ("categories int item", _with_header(_set("data_categories", [1])), MALFORMED),
    ("kind capitalised", _with_header(_set("kind", "Referral")), MALFORMED),
    ("kind unknown", _with_header(_set("kind", "notice")), MALFORMED),
    ("consent list", _with_header(_set("consent", [])), MALFORMED),
    ("consent status unknown", _with_header(_set("consent.status", "maybe")), MALFORMED),
    ("message_id int", _with_header(_set("message_id", 1)), MALFORMED),
    ("header not an object", _with_header_bytes(lambda h: b"[]"), MALFORMED),
    ("header not JSON", _with_header_bytes(lambda h: h[:-1]), MALFORMED),
    ("header field not string", _with_body(_set("header", 1)), MALFORMED),
    ("payload field not string", _with_body(_set("payload", None)), MALFORMED),
    ("body an array", lambda: b"[]", MALFORMED),
    ("body null", lambda: b"null", MALFORMED),
    ("body empty", lambda: b"", MALFORMED),
    ("body deeply nested", lambda: b"[" * 200_000 + b"]" * 200_000, MALFORMED),
    ("signatures object", _with_body(_set("signatures", {})), MALFORMED),
    ("signature entry list", _with_body(_set("signatures.0", [])), MALFORMED),
    ("signature key uppercase", _with_body(
        lambda d: d["signatures"][0].update(key=d["signatures"][0]["key"].upper())), MALFORMED),
    ("signature key short", _with_body(_set("signatures.0.key", "ab" * 15)), MALFORMED),
    ("signature 63 bytes", _with_body(_set("signatures.0.sig", b64encode(b"\x01" * 63))),
     MALFORMED),
    ("signature 65 bytes", _with_body(_set("signatures.0.sig", b64encode(b"\x01" * 65))),
     MALFORMED),
    ("signature not string", _with_body(_set("signatures.0.sig", 7)), MALFORMED),
    # base64
    ("header base64 unpadded", _with_body(lambda d: d.update(header=d["header"].rstrip("="))),
     MALFORMED),
    ("header base64 bad char", _with_body(lambda d: d.update(header="*" + d["header"][1:])),
     MALFORMED),
    ("header base64 newline", _with_body(
        lambda d: d.update(header=d["header"][:8] + "\n" + d["header"][8:])), MALFORMED),
    ("header base64 urlsafe", _with_body(
        lambda d: d.update(header=base64.urlsafe_b64encode(b"\xfb\xff" * 40).decode())),
     MALFORMED),
    ("sig base64 non-canonical", _with_body(
        lambda d: d["signatures"][0].update(sig=_noncanonical(d["signatures"][0]["sig"]))),
     MALFORMED),
    ("payload base64 unpadded", _with_body(
        lambda d: d.update(payload=d["payload"].rstrip("=") + "A")), MALFORMED),
    # message ids
    ("message_id uuid1", _with_header(lambda h: h.update(message_id=_v1_uuid())), MALFORMED),
    ("message_id uppercase", _with_header(
        lambda h: h.update(message_id=h["message_id"].upper())), MALFORMED),
    ("message_id no hyphens", _with_header(
        lambda h: h.update(message_id=h["message_id"].replace("-", ""))), MALFORMED),
    ("message_id braces", _with_header(
        lambda h: h.update(message_id="{" + h["message_id"] + "}")), MALFORMED),
    ("message_id wrong variant", _with_header(
        lambda h: h.update(message_id=h["message_id"][:19] + "c" + h["message_id"][20:])),
     MALFORMED),
    ("in_reply_to uuid1", _with_header(_set("in_reply_to", str(uuid.uuid1()))), MALFORMED),
    ("in_reply_to empty", _with_header(_set("in_reply_to", "")), MALFORMED),
    # categories
    ("categories unsorted", _with_header(_set("data_categories", ["identity", "concern"])),
     MALFORMED),
    ("categories repeated", _with_header(_set("data_categories", ["concern", "concern"])),
     MALFORMED),
    ("category uppercase", _with_header(_set("data_categories", ["Identity"])), MALFORMED),
    ("category empty", _with_header(_set("data_categories", [""])), MALFORMED),
    ("category double hyphen", _with_header(_set("data_categories", ["a--b"])), MALFORMED),
    ("category trailing hyphen", _with_header(_set("data_categories", ["ab-"])), MALFORMED),
    ("category 41 chars", _with_header(_set("data_categories", ["a" * 41])), MALFORMED),
    ("category lone surrogate", _with_header_bytes(
        lambda h: h.replace(b'"data_categories":[', b'"data_categories":["\\ud800",')),
     MALFORMED),
    # names and addresses
    ("sender without unit", _with_header(_set("sender", "leeds-cc")), MALFORMED),
    ("sender empty unit", _with_header(_set("sender", "leeds-cc/")), MALFORMED),
    ("sender three parts", _with_header(_set("sender", "a/b/c")), MALFORMED),
    ("recipient uppercase", _with_header(_set("recipient", "Leeds-cc/front-door")), MALFORMED),
    ("protocol 41 chars", _with_header(_set("protocol", "p" * 41)), MALFORMED),
    ("purpose with space", _with_header(_set("purpose", "safeguarding referral")), MALFORMED),
    ("purpose non-ascii", _with_header(_set("purpose", "réferral")), MALFORMED),
    # consent and ground
    ("given with ground", _with_header(_set("consent", {"status": "given",
                                                        "ground": "serious-crime"})),
     MALFORMED),
    ("not_sought without ground", _with_header(_set("consent.ground", None)), MALFORMED),
    ("refused without ground", _with_header(_set("consent", {"status": "refused",
                                                             "ground": None})), MALFORMED),
    ("ground not a name", _with_header(_set("consent.ground", "Child Harm")), MALFORMED),
    ("referral without consent", _with_header(_set("consent", None)), MALFORMED),
    ("declined with consent", _with_header(
        lambda h: h.update(kind="declined", data_categories=[], subject_informed=True)),
     MALFORMED),
    ("receipt with consent", _with_header(
        lambda h: h.update(kind="receipt", data_categories=[], subject_informed=True)),
     MALFORMED),
    ("declined subject not informed", _with_header(
        lambda h: h.update(kind="declined", consent=None, data_categories=[])), MALFORMED),
    ("receipt with categories", _with_header(
        lambda h: h.update(kind="receipt", consent=None, subject_informed=True)), MALFORMED),
    # times
    *[(f"created_at {t!r}", _with_header(_set("created_at", t)), MALFORMED) for t in (
        "2026-11-24T13:50:41.5Z", "2026-11-24T13:50:41.000Z", "2026-11-24T13:50:41+00:00",
        "2026-11-24T13:50:41", "2026-11-24 13:50:41Z", "2026-11-24t13:50:41Z",
        "2026-11-24T13:50:41z", "2026-11- 4T13:50:41Z", "２026-11-24T13:50:41Z",
        "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-24T24:00:00Z",
        "2026-11-24T13:50:60Z", "26-11-24T13:50:41Z", "")],
    ("created_at number", _with_header(_set("created_at", 1764000000)), MALFORMED),
    # payload reference
    ("cipher other", _with_header(_set("payload.cipher", "aes-256-gcm")), MALFORMED),
    ("recipient_key uppercase", _with_header(
        lambda h: h["payload"].update(recipient_key=h["payload"]["recipient_key"].upper())),
     MALFORMED),
    ("sha256 63 chars", _with_header(
        lambda h: h["payload"].update(sha256=h["payload"]["sha256"][:-1])), MALFORMED),
    ("sha256 uppercase", _with_header(
        lambda h: h["payload"].update(sha256=h["payload"]["sha256"].upper())), MALFORMED),
    # signature counts
    ("no signatures", _with_body(_set("signatures", [])), MALFORMED),
    (f"{MAX_SIGNATURES + 1} signatures", _with_body(_sigs(MAX_SIGNATURES + 1)), MALFORMED),
    # encodings
    ("body not UTF-8", _with_body_bytes(lambda b: b.replace(b'"version"', b'"versi\xffn"')),
     MALFORMED),
    ("body UTF-16", _with_body_bytes(lambda b: b.decode().encode("utf-16")), MALFORMED),
    ("body with BOM", _with_body_bytes(lambda b: b"\xef\xbb\xbf" + b), MALFORMED),
    ("body encoded surrogate", _with_body_bytes(
        lambda b: b.replace(b'{"version"', b'{"\xed\xa0\x80":0,"version"')), MALFORMED),
    ("header not UTF-8", _with_header_bytes(
        lambda h: h.replace(b'"kind"', b'"k\xc0\xafind"')), MALFORMED),
    # sizes
    ("header over 16 KiB", _padded_header(MAX_HEADER_BYTES + 1), TOO_LARGE),
    ("header deeply nested", _with_header_bytes(lambda h: b"[" * 20_000 + b"]" * 20_000),
     TOO_LARGE),
    ("body over 16 MiB", _padded_body(MAX_BODY_BYTES + 1), TOO_LARGE),
    ("body over 16 MiB, not JSON", lambda: b"\xff" * (MAX_BODY_BYTES + 1), TOO_LARGE),
]
@pytest.mark.parametrize(("make", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_check_1_refuses(make: Callable[[], bytes], reason: Reason) -> None:
    body = make()
    with pytest.raises(EnvelopeRefused) as e:
        parse_envelope(body)
    assert e.value.reason == reason
    # Details name fields, never values received.
    assert SECRET_NAME not in str(e.value)


def test_non_canonical_base64_of_header_is_refused() -> None:
    """Pad the header so its base64 has '=' padding, then set stray bits."""
    w = world()
    _, env = referral()
    h = env.header_bytes + b" " * ((1 - len(env.header_bytes)) % 3)
    assert len(h) % 3 == 1
    d = json.loads(body_of(h, env.payload, [w.police_sign]))
    parse_envelope(compact(d))  # the padded header itself is fine
    d["header"] = _noncanonical(d["header"])
    with pytest.raises(EnvelopeRefused, match=r"body\.header: not canonical"):
        parse_envelope(compact(d))


def test_limits_are_inclusive() -> None:
    header_body = _padded_header(MAX_HEADER_BYTES)()
    assert len(parse_envelope(header_body).header_bytes) == MAX_HEADER_BYTES
    big = _padded_body(MAX_BODY_BYTES)()
    assert len(big) == MAX_BODY_BYTES
    parse_envelope(big)


def test_refusal_after_the_header_carries_the_header() -> None:
    body = _with_body(_set("signatures", []))()
    with pytest.raises(EnvelopeRefused) as e:
        parse_envelope(body)
    assert e.value.header is not None and e.value.header.kind == "referral"
    assert e.value.header_bytes == base64.b64decode(json.loads(body)["header"])


def test_refusal_in_the_header_carries_no_header() -> None:
    with pytest.raises(EnvelopeRefused) as e:
        parse_envelope(_with_header(_set("kind", "memo"))())
    assert e.value.header is None and e.value.detail == "header.kind: not a kind"


def test_unknown_field_names_are_not_echoed() -> None:
    with pytest.raises(EnvelopeRefused) as e:
        parse_envelope(_with_header(_set(SECRET_NAME, 1))())
    assert SECRET_NAME not in str(e.value)


def test_parse_header_alone() -> None:
    _, env = referral()
    assert parse_header(env.header_bytes) == env.header
    with pytest.raises(EnvelopeRefused) as e:
        parse_header(b" " * (MAX_HEADER_BYTES + 1))
    assert e.value.reason == TOO_LARGE


def test_build_header_sorts_and_hashes() -> None:
    _, env = referral()
    h = env.header
    header_bytes = build_header(
        message_id=h.message_id, kind=h.kind, protocol=h.protocol, purpose=h.purpose,
        sender=h.sender, recipient=h.recipient, created_at=T0 + timedelta(microseconds=5),
        in_reply_to=None, consent=h.consent, subject_informed=h.subject_informed,
        data_categories=["identity", "concern"], recipient_key=h.payload.recipient_key,
        ciphertext=env.payload)
    assert header_bytes == env.header_bytes


# --- open_payload ---------------------------------------------------------------------


def _plaintext(env: ParsedEnvelope, **changes: Any) -> dict[str, Any]:
    h = env.header
    doc: dict[str, Any] = {"message_id": h.message_id, "sender": h.sender,
                           "recipient": h.recipient, "purpose": h.purpose,
                           "record": {"identity": {"name": SECRET_NAME}}, "reasons": "r"}
    doc.update(changes)
    return doc


def _open(body: bytes) -> Any:
    return open_payload(parse_envelope(body), world().door_enc)


def test_ciphertext_rewrapped_under_another_header_is_refused() -> None:
    """Envelope A's ciphertext in envelope B, B's header claiming A's length and hash."""
    w = world()
    _, a = referral()
    _, b = referral(record={"concern": "other"})
    h = header_doc(b)
    h["payload"].update(sha256=a.header.payload.sha256, length=a.header.payload.length)
    h["data_categories"] = list(a.header.data_categories)
    forged = parse_envelope(body_of(compact(h), a.payload, [w.police_sign]))
    assert verify_sender_signature(forged, w.police_sign.public)
    with pytest.raises(PayloadRefused) as e:
        open_payload(forged, w.door_enc)
    assert e.value.code == "binding_mismatch"
    assert "message_id" in e.value.detail


@pytest.mark.parametrize(("field", "value"), [
    ("message_id", str(uuid.uuid4())), ("sender", "leeds-cc/front-door"),
    ("recipient", "leeds-cc/other-unit"), ("purpose", S47),
])
def test_each_bound_field_is_checked(field: str, value: str) -> None:
    w = world()
    _, env = referral()
    body = forge(plaintext=_plaintext(env, **{field: value}), seal_to=w.door_enc.public,
                 base=env)
    with pytest.raises(PayloadRefused) as e:
        _open(body)
    assert e.value.code == "binding_mismatch" and field in e.value.detail


def test_forged_but_bound_payload_opens() -> None:
    """The forge helper itself makes openable envelopes, so the failures above mean something."""
    w = world()
    _, env = referral()
    assert _open(forge(plaintext=_plaintext(env), seal_to=w.door_enc.public, base=env)).reasons


def test_record_key_outside_the_categories_is_refused() -> None:
    w = world()
    _, env = referral()
    record = {"identity": {"name": SECRET_NAME}, "health": "x"}
    body = forge(plaintext=_plaintext(env, record=record), seal_to=w.door_enc.public, base=env)
    with pytest.raises(PayloadRefused) as e:
        _open(body)
    assert e.value.code == "category_not_permitted"
    assert "health" not in str(e.value) and SECRET_NAME not in str(e.value)


def test_declined_with_a_record_is_refused() -> None:
    w = world()
    _, env = referral()

    def declined(h: dict[str, Any]) -> None:
        h.update(kind="declined", consent=None, subject_informed=True, data_categories=[])
    body = forge(plaintext=_plaintext(env), seal_to=w.door_enc.public, base=env, edit=declined)
    with pytest.raises(PayloadRefused) as e:
        _open(body)
    assert e.value.code == "category_not_permitted"


@pytest.mark.parametrize(("record", "code"), [
    ({"received": "IN_REPLY_TO", "header_sha256": "a" * 64}, None),
    ({"received": "IN_REPLY_TO", "header_sha256": "a" * 64, "identity": "x"}, "malformed"),
    ({"received": "IN_REPLY_TO"}, "malformed"),
    ({"received": "IN_REPLY_TO", "header_sha256": "A" * 64}, "malformed"),
    ({"received": 1, "header_sha256": "a" * 64}, "malformed"),
    ({"received": str(uuid.uuid4()), "header_sha256": "a" * 64}, "binding_mismatch"),
])
def test_receipt_records(record: dict[str, Any], code: str | None) -> None:
    w = world()
    _, env = referral()
    reply_to = str(uuid.uuid4())
    record = {k: reply_to if v == "IN_REPLY_TO" else v for k, v in record.items()}

    def receipt(h: dict[str, Any]) -> None:
        h.update(kind="receipt", consent=None, subject_informed=True, data_categories=[],
                 in_reply_to=reply_to)
    body = forge(plaintext=_plaintext(env, record=record), seal_to=w.door_enc.public,
                 base=env, edit=receipt)
    if code is None:
        assert _open(body).record == record
        return
    with pytest.raises(PayloadRefused) as e:
        _open(body)
    assert e.value.code == code


def test_sealed_to_another_key_is_undecryptable() -> None:
    w = world()
    _, env = referral(recipient_key=w.stranger_enc.public)
    with pytest.raises(PayloadRefused) as e:
        open_payload(env, w.door_enc)
    assert e.value.code == "undecryptable"
    assert open_payload(env, w.stranger_enc).reasons


def test_header_naming_our_key_over_a_box_for_another_is_undecryptable() -> None:
    w = world()
    _, env = referral()
    body = forge(plaintext=_plaintext(env), seal_to=w.stranger_enc.public,
                 header_key=w.door_enc.public, base=env)
    with pytest.raises(PayloadRefused) as e:
        _open(body)
    assert e.value.code == "undecryptable"


def test_payload_not_matching_the_header_is_refused_before_decrypting() -> None:
    w = world()
    _, env = referral()
    body = body_of(env.header_bytes, flip_byte(env.payload, 60), [w.police_sign])
    with pytest.raises(PayloadRefused) as e:
        _open(body)
    assert e.value.code == "payload_mismatch"


@pytest.mark.parametrize("plaintext", [
    b"not json", b"[]", b'{"message_id":1}', b"\xff\xfe", b"",
    b'{"message_id":"a","message_id":"a","sender":"","recipient":"","purpose":"",'
    b'"record":{},"reasons":""}',
    "EXTRA", "RECORD_LIST", "REASONS_INT", "MISSING_REASONS", "LONE_SURROGATE",
    "DUPLICATE_IN_RECORD", "NAN_IN_RECORD", "INFINITY_IN_RECORD",
])
def test_malformed_plaintext(plaintext: bytes | str) -> None:
    w = world()
    _, env = referral()
    good = json.dumps(_plaintext(env))
    raw = {
        "EXTRA": json.dumps(_plaintext(env, extra=1)).encode(),
        "RECORD_LIST": json.dumps(_plaintext(env, record=[])).encode(),
        "REASONS_INT": json.dumps(_plaintext(env, reasons=1)).encode(),
        "MISSING_REASONS": json.dumps({k: v for k, v in _plaintext(env).items()
                                       if k != "reasons"}).encode(),
        "LONE_SURROGATE": good.replace('"reasons": "r"', '"reasons": "\\udc00"').encode(),
        "DUPLICATE_IN_RECORD": good.replace('"record": {', '"record": {"identity": 1, ')
                                   .encode(),
        "NAN_IN_RECORD": good.replace('"record": {', '"record": {"concern": NaN, ').encode(),
        "INFINITY_IN_RECORD": good.replace('"record": {', '"record": {"concern": -Infinity, ')
                                  .encode(),
    }.get(plaintext, plaintext) if isinstance(plaintext, str) else plaintext
    assert isinstance(raw, bytes)
    body = forge(plaintext=raw, seal_to=w.door_enc.public, base=env)
    with pytest.raises(PayloadRefused) as e:
        _open(body)
    assert e.value.code == "malformed"
    assert SECRET_NAME not in str(e.value)


# --- notices --------------------------------------------------------------------------


@pytest.mark.parametrize("notice", [
    Notice(message_id=str(uuid.uuid4()), decision="routed", reason=None, seq=0, at=T0),
    Notice(message_id=str(uuid.uuid4()), decision="refused", reason="bad_signature",
           seq=2**40, at=T0),
    Notice(message_id=None, decision="refused", reason="malformed", seq=17, at=T0),
])
def test_notice_round_trip(notice: Notice) -> None:
    w = world()
    body = build_notice(notice, w.broker)
    assert parse_notice(body, w.broker.public) == notice
    inner = base64.b64decode(json.loads(body)["notice"])
    assert list(json.loads(inner)) == ["message_id", "decision", "reason", "seq", "at"]


@pytest.mark.parametrize("change", [
    dict(decision="maybe"), dict(reason="bad_signature"), dict(decision="refused"),
    dict(decision="refused", reason="nope"), dict(seq=-1), dict(seq=True),
    dict(at=datetime(2026, 1, 1)), dict(message_id="not-a-uuid"),
])
def test_build_notice_refuses_invalid(change: dict[str, Any]) -> None:
    notice = replace(Notice(str(uuid.uuid4()), "routed", None, 1, T0), **change)
    with pytest.raises(ValueError):
        build_notice(notice, world().broker)


def _notice_body() -> bytes:
    return build_notice(Notice(str(uuid.uuid4()), "refused", "stale", 5, T0), world().broker)


def test_every_flipped_notice_byte_is_refused() -> None:
    w = world()
    d = json.loads(_notice_body())
    inner = base64.b64decode(d["notice"])
    for i in range(len(inner)):
        d["notice"] = b64encode(flip_byte(inner, i))
        with pytest.raises(NoticeRefused) as e:
            parse_notice(compact(d), w.broker.public)
        assert e.value.code == "bad_signature"


def test_notice_by_another_key_is_refused() -> None:
    w = world()
    with pytest.raises(NoticeRefused) as e:
        parse_notice(_notice_body(), w.registry.public)
    assert e.value.code == "unknown_key"
    # Naming the broker's key id does not help a signature by another key.
    d = json.loads(build_notice(Notice(None, "routed", None, 1, T0), w.registry))
    d["signature"]["key"] = w.broker.key_id
    with pytest.raises(NoticeRefused) as e:
        parse_notice(compact(d), w.broker.public)
    assert e.value.code == "bad_signature"


def _signed_notice(inner: bytes, **top: Any) -> bytes:
    w = world()
    d: dict[str, Any] = {"version": 1, "notice": b64encode(inner), "signature": {
        "key": w.broker.key_id,
        "sig": b64encode(w.broker.sign(b"infoshare/notice/v1\n" + inner))}}
    d.update(top)
    return compact(d)


GOOD_NOTICE = {"message_id": None, "decision": "routed", "reason": None, "seq": 1,
               "at": "2026-11-24T13:50:41Z"}


@pytest.mark.parametrize(("body", "reason"), [
    (b"", MALFORMED), (b"[]", MALFORMED), (b"{}", MALFORMED),
    (_signed_notice(compact(GOOD_NOTICE), version=2), UNSUPPORTED),
    (_signed_notice(compact(GOOD_NOTICE), version=True), MALFORMED),
    (_signed_notice(compact(GOOD_NOTICE), extra=1), MALFORMED),
    (_signed_notice(compact(GOOD_NOTICE), signature={"key": "ab" * 16}), MALFORMED),
    (_signed_notice(b"not json"), MALFORMED),
    (_signed_notice(compact({**GOOD_NOTICE, "extra": 1})), MALFORMED),
    (_signed_notice(compact({**GOOD_NOTICE, "seq": True})), MALFORMED),
    (_signed_notice(compact({**GOOD_NOTICE, "seq": 1.0})), MALFORMED),
    (_signed_notice(compact({**GOOD_NOTICE, "reason": "stale"})), MALFORMED),
    (_signed_notice(compact({**GOOD_NOTICE, "decision": "refused"})), MALFORMED),
    (_signed_notice(compact({**GOOD_NOTICE, "message_id": "X"})), MALFORMED),
    (_signed_notice(compact({**GOOD_NOTICE, "at": "2026-11-24T13:50:41.1Z"})), MALFORMED),
    (_signed_notice(compact({k: v for k, v in GOOD_NOTICE.items() if k != "seq"})),
     MALFORMED),
    (_signed_notice(b'{"seq":1,' + compact(GOOD_NOTICE)[1:]), MALFORMED),
    (b" " * (16 * 1024 + 1), TOO_LARGE),
])
def test_malformed_notices(body: bytes, reason: Reason) -> None:
    with pytest.raises(EnvelopeRefused) as e:
        parse_notice(body, world().broker.public)
    assert e.value.reason == reason


def test_signed_good_notice_helper_parses() -> None:
    assert parse_notice(_signed_notice(compact(GOOD_NOTICE)), world().broker.public).seq == 1
