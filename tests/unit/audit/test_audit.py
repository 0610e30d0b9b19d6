"""Audit: export, verify, replay, report and proofs over a log built as the router builds it.

The log holds real signed envelopes decided by ``policy.decide`` against a
small signed directory (two versions), including refusals, a redelivery, a
duplicate, an unreadable body and a countersigned referral. Each tamper test
copies the honest export, changes it the way an attacker would, and checks
that verify (or replay, for a log re-signed by its own key) names the
problem.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from audit_export import (
    LOG_KEY,
    ORIGIN,
    SIGNER,
    Built,
    entries_of,
    json_size,
    lines,
    mid,
    read_notes,
    resign,
    write_lines,
)
from click.testing import CliRunner
from envelope_factories import FRONT_DOOR, S47, SECRET_NAME, T0

import audit.replaying
import audit.verify_chunks
import audit.verifying
from audit import (
    AuditError,
    ReportFilters,
    check_proof,
    export,
    prove,
    replay,
    report,
    verify,
)
from audit.audit_cli import audit as audit_group
from audit.export_dir import checkpoint_line
from broker.transfer_log import TransferLog
from infoshare.cli import main as infoshare_main
from keys import (
    Checkpoint,
    NoteSigner,
    SigningKeyPair,
    open_checkpoint,
    public_key_text,
    write_private_key,
)
from protocols.directory import format_time, sign_directory
from protocols.log_format import Entry, canonical_json

# --- the honest log --------------------------------------------------------------------


@pytest.fixture(autouse=True, params=["here", "in workers"])
def verify_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: verify checking lines itself, and in worker processes (chunks
    of three lines, so that tampering falls in every position of a chunk)."""
    if request.param == "in workers":
        monkeypatch.setattr(audit.verifying, "PARALLEL_FROM", 0)
        monkeypatch.setattr(audit.verify_chunks, "CHUNK", 3)
    return str(request.param)


def test_the_export_holds_the_documented_files(built: Built) -> None:
    d = built.export
    names = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
    assert names == ["README.txt", "checkpoints.jsonl", "entries.jsonl", "evidence.jsonl",
                     "log-key.txt", "registry/directory-7.json", "registry/directory-8.json",
                     "registry/registry-key.pub"]
    assert (d / "entries.jsonl").read_bytes() == b"".join(
        x + b"\n" for x in built.log.entries())
    assert (d / "log-key.txt").read_text() == SIGNER.verifier.line() + "\n"
    assert (d / "registry" / "directory-8.json").read_bytes() == built.directories[8]
    assert (d / "registry" / "registry-key.pub").read_text().strip() == public_key_text(
        built.w.registry.public)
    notes = read_notes(d)
    assert notes[:3] == built.checkpoints
    assert open_checkpoint(notes[-1], SIGNER.verifier).size == built.log.size()
    # Evidence lines byte for byte as the log holds them, each bound to its entry.
    assert (d / "evidence.jsonl").read_bytes() == b"".join(
        x + b"\n" for x in built.log.evidence_lines())
    evidence = [json.loads(x) for x in lines(d / "evidence.jsonl")]
    assert [e["seq"] for e in evidence] == list(range(built.log.size()))
    assert tuple(evidence[0]) == ("seq", "header", "signatures", "publisher", "body_sha256")
    assert [hashlib.sha256(x.rstrip(b"\n")).hexdigest() for x in lines(d / "evidence.jsonl")
            ] == [e.evidence_sha256 for e in entries_of(d)]


def test_no_personal_data_leaves_in_the_export(built: Built) -> None:
    for path in built.export.rglob("*"):
        if path.is_file():
            assert SECRET_NAME.encode() not in path.read_bytes()


def test_the_log_holds_what_the_router_decided(built: Built) -> None:
    by_id: dict[str | None, Entry] = {}
    for e in entries_of(built.export):
        by_id.setdefault(e.message_id, e)  # the first entry of each message
    assert built.ids["readable-malformed"] not in by_id  # refused at check 1: named nowhere
    reasons = {name: by_id[i].reason for name, i in built.ids.items()
               if name != "readable-malformed"}
    assert reasons == {
        "referral": None, "mismatch": "sender_mismatch", "approval": "approval_required",
        "countersigned": None, "stale": "stale", "payload": "payload_mismatch",
        "request": None, "response": None, "orphan": "no_matching_request", "edge": "stale"}
    unreadable = [e for e in entries_of(built.export) if e.message_id is None]
    assert [e.reason for e in unreadable] == ["malformed", "malformed", "unsupported_version"]
    assert [e.reason for e in entries_of(built.export)
            if e.message_id == built.ids["referral"]] == [None, "duplicate"]


def test_an_honest_export_verifies(built: Built) -> None:
    result = verify(built.export, log_key=SIGNER.verifier, held=built.checkpoints)
    assert result.ok, result.summary()
    # The export's fresh checkpoint is the last held one: nothing was appended since.
    assert result.entries == built.log.size() and result.checkpoints == 3
    assert result.root == built.log.root() and result.origin == ORIGIN
    assert result.warnings == ()
    assert result.summary().startswith(f"ok: {built.log.size()} entries, 3 checkpoints")


def test_verify_warns_when_only_the_exports_own_key_is_used(built: Built) -> None:
    result = verify(built.export)
    assert result.ok
    assert any("--log-key" in w for w in result.warnings)


def test_verify_reports_progress(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit.verifying, "PROGRESS_EVERY", 4)
    seen: list[tuple[int, int, int]] = []
    assert verify(built.export, lambda *a: seen.append(a), log_key=SIGNER.verifier).ok
    total = (built.export / "entries.jsonl").stat().st_size
    assert [s[0] for s in seen[:-1]] == list(range(4, built.log.size() + 1, 4))
    assert seen[-1] == (built.log.size(), total, total)


def test_an_honest_export_replays_without_mismatches(built: Built) -> None:
    assert replay(built.export, registry_key=built.w.registry.public) == []


def test_replay_needs_the_second_the_router_decided_in(built: Built, copy: Path) -> None:
    # The edge entry is stale only past ``at``: had replay ignored the
    # fraction of the second it would report it; here it must not.
    edge = next(e for e in entries_of(copy) if e.message_id == built.ids["edge"])
    assert edge.at == format_time(T0 + timedelta(hours=24))
    assert replay(copy) == []


def test_report_counts_who_shared_what(built: Built) -> None:
    r = report(built.export)
    assert len(r.rows) == built.log.size()
    assert r.refusals_by_reason == {
        "sender_mismatch": 1, "approval_required": 1, "stale": 2, "duplicate": 1,
        "malformed": 2, "unsupported_version": 1, "payload_mismatch": 1,
        "no_matching_request": 1}
    month = T0.strftime("%Y-%m")
    assert r.by_purpose_month[("safeguarding-referral", month)] == {"routed": 2, "refused": 6}
    assert r.by_purpose_month[("section-47-enquiry", month)] == {"routed": 2, "refused": 1}
    assert r.without_consent_by_ground == {
        "child-significant-harm": {"not_sought": 3, "refused": 1}}
    text = r.to_table()
    assert "Refusals by reason" in text and "approval_required" in text
    assert SECRET_NAME not in text + r.to_csv() + r.to_json()
    assert r.summary_lines()[0] == f"{built.log.size()} entries: 4 routed, 10 refused"


def test_report_filters(built: Built) -> None:
    routed = report(built.export, ReportFilters(decision="routed"))
    assert {r.decision for r in routed.rows} == {"routed"} and len(routed.rows) == 4
    s47 = report(built.export, ReportFilters(purpose=S47, unit=FRONT_DOOR))
    assert {r.purpose for r in s47.rows} == {S47} and len(s47.rows) == 3
    assert report(built.export, ReportFilters(organisation="nobody")).rows == []
    later = report(built.export, ReportFilters(date_from=date(2026, 11, 25)))
    assert [r.message_id for r in later.rows] == [built.ids["edge"]]
    upto = report(built.export, ReportFilters(date_to=date(2026, 11, 24)))
    assert len(upto.rows) == built.log.size() - 1
    refused_ground = report(built.export, ReportFilters(ground="child-significant-harm",
                                                        decision="routed"))
    assert len(refused_ground.rows) == 4
    rows = routed.to_csv().splitlines()
    assert rows[0].startswith("seq,time,kind,protocol,purpose,sender,recipient")
    assert len(rows) == 5
    doc = json.loads(routed.to_json())
    assert doc["filters"]["decision"] == "routed" and len(doc["rows"]) == 4


# --- tampering: verify names the problem -----------------------------------------------


def _entry_line(d: Path, message_id: str) -> int:
    return next(i for i, e in enumerate(entries_of(d)) if e.message_id == message_id)


def test_one_byte_changed_in_a_header_hash_names_the_entry(built: Built, copy: Path) -> None:
    items = lines(copy / "entries.jsonl")
    k = _entry_line(copy, built.ids["approval"])
    doc = json.loads(items[k])
    h = doc["header_sha256"]
    items[k] = items[k].replace(h.encode(), (("0" if h[0] != "0" else "1") + h[1:]).encode())
    write_lines(copy / "entries.jsonl", items)
    result = verify(copy, log_key=SIGNER.verifier)
    assert not result.ok
    assert (result.file, result.line, result.seq) == ("evidence.jsonl", k + 1, k)
    assert "header_sha256" in (result.failure or "")


def test_one_byte_changed_in_a_time_names_the_checkpoint(built: Built, copy: Path) -> None:
    items = lines(copy / "entries.jsonl")
    k = _entry_line(copy, built.ids["stale"])  # in the second checkpoint's range
    at = entries_of(copy)[k].at
    later = format_time(datetime.fromisoformat(at) + timedelta(seconds=1))
    items[k] = items[k].replace(f'"at":"{at}"'.encode(), f'"at":"{later}"'.encode())
    assert items[k] != lines(built.export / "entries.jsonl")[k]
    write_lines(copy / "entries.jsonl", items)
    result = verify(copy, log_key=SIGNER.verifier)
    assert not result.ok
    assert (result.file, result.line) == ("checkpoints.jsonl", 2)
    first = json_size(built.checkpoints[0])
    assert f"after seq {first - 1}" in (result.failure or "")


def test_a_changed_byte_that_breaks_the_form_names_the_line(built: Built, copy: Path) -> None:
    items = lines(copy / "entries.jsonl")
    items[2] = items[2].replace(b'"decision":"refused"', b'"decision":"Refused"')
    write_lines(copy / "entries.jsonl", items)
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.file, result.line, result.seq) == (
        False, "entries.jsonl", 3, 2)
    assert "canonical" in (result.failure or "")


def test_a_deleted_entry_is_found(built: Built, copy: Path) -> None:
    for name in ("entries.jsonl", "evidence.jsonl"):
        items = lines(copy / name)
        del items[5]
        write_lines(copy / name, items)
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.file, result.line, result.seq) == (False, "entries.jsonl", 6, 5)
    assert "seq 6 where seq 5 belongs" in (result.failure or "")


def test_two_swapped_entries_are_found(built: Built, copy: Path) -> None:
    for name in ("entries.jsonl", "evidence.jsonl"):
        items = lines(copy / name)
        items[7], items[8] = items[8], items[7]
        write_lines(copy / name, items)
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.line, result.seq) == (False, 8, 7)


def test_a_truncated_tail_is_found_by_the_newest_checkpoint(built: Built, copy: Path) -> None:
    for name in ("entries.jsonl", "evidence.jsonl"):
        write_lines(copy / name, lines(copy / name)[:-2])
    result = verify(copy, log_key=SIGNER.verifier)
    n = built.log.size()
    assert (result.ok, result.file) == (False, "checkpoints.jsonl")
    assert f"size {n} covers more entries than the {n - 2}" in (result.failure or "")


def test_truncated_with_its_checkpoints_is_found_by_a_held_checkpoint(
        built: Built, copy: Path) -> None:
    keep = json_size(built.checkpoints[1])
    for name in ("entries.jsonl", "evidence.jsonl"):
        write_lines(copy / name, lines(copy / name)[:keep])
    write_lines(copy / "checkpoints.jsonl", lines(copy / "checkpoints.jsonl")[:2])
    # Consistent on its own: only a checkpoint the auditor kept shows the loss.
    assert verify(copy, log_key=SIGNER.verifier).ok
    result = verify(copy, log_key=SIGNER.verifier, held=built.checkpoints)
    assert (result.ok, result.file, result.line) == (False, "--checkpoint", 3)
    assert "truncated" in (result.failure or "")


def test_a_log_rewritten_under_another_key(built: Built, copy: Path) -> None:
    items = lines(copy / "entries.jsonl")
    k = _entry_line(copy, built.ids["approval"])
    items[k] = items[k].replace(b'"decision":"refused","reason":"approval_required"',
                                b'"decision":"routed","reason":null')
    write_lines(copy / "entries.jsonl", items)
    forger = NoteSigner(ORIGIN, SigningKeyPair.generate())
    resign(copy, forger)
    trusting = verify(copy)  # consistent under its own key...
    assert trusting.ok and trusting.warnings
    pinned = verify(copy, log_key=SIGNER.verifier)  # ...not under the key the auditor holds
    assert (pinned.ok, pinned.file, pinned.line) == (False, "checkpoints.jsonl", 1)
    assert "does not verify" in (pinned.failure or "")
    assert any("another key" in w for w in pinned.warnings)
    held = verify(copy, held=built.checkpoints)
    assert (held.ok, held.file) == (False, "--checkpoint")


def test_two_checkpoints_of_one_size_with_different_roots(built: Built, copy: Path) -> None:
    notes = read_notes(copy)
    size = json_size(notes[1])
    fork = SIGNER.sign(Checkpoint(ORIGIN, size, hashlib.sha256(b"fork").digest()).text())
    items = lines(copy / "checkpoints.jsonl")
    items.insert(2, checkpoint_line(fork) + b"\n")
    write_lines(copy / "checkpoints.jsonl", items)
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.file, result.line) == (False, "checkpoints.jsonl", 3)
    assert "forked" in (result.failure or "")


def test_checkpoints_out_of_order_and_uncovered_entries(built: Built, copy: Path) -> None:
    items = lines(copy / "checkpoints.jsonl")
    write_lines(copy / "checkpoints.jsonl", [items[1], items[0], *items[2:]])
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.line) == (False, 2)
    write_lines(copy / "checkpoints.jsonl", items[:-1])
    result = verify(copy, log_key=SIGNER.verifier)
    newest = json_size(read_notes(copy)[-1])
    assert (result.ok, result.seq) == (False, newest)
    assert "not signed" in (result.failure or "")


def test_extra_or_missing_evidence_lines(built: Built, copy: Path) -> None:
    items = lines(copy / "evidence.jsonl")
    write_lines(copy / "evidence.jsonl", [*items, items[-1]])
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.file, result.line) == (False, "evidence.jsonl", len(items) + 1)
    write_lines(copy / "evidence.jsonl", items[:-1])
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.file, result.line) == (False, "evidence.jsonl", len(items))
    assert "ends before" in (result.failure or "")


# --- a consistent log with a wrong decision: replay ------------------------------------


def test_replay_finds_a_decision_changed_and_re_signed(built: Built, copy: Path) -> None:
    items = lines(copy / "entries.jsonl")
    k = _entry_line(copy, built.ids["approval"])
    items[k] = items[k].replace(b'"decision":"refused","reason":"approval_required"',
                                b'"decision":"routed","reason":null')
    write_lines(copy / "entries.jsonl", items)
    resign(copy, SIGNER)  # the operator holds the key: the log is consistent
    assert verify(copy, log_key=SIGNER.verifier).ok
    # Only an auditor who kept a checkpoint from before sees the rewrite...
    kept = verify(copy, log_key=SIGNER.verifier, held=built.checkpoints)
    assert (kept.ok, kept.file, kept.line) == (False, "--checkpoint", 1)
    assert "rewritten" in (kept.failure or "")
    # ...and replay sees the wrong decision without one.
    found = replay(copy, registry_key=built.w.registry.public)
    assert [(m.seq, m.recorded, m.replayed) for m in found] == [
        (k, "routed", "refused (approval_required)")]
    assert built.ids["approval"] in str(found[0])


def test_replay_finds_an_entry_that_does_not_match_its_header(built: Built,
                                                              copy: Path) -> None:
    items = lines(copy / "entries.jsonl")
    k = _entry_line(copy, built.ids["countersigned"])
    items[k] = items[k].replace(b'"purpose":"safeguarding-referral"',
                                b'"purpose":"section-47-enquiry"')
    write_lines(copy / "entries.jsonl", items)
    found = replay(copy)
    assert [(m.seq, m.detail) for m in found] == [
        (k, "the entry's purpose differ from its header")]


def test_replay_refuses_a_directory_not_signed_by_the_registry(built: Built,
                                                               copy: Path) -> None:
    other = SigningKeyPair.generate()
    (copy / "registry" / "directory-8.json").write_bytes(sign_directory(built.v8, other))
    found = replay(copy, registry_key=built.w.registry.public)
    assert found and all("directory-8.json" in m.detail for m in found)
    assert {m.seq for m in found} == {e.seq for e in entries_of(copy)
                                      if e.registry_version == 8}


def test_replay_cannot_rerun_a_decision_whose_header_is_gone(built: Built,
                                                             copy: Path) -> None:
    # The key holder drops a header from the evidence, rebinds the entry to the
    # new line and re-signs: consistent as a tree, but not as a decision.
    items = lines(copy / "evidence.jsonl")
    k = _entry_line(copy, built.ids["countersigned"])
    doc = json.loads(items[k])
    old_sha = hashlib.sha256(items[k].rstrip(b"\n")).hexdigest()
    doc["header"] = doc["signatures"] = None
    items[k] = canonical_json(doc) + b"\n"
    write_lines(copy / "evidence.jsonl", items)
    entries = lines(copy / "entries.jsonl")
    entries[k] = entries[k].replace(old_sha.encode(),
                                    hashlib.sha256(items[k][:-1]).hexdigest().encode())
    write_lines(copy / "entries.jsonl", entries)
    resign(copy, SIGNER)
    found = replay(copy)
    assert [m.seq for m in found] == [k]
    assert "no header in the evidence" in found[0].detail
    assert verify(copy, log_key=SIGNER.verifier).seq == k


def test_replay_in_worker_processes_finds_what_replay_here_finds(
        built: Built, copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks of two: the duplicate, the response and the orphan are decided against
    # entries that went to other workers, so each needs what it may see handed over.
    monkeypatch.setattr(audit.replaying, "CHUNK", 2)
    assert replay(built.export, jobs=2) == []
    items = lines(copy / "entries.jsonl")
    k = _entry_line(copy, built.ids["approval"])
    items[k] = items[k].replace(b'"decision":"refused","reason":"approval_required"',
                                b'"decision":"routed","reason":null')
    write_lines(copy / "entries.jsonl", items)
    (copy / "registry" / "directory-8.json").write_bytes(
        sign_directory(built.v8, SigningKeyPair.generate()))
    evidence = lines(copy / "evidence.jsonl")
    write_lines(copy / "evidence.jsonl", evidence[:-2])
    here = replay(copy, jobs=1)
    assert len(here) > 3 and here[-1].seq == len(items) - 1
    assert replay(copy, jobs=2) == here


# --- export refusals -------------------------------------------------------------------


def test_export_refuses_a_non_empty_directory_and_foreign_directories(
        built: Built, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(AuditError, match="not an empty directory"):
        export(built.log, tmp_path / "full", directories=built.directories.__getitem__,
               registry_key=built.w.registry.public)
    forged = {v: sign_directory(d, SigningKeyPair.generate())
              for v, d in ((7, built.v7), (8, built.v8))}
    with pytest.raises(AuditError, match="version 7"):
        export(built.log, tmp_path / "out", directories=forged.__getitem__,
               registry_key=built.w.registry.public)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["full"]  # nothing half-written left
    with pytest.raises(AuditError, match="version 8"):
        export(built.log, tmp_path / "out", directories={7: built.directories[7]}.__getitem__,
               registry_key=built.w.registry.public)


def test_export_without_the_key_holds_what_the_newest_checkpoint_covers(
        built: Built, tmp_path: Path) -> None:
    url = str(built.log._engine.url)
    reader = TransferLog.open(url, signer=None, origin=ORIGIN)
    try:
        out = export(reader, tmp_path / "ro", directories=built.directories.__getitem__,
                     registry_key=built.w.registry.public, log_key=SIGNER.verifier)
    finally:
        reader.close()
    assert out.size == json_size(built.log.latest_checkpoint() or "")
    assert verify(tmp_path / "ro", log_key=SIGNER.verifier).ok


# --- proofs ----------------------------------------------------------------------------


def test_a_proof_from_the_log_checks_offline(built: Built, tmp_path: Path) -> None:
    doc = prove(built.log, built.ids["referral"])
    assert [e["seq"] for e in doc["entries"]] == [
        e.seq for e in entries_of(built.export) if e.message_id == built.ids["referral"]]
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(doc))
    result = check_proof(path, SIGNER.verifier)
    assert result.ok and result.size == built.log.size() and result.warnings == ()
    assert [e.reason for e in result.entries] == [None, "duplicate"]
    assert check_proof(doc).warnings  # only the document's own key


def test_a_proof_from_an_export_checks_and_tampering_fails(built: Built) -> None:
    doc = prove(built.export, built.ids["approval"])
    assert check_proof(doc, SIGNER.verifier).ok
    bad = json.loads(json.dumps(doc))
    h = bad["entries"][0]["inclusion_proof"][0]
    bad["entries"][0]["inclusion_proof"][0] = ("1" if h[0] == "0" else "0") + h[1:]
    assert not check_proof(bad, SIGNER.verifier).ok
    changed = json.loads(json.dumps(doc))
    changed["entries"][0]["entry"] = changed["entries"][0]["entry"].replace(
        '"reason":"approval_required"', '"reason":"stale"')
    result = check_proof(changed, SIGNER.verifier)
    assert not result.ok and "leaf hash" in (result.failure or "")
    other = NoteSigner(ORIGIN, SigningKeyPair.generate()).verifier
    assert not check_proof(doc, other).ok
    with pytest.raises(AuditError, match="no entry"):
        prove(built.export, mid("9"))


# --- the command line ------------------------------------------------------------------


def test_cli_verify_replay_report(built: Built, copy: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    key = SIGNER.verifier.line()
    ok = runner.invoke(audit_group, ["verify", str(built.export), "--log-key", key, "--quiet"])
    assert ok.exit_code == 0 and ok.output.startswith("ok:")
    held = tmp_path / "held.txt"
    held.write_text(built.checkpoints[-1])
    ok = runner.invoke(audit_group, ["verify", str(built.export), "--checkpoint", str(held)])
    assert ok.exit_code == 0, ok.output
    items = lines(copy / "entries.jsonl")
    del items[3]
    write_lines(copy / "entries.jsonl", items)
    bad = runner.invoke(audit_group, ["verify", str(copy), "--log-key", key])
    assert bad.exit_code == 1
    assert "FAILED at entries.jsonl line 4, seq 3" in bad.output
    assert "Traceback" not in bad.output
    replayed = runner.invoke(audit_group, ["replay", str(built.export)])
    assert replayed.exit_code == 0 and "ok:" in replayed.output
    csv_out = runner.invoke(audit_group, ["report", str(built.export), "--format", "csv",
                                          "--decision", "refused"])
    assert csv_out.exit_code == 0 and len(csv_out.output.splitlines()) == 11
    js = runner.invoke(audit_group, ["report", str(built.export), "--format", "json",
                                     "--from", "2026-11-25"])
    assert js.exit_code == 0 and len(json.loads(js.output)["rows"]) == 1
    wrong = runner.invoke(audit_group, ["report", str(built.export), "--from", "yesterday"])
    assert wrong.exit_code == 2


def test_cli_prove_and_check_proof(built: Built, tmp_path: Path) -> None:
    runner = CliRunner()
    key_file = tmp_path / "log-key.txt"
    key_file.write_text(SIGNER.verifier.line() + "\n")
    out = tmp_path / "proof.json"
    # Proving from the log's database goes through the composition root,
    # which hands the audit the broker's storage.
    made = runner.invoke(infoshare_main, ["audit", "prove", built.ids["request"], "--log",
                                          str(built.log._engine.url.database), "--out",
                                          str(out), "--log-key", str(key_file)])
    assert made.exit_code == 0, made.output
    checked = runner.invoke(audit_group, ["check-proof", str(out), "--log-key",
                                          str(key_file)])
    assert checked.exit_code == 0 and "ok: in the log of size" in checked.output
    doc = json.loads(out.read_text())
    doc["tree_size"] += 1
    out.write_text(json.dumps(doc))
    failed = runner.invoke(audit_group, ["check-proof", str(out), "--log-key",
                                         str(key_file)])
    assert failed.exit_code == 1 and "FAILED" in failed.output
    missing = runner.invoke(audit_group, ["prove", mid("9"), "--log", str(built.export),
                                          "--out", str(tmp_path / "p2.json")])
    assert missing.exit_code == 1 and "no entry" in missing.output


class _Registry(http.server.BaseHTTPRequestHandler):
    documents: ClassVar[dict[int, bytes]] = {}
    token = "auditor-token"

    def do_GET(self) -> None:
        prefix = "/api/v1/directory/"
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_response(401)
            self.end_headers()
            return
        if not self.path.startswith(prefix) or int(self.path[len(prefix):]) not in (
                self.documents):
            self.send_response(404)
            self.end_headers()
            return
        body = self.documents[int(self.path[len(prefix):])]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_cli_export_fetches_directories_from_the_registry(built: Built,
                                                          tmp_path: Path) -> None:
    _Registry.documents = built.directories
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        registry = f"http://127.0.0.1:{server.server_address[1]}"
        key_pub = tmp_path / "registry-key.pub"
        key_pub.write_text(public_key_text(built.w.registry.public) + "\n")
        key_file = tmp_path / "broker.signing.key"
        write_private_key(key_file, kind="signing", owner="broker", private=LOG_KEY.seed,
                          public=LOG_KEY.public, passphrase=b"a passphrase for tests")
        db = str(built.log._engine.url.database)
        runner = CliRunner()
        args = ["audit", "export", str(tmp_path / "x"), "--log", db, "--registry", registry,
                "--registry-key", str(key_pub)]
        done = runner.invoke(infoshare_main, [*args, "--key-file", str(key_file), "--origin",
                                              ORIGIN],
                             env={"INFOSHARE_PASSPHRASE": "a passphrase for tests",
                                  "INFOSHARE_TOKEN": _Registry.token})
        assert done.exit_code == 0, done.output
        assert verify(tmp_path / "x", log_key=SIGNER.verifier).ok
        slim = runner.invoke(infoshare_main, [
            "audit", "export", str(tmp_path / "slim"), "--log", db, "--registry", registry,
            "--registry-key", str(key_pub), "--log-key", SIGNER.verifier.line(),
            "--without-evidence"], env={"INFOSHARE_TOKEN": _Registry.token})
        assert slim.exit_code == 0, slim.output
        assert (tmp_path / "x" / "evidence.jsonl").is_file()
        assert not (tmp_path / "slim" / "evidence.jsonl").exists()
        slim_result = verify(tmp_path / "slim", log_key=SIGNER.verifier)
        assert slim_result.ok and not slim_result.evidence
        nameless = runner.invoke(infoshare_main, [*args, "--key-file", str(key_file)],
                                 env={"INFOSHARE_TOKEN": _Registry.token})
        assert nameless.exit_code == 2 and "--key-file needs --origin" in nameless.output
        wrong = tmp_path / "wrong.token"
        wrong.write_text("wrong\n")
        refused = runner.invoke(infoshare_main, [*args, "--token-file", str(wrong),
                                                 "--log-key", SIGNER.verifier.line()])
        assert refused.exit_code == 1 and "Traceback" not in refused.output
        assert not (tmp_path / "x2").exists()
        both = runner.invoke(infoshare_main, args, env={"INFOSHARE_TOKEN": _Registry.token})
        assert both.exit_code == 2  # neither --key-file nor --log-key
    finally:
        server.shutdown()
        server.server_close()

