"""Replay in this process and in worker processes, chunked every way, finds the same.

The replaying process hands workers raw entry lines with the earlier entries each
may look up (its own message id's and the one it answers); workers parse the
lines. Every tampered export here gives the same mismatches, or the same
``AuditError`` naming the first bad line, with one process and with two, in
chunks of one entry (so that every entry's history crosses a chunk boundary),
two, three and the default.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from audit_export import Built, entries_of, lines, write_lines

import audit.replaying
from audit import AuditError, Mismatch, replay
from audit.replaying import _History, _ids
from protocols.log_format import Entry, EntryFormatError, canonical_json


@pytest.fixture(params=[(1, 1000), (1, 2), (2, 1), (2, 2), (2, 3)],
                ids=lambda p: f"jobs{p[0]}-chunk{p[1]}")
def jobs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    n, chunk = request.param
    monkeypatch.setattr(audit.replaying, "CHUNK", chunk)
    return int(n)


def _seq_of(d: Path, built: Built, name: str) -> int:
    return next(e.seq for e in entries_of(d) if e.message_id == built.ids[name])


def _found(found: list[Mismatch]) -> list[tuple[int, str, str | None]]:
    return [(m.seq, m.recorded, m.replayed) for m in found]


def _edit_entry(d: Path, k: int, old: bytes, new: bytes) -> None:
    items = lines(d / "entries.jsonl")
    assert old in items[k]
    items[k] = items[k].replace(old, new, 1)
    write_lines(d / "entries.jsonl", items)


def _refuse(d: Path, k: int, reason: str) -> None:
    _edit_entry(d, k, b'"decision":"routed","reason":null',
                f'"decision":"refused","reason":"{reason}"'.encode())


def test_an_honest_export_replays_clean(built: Built, jobs: int) -> None:
    # The duplicate and the response are decided against entries in other chunks.
    assert replay(built.export, jobs=jobs) == []


def test_a_wrong_decision(built: Built, copy: Path, jobs: int) -> None:
    k = _seq_of(copy, built, "approval")
    _edit_entry(copy, k, b'"decision":"refused","reason":"approval_required"',
                b'"decision":"routed","reason":null')
    assert _found(replay(copy, jobs=jobs)) == [(k, "routed", "refused (approval_required)")]


def test_a_changed_header_bound_again(built: Built, copy: Path, jobs: int) -> None:
    # The key holder changes a header and rebinds it to the entry: every hash agrees,
    # but the sender's signature no longer does.
    k = _seq_of(copy, built, "countersigned")
    evidence = lines(copy / "evidence.jsonl")
    doc = json.loads(evidence[k])
    header = base64.b64decode(doc["header"])
    changed = header.replace(b'"subject_informed":false', b'"subject_informed":true')
    _edit_entry(copy, k, b'"subject_informed":false', b'"subject_informed":true')
    doc["header"] = base64.b64encode(changed).decode()
    evidence[k] = canonical_json(doc) + b"\n"
    write_lines(copy / "evidence.jsonl", evidence)
    entry = lines(copy / "entries.jsonl")[k]
    old = json.loads(entry)
    _edit_entry(copy, k, old["header_sha256"].encode(),
                hashlib.sha256(changed).hexdigest().encode())
    _edit_entry(copy, k, old["evidence_sha256"].encode(),
                hashlib.sha256(evidence[k][:-1]).hexdigest().encode())
    assert _found(replay(copy, jobs=jobs)) == [(k, "routed", "refused (bad_signature)")]


def test_a_changed_header_not_bound_again(built: Built, copy: Path, jobs: int) -> None:
    k = _seq_of(copy, built, "countersigned")
    evidence = lines(copy / "evidence.jsonl")
    doc = json.loads(evidence[k])
    doc["header"] = base64.b64encode(base64.b64decode(doc["header"]).replace(
        b'"subject_informed":false', b'"subject_informed":true')).decode()
    evidence[k] = canonical_json(doc) + b"\n"
    write_lines(copy / "evidence.jsonl", evidence)
    found = replay(copy, jobs=jobs)
    assert [(m.seq, m.detail) for m in found] == [
        (k, f"cannot replay: evidence.jsonl line {k + 1}: the line does not hash to the "
            "entry's evidence_sha256: the evidence was changed after the entry was written")]


def _form_error(line: bytes) -> str:
    with pytest.raises(EntryFormatError) as e:
        Entry.from_bytes(line.rstrip(b"\n"))
    return str(e.value)


@pytest.mark.parametrize(("old", "new"), [
    (b'{"seq":4,', b'{ "seq":4,'),  # not even the shape the replaying process reads
    (b'"subject_informed":false', b'"subject_informed":0'),  # past what it reads
    (b'"kind":"referral"', b'"kind":"letter"'),  # in what it reads, of the right shape
    (b'"decision":"refused"', b'"decision":null'),  # in what it reads, of another shape
], ids=["space", "boolean", "kind", "null-decision"])
def test_a_non_canonical_entry_in_the_middle(copy: Path, jobs: int, old: bytes,
                                             new: bytes) -> None:
    _edit_entry(copy, 4, old, new)
    message = _form_error(lines(copy / "entries.jsonl")[4])
    assert _refusal(copy, jobs) == f"entries.jsonl line 5: {message}; run verify"


def _refusal(d: Path, jobs: int) -> str:
    with pytest.raises(AuditError) as e:
        replay(d, jobs=jobs)
    return str(e.value)


def test_a_wrong_seq(copy: Path, jobs: int) -> None:
    _edit_entry(copy, 6, b'{"seq":6,', b'{"seq":60,')
    assert _refusal(copy, jobs) == "entries.jsonl line 7: seq 60; run verify"


def test_a_non_canonical_entry_before_a_wrong_seq_is_the_one_named(copy: Path,
                                                                   jobs: int) -> None:
    # The form of line 4 is known only to the worker that parses it, the seq of
    # line 10 to the replaying process, which reads on meanwhile.
    _edit_entry(copy, 3, b'"kind":"referral"', b'"kind":"letter"')
    _edit_entry(copy, 9, b'{"seq":9,', b'{"seq":90,')
    message = _form_error(lines(copy / "entries.jsonl")[3])
    assert _refusal(copy, jobs) == f"entries.jsonl line 4: {message}; run verify"


def test_a_line_both_out_of_seq_and_not_canonical_is_named_for_its_form(
        copy: Path, jobs: int) -> None:
    _edit_entry(copy, 6, b'{"seq":6,', b'{"seq":60,')
    _edit_entry(copy, 6, b'"subject_informed":null', b'"subject_informed":0')
    message = _form_error(lines(copy / "entries.jsonl")[6])
    assert _refusal(copy, jobs) == f"entries.jsonl line 7: {message}; run verify"


def test_evidence_ending_early(built: Built, copy: Path, jobs: int) -> None:
    n = len(lines(copy / "entries.jsonl"))
    write_lines(copy / "evidence.jsonl", lines(copy / "evidence.jsonl")[:-2])
    found = replay(copy, jobs=jobs)
    assert [(m.seq, m.detail) for m in found] == [
        (seq, f"cannot replay: evidence.jsonl line {n - 1}: evidence.jsonl ends before "
              "entries.jsonl") for seq in (n - 2, n - 1)]


def test_a_duplicate_refused_as_one(built: Built, copy: Path, jobs: int) -> None:
    first = _seq_of(copy, built, "referral")
    again = next(e.seq for e in entries_of(copy)
                 if e.message_id == built.ids["referral"] and e.reason == "duplicate")
    assert again > first
    _edit_entry(copy, again, b'"decision":"refused","reason":"duplicate"',
                b'"decision":"routed","reason":null')
    assert _found(replay(copy, jobs=jobs)) == [(again, "routed", "refused (duplicate)")]


def test_a_duplicate_sees_what_was_logged_before_it(built: Built, copy: Path,
                                                    jobs: int) -> None:
    # Logged as refused at check 3, the first entry reserves nothing (3.3 check 4),
    # so the second is routed when replayed: the history holds what the log says.
    first = _seq_of(copy, built, "referral")
    again = next(e.seq for e in entries_of(copy)
                 if e.message_id == built.ids["referral"] and e.reason == "duplicate")
    _refuse(copy, first, "bad_signature")
    assert _found(replay(copy, jobs=jobs)) == [
        (first, "refused (bad_signature)", "routed"),
        (again, "refused (duplicate)", "routed")]


def test_a_reply_sees_its_original_earlier_in_the_log(built: Built, copy: Path,
                                                      jobs: int) -> None:
    request = _seq_of(copy, built, "request")
    response = _seq_of(copy, built, "response")
    assert response > request
    _refuse(copy, request, "stale")
    assert _found(replay(copy, jobs=jobs)) == [
        (request, "refused (stale)", "routed"),
        (response, "routed", "refused (no_matching_request)")]


# --- what the replaying process reads of each line ---------------------------------------


def test_the_ids_read_by_place_are_the_entrys_own(built: Built) -> None:
    history = _History()
    for raw in lines(built.export / "entries.jsonl"):
        e = Entry.from_bytes(raw.rstrip(b"\n"))
        ids = _ids(raw.rstrip(b"\n"))
        assert ids is not None
        seq, message_id, profile, in_reply_to = ids
        assert (seq, message_id, in_reply_to) == (
            e.seq, e.message_id and e.message_id.encode(),
            e.in_reply_to and e.in_reply_to.encode())
        if message_id is not None:
            before = history.seen(message_id) if message_id in history.first else ()
            assert history.add(message_id, profile)
            m = e.logged()
            assert history.seen(message_id) == (*before, (
                m.kind, m.decision, m.reason, m.protocol, m.purpose, m.sender, m.recipient))


@pytest.mark.parametrize("line", [
    b"", b"{}", b'{"seq":1', b'{"seq":,"at"', b'{"seq":1,"at":"2026-11-24T13:50:41Z"',
    b'{"seq":1,"at":"2026-11-24T13:50:41Z","message_id":"short"',
    b'{"seq":' + b"1" * 30 + b',"at":"2026-11-24T13:50:41Z","message_id":null,',
])
def test_lines_of_another_shape_are_left_to_the_full_parser(line: bytes) -> None:
    assert _ids(line) is None
