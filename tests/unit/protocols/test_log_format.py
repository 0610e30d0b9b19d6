"""Entries and evidence lines (wire spec 6.1 as amended 2026-11-30): their one byte form.

An entry has 19 fields, ending with ``publisher`` and ``evidence_sha256``, the
SHA-256 of its evidence line. A body refused at check 1 names nothing from
its header. Every reader accepts exactly the canonical bytes and turns any
other input, however hostile, into an :class:`EntryFormatError`.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from envelope_factories import referral
from log_factories import POLICE_USER, SIG, UNREADABLE, draft, evidence, mid, sha

from keys import b64encode
from protocols import merkle
from protocols.log_format import (
    ENTRY_FIELDS,
    EVIDENCE_FIELDS,
    MAX_LINE_BYTES,
    Entry,
    EntryDraft,
    EntryFormatError,
    Evidence,
    publisher_of,
)
from protocols.policy import ROUTED
from protocols.reasons import Reason

T0 = datetime(2026, 11, 24, 13, 50, 41, tzinfo=UTC)


NO_HEADER = Evidence(header=None, signatures=None, publisher=POLICE_USER,
                     body_sha256=sha("a body"))


def entry(i: int = 1, seq: int = 5, ev: Evidence | None = None, **overrides: Any) -> Entry:
    return Entry.with_evidence(draft(i, **overrides), seq, ev or evidence(i))[0]


# --- entries ---------------------------------------------------------------------------


def test_an_entry_has_the_19_fields_of_the_amended_spec_in_order() -> None:
    assert ENTRY_FIELDS[-3:] == ("registry_version", "publisher", "evidence_sha256")
    assert len(ENTRY_FIELDS) == 19
    assert tuple(f.name for f in dataclasses.fields(Entry)) == ENTRY_FIELDS
    assert tuple(f.name for f in dataclasses.fields(EntryDraft)) == ENTRY_FIELDS[1:-2]


def test_entry_bytes_are_compact_ascii_json_in_the_spec_order() -> None:
    e, line = Entry.with_evidence(draft(1), 5, evidence(1))
    data = e.to_bytes()
    assert b" " not in data and b"\n" not in data and data.isascii()
    assert list(json.loads(data)) == list(ENTRY_FIELDS)
    assert data.startswith(b'{"seq":5,"at":"2026-11-24T13:50:41Z","message_id":"00000001-')
    assert b'"consent":{"status":"not_sought","ground":"child-significant-harm"}' in data
    assert data.endswith(b'"registry_version":7,"publisher":"' + POLICE_USER.encode()
                         + b'","evidence_sha256":"' + sha(line).encode() + b'"}')
    assert Entry.from_bytes(data) == e
    assert e.leaf_hash == merkle.leaf_hash(data)
    assert e.time == T0


def test_a_body_refused_at_check_1_has_null_fields() -> None:
    e = entry(0, ev=NO_HEADER, **UNREADABLE, header_sha256=NO_HEADER.body_sha256)
    assert Entry.from_bytes(e.to_bytes()) == e and e.unreadable


@pytest.mark.parametrize("field", ["message_id", "kind", "protocol", "purpose", "sender",
                                   "recipient", "in_reply_to", "consent", "subject_informed",
                                   "data_categories", "payload_sha256"])
def test_a_body_refused_at_check_1_names_nothing_from_its_header(field: str) -> None:
    # 6.1: however much of its header could be read. ``draft(1)`` holds a value
    # for every field a header gives; in_reply_to needs one of its own.
    value = getattr(draft(1, in_reply_to=mid(9)), field)
    with pytest.raises(EntryFormatError, match=field):
        entry(0, ev=NO_HEADER, **{**UNREADABLE, field: value},
              header_sha256=NO_HEADER.body_sha256)


def test_a_decided_envelope_names_what_its_header_holds() -> None:
    for field in ("message_id", "kind", "sender", "data_categories", "payload_sha256"):
        with pytest.raises(EntryFormatError, match=field):
            entry(1, **{field: None})


def test_drafts_from_an_envelope_and_from_an_unreadable_body() -> None:
    body, env = referral()
    d = EntryDraft.for_envelope(env, ROUTED, at=T0, registry_version=7)
    assert (d.message_id, d.header_sha256, d.payload_sha256, d.decision, d.at) == (
        env.header.message_id, env.header_sha256, env.payload_sha256, "routed",
        "2026-11-24T13:50:41Z")
    ev = Evidence.of(sha(body), env, POLICE_USER)
    assert ev.header == env.header_bytes
    # The strings as received: check 1 accepts only canonical base64.
    assert ev.signatures == json.loads(body)["signatures"]
    e, _ = Entry.with_evidence(d, 0, ev)
    assert e.publisher == POLICE_USER
    u = EntryDraft.unreadable(Reason.TOO_LARGE, sha(body), at=T0, registry_version=7)
    e, _ = Entry.with_evidence(u, 1, Evidence.of(sha(body), None, None))
    assert e.unreadable and e.header_sha256 == sha(body) and e.message_id is None


def test_consent_given_in_another_key_order_is_normalised() -> None:
    e = entry(1, consent={"ground": None, "status": "given"})
    assert b'"consent":{"status":"given","ground":null}' in e.to_bytes()


def _edit(data: bytes, **changes: Any) -> bytes:
    doc = json.loads(data)
    doc.update(changes)
    return json.dumps(doc, separators=(",", ":")).encode()


CANONICAL = entry(3, seq=3).to_bytes()
SEVENTEEN = json.dumps({k: v for k, v in json.loads(CANONICAL).items()
                        if k not in ("publisher", "evidence_sha256")},
                       separators=(",", ":")).encode()


@pytest.mark.parametrize("data", [
    CANONICAL.replace(b",", b", ", 1),                              # whitespace
    CANONICAL + b"\n",                                              # a trailing newline
    CANONICAL + b"\r",                                              # a CR
    CANONICAL.replace(b'"routed"', b'"\\u0072outed"'),              # an escape
    CANONICAL.replace(b'"seq":3', b'"seq":3.0'),                    # a number spelled otherwise
    CANONICAL.replace(b'"seq":3,', b'"seq":3,"seq":3,'),            # a duplicate key
    json.dumps(dict(reversed(list(json.loads(CANONICAL).items())))).encode(),  # order
    SEVENTEEN,                                                      # the format before 11-30
    _edit(CANONICAL, extra=1),
    _edit(CANONICAL, seq=True),
    _edit(CANONICAL, seq=-1),
    _edit(CANONICAL, at="2026-11-24T13:50:41.5Z"),
    _edit(CANONICAL, at="2026-02-30T13:50:41Z"),
    _edit(CANONICAL, message_id="not-a-uuid"),
    _edit(CANONICAL, message_id=mid(0xabc).upper()),
    _edit(CANONICAL, kind="gossip"),
    _edit(CANONICAL, decision="maybe"),
    _edit(CANONICAL, reason="stale"),                               # routed with a reason
    _edit(CANONICAL, decision="refused"),                           # refused without one
    _edit(CANONICAL, decision="refused", reason="no_such_code"),
    _edit(CANONICAL, decision="refused", reason="malformed"),       # check 1, yet names a header
    _edit(CANONICAL, sender="Jane Example"),                        # never personal data
    _edit(CANONICAL, sender="a/b/c"),
    _edit(CANONICAL, consent={"status": "given"}),
    _edit(CANONICAL, consent={"status": "maybe", "ground": None}),
    _edit(CANONICAL, subject_informed="yes"),
    _edit(CANONICAL, data_categories=["identity", "concern"]),      # not sorted
    _edit(CANONICAL, data_categories=["concern", "concern"]),
    _edit(CANONICAL, header_sha256="AB" * 32),
    _edit(CANONICAL, payload_sha256="ab"),
    _edit(CANONICAL, registry_version="7"),
    _edit(CANONICAL, message_id=None),                              # routed without an id
    _edit(CANONICAL, publisher=7),
    _edit(CANONICAL, publisher="x" * 256),
    _edit(CANONICAL, evidence_sha256=None),
    _edit(CANONICAL, evidence_sha256="AB" * 32),
    CANONICAL.replace(POLICE_USER.encode(), b"\\ud800"),           # a lone surrogate
    CANONICAL.replace(POLICE_USER.encode(), "gäst".encode()),       # not ASCII
    b"[" * 100_000,                                                 # nested beyond the parser
    b'{"seq":' + b"1" * (MAX_LINE_BYTES + 1) + b"}",                # longer than a line
    b"[]", b"not json", "{\"seq\":\u00e9}".encode(), b"\xff", b"NaN",
], ids=lambda d: repr(d[:40]))
def test_from_bytes_takes_only_the_one_canonical_form(data: bytes) -> None:
    with pytest.raises(EntryFormatError):
        Entry.from_bytes(data)


# --- evidence lines --------------------------------------------------------------------


def test_the_evidence_line_is_compact_ascii_json_in_the_spec_order() -> None:
    ev = evidence(1)
    line = ev.line(5)
    assert line == (b'{"seq":5,"header":"' + b64encode(b'{"header":1}').encode()
                    + b'","signatures":[{"key":"' + SIG["key"].encode() + b'","sig":"'
                    + SIG["sig"].encode() + b'"}],"publisher":"' + POLICE_USER.encode()
                    + b'","body_sha256":"' + ev.body_sha256.encode() + b'"}')
    assert tuple(json.loads(line)) == EVIDENCE_FIELDS
    assert Evidence.from_line(line) == (5, ev)
    assert NO_HEADER.line(0) == (b'{"seq":0,"header":null,"signatures":null,"publisher":"'
                                 + POLICE_USER.encode() + b'","body_sha256":"'
                                 + NO_HEADER.body_sha256.encode() + b'"}')


def test_the_entry_holds_the_hash_of_its_evidence_line() -> None:
    e, line = Entry.with_evidence(draft(1), 5, evidence(1))
    assert line == evidence(1).line(5)
    assert e.evidence_sha256 == sha(line) and e.publisher == POLICE_USER
    # The same draft with other evidence is another entry: the tree commits to both.
    other, _ = Entry.with_evidence(draft(1), 5, evidence(1, publisher="leeds-cc.front-door"))
    assert other.to_bytes() != e.to_bytes()


def test_evidence_must_fit_its_draft() -> None:
    with pytest.raises(EntryFormatError, match="check 1"):
        Entry.with_evidence(draft(1), 0, NO_HEADER)
    with pytest.raises(EntryFormatError, match="check 1"):
        Entry.with_evidence(draft(0, **UNREADABLE), 0, evidence(0))


LINE = evidence(2).line(2)


@pytest.mark.parametrize("data", [
    LINE.replace(b",", b", ", 1),
    LINE + b"\r",
    LINE + b" ",
    LINE.replace(b'"seq":2,', b'"seq":2,"seq":2,'),
    json.dumps(json.loads(LINE)).encode(),
    json.dumps(dict(reversed(list(json.loads(LINE).items())))).encode(),
    _edit(LINE, user_id=POLICE_USER),                               # the old field name
    _edit(LINE, seq=True),
    _edit(LINE, seq=-2),
    _edit(LINE, header="e30"),                                      # unpadded base64
    _edit(LINE, header=b64encode(bytes(16 * 1024 + 1))),            # over 16 KiB
    _edit(LINE, header=None),                                       # signatures without header
    _edit(LINE, signatures=None),                                   # header without signatures
    _edit(LINE, signatures=[]),
    _edit(LINE, signatures=[SIG] * 6),
    _edit(LINE, signatures=[{"sig": SIG["sig"], "key": SIG["key"]}]),  # key order
    _edit(LINE, signatures=[{**SIG, "sig": b64encode(bytes(63))}]),
    _edit(LINE, signatures=[{**SIG, "key": "AB" * 16}]),
    _edit(LINE, publisher=["x"]),
    _edit(LINE, body_sha256="x"),
    b"[" * 100_000,
    b"{" * 100_000,
    b"x" * (MAX_LINE_BYTES + 1),
    b"", b"null", "\u00e9".encode(),
], ids=lambda d: repr(d[:40]))
def test_from_line_takes_only_the_one_canonical_form(data: bytes) -> None:
    with pytest.raises(EntryFormatError):
        Evidence.from_line(data)


# --- publishers that are not ASCII -----------------------------------------------------


@pytest.mark.parametrize(("name", "escaped"), [
    ("gäst.ünit", b"g\\u00e4st.\\u00fcnit"),
    ("ops\U0001f600", b"ops\\ud83d\\ude00"),              # beyond U+FFFF: a surrogate pair
    ('a"b\\c\n', b'a\\"b\\\\c\\n'),
    ("\x01", b"\\u0001"),
    ("\x7f", b"\\u007f"),                              # DEL
])
def test_a_publisher_outside_ascii_is_written_with_json_escapes(name: str,
                                                                escaped: bytes) -> None:
    e, line = Entry.with_evidence(draft(1), 0, evidence(1, publisher=name))
    data = e.to_bytes()
    assert data.isascii() and line.isascii()
    assert b'"publisher":"' + escaped + b'"' in data
    assert b'"publisher":"' + escaped + b'"' in line
    assert Entry.from_bytes(data).publisher == name
    assert Evidence.from_line(line)[1].publisher == name


def test_publisher_of_what_a_client_library_hands_over() -> None:
    assert publisher_of(None) is None
    assert publisher_of("leeds-cc.front-door") == "leeds-cc.front-door"
    assert publisher_of("gäst") == "gäst"
    # Not UTF-8, so not a RabbitMQ user name: logged, and never a unit's user.
    assert publisher_of(b"g\xe4st") == "g\ufffdst"
    assert publisher_of(bytes(range(0x80, 0xff)) * 2) == "\ufffd" * 254
    e, _ = Entry.with_evidence(draft(1), 0, evidence(1, publisher=publisher_of(b"\xff" * 255)))
    assert Entry.from_bytes(e.to_bytes()) == e


def test_a_publisher_that_is_not_text_of_a_user_name_is_refused() -> None:
    for bad in ("x" * 256, "\ud800", 7):
        with pytest.raises(EntryFormatError, match="publisher"):
            evidence(1, publisher=bad)
