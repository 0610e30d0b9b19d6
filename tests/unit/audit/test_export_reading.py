"""Reading an export as a hostile party may have written it.

Evidence is bound to its entry by ``evidence_sha256`` (wire spec 6.1), so an
edited evidence line is caught even though the tree does not cover the
evidence file itself. ``evidence.jsonl`` is optional for verify and required
for replay (6.4). Every file of an export is read strictly, and a line no
parser should face (deeply nested, overlong) is named by file and line,
never a traceback.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from audit_export import (
    DOOR_USER,
    SIGNER,
    Built,
    entries_of,
    lines,
    resign,
    write_lines,
)
from click.testing import CliRunner

import audit.verify_chunks
import audit.verifying
from audit import AuditError, check_proof, load_checkpoint_notes, prove, replay, report, verify
from audit.audit_cli import audit as audit_group

NESTED = b"[" * 100_000
FILES = ("entries.jsonl", "evidence.jsonl", "checkpoints.jsonl")


def _line_of(d: Path, message_id: str) -> int:
    """The 0-based line of the first entry naming ``message_id``."""
    return next(i for i, e in enumerate(entries_of(d)) if e.message_id == message_id)


def _edit_evidence(d: Path, k: int, **changes: object) -> None:
    items = lines(d / "evidence.jsonl")
    doc = json.loads(items[k])
    doc.update(changes)
    items[k] = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
    write_lines(d / "evidence.jsonl", items)


# --- evidence is bound to its entry ----------------------------------------------------


@pytest.fixture(autouse=True, params=["here", "in workers"])
def verify_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: verify checking lines itself, and in worker processes."""
    if request.param == "in workers":
        monkeypatch.setattr(audit.verifying, "PARALLEL_FROM", 0)
        monkeypatch.setattr(audit.verify_chunks, "CHUNK", 3)
    return str(request.param)


def test_moving_the_blame_for_a_spoofing_attempt_is_caught(built: Built, copy: Path) -> None:
    k = _line_of(copy, built.ids["mismatch"])
    assert json.loads(lines(copy / "evidence.jsonl")[k])["publisher"] == DOOR_USER
    _edit_evidence(copy, k, publisher="leeds-cc.someone-else")
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.file, result.line, result.seq) == (
        False, "evidence.jsonl", k + 1, k)
    assert "evidence_sha256" in (result.failure or "")


def test_a_changed_body_hash_in_the_evidence_is_caught(built: Built, copy: Path) -> None:
    k = _line_of(copy, built.ids["payload"])
    _edit_evidence(copy, k, body_sha256=hashlib.sha256(b"another body").hexdigest())
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.file, result.line) == (False, "evidence.jsonl", k + 1)
    assert "evidence_sha256" in (result.failure or "")


@pytest.mark.parametrize("extra", [b"x", b"\n", b"{}\n"])
def test_evidence_past_the_last_entry_is_named(copy: Path, extra: bytes) -> None:
    items = lines(copy / "evidence.jsonl")
    write_lines(copy / "evidence.jsonl", [*items, extra])
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.file, result.line) == (False, "evidence.jsonl", len(items) + 1)


def test_an_export_without_evidence_verifies_and_says_replay_needs_it(
        built: Built, copy: Path) -> None:
    (copy / "evidence.jsonl").unlink()
    result = verify(copy, log_key=SIGNER.verifier)
    assert result.ok, result.summary()
    assert any("evidence.jsonl" in w and "replay" in w for w in result.warnings)
    out = CliRunner().invoke(audit_group, ["verify", str(copy), "--log-key",
                                           SIGNER.verifier.line(), "--quiet"])
    assert out.exit_code == 0 and "replay" in out.output


def test_replay_refuses_an_export_without_evidence(copy: Path) -> None:
    (copy / "evidence.jsonl").unlink()
    with pytest.raises(AuditError, match=r"no evidence\.jsonl.*replay"):
        replay(copy)
    out = CliRunner().invoke(audit_group, ["replay", str(copy), "--quiet"])
    assert out.exit_code == 1
    assert "no evidence.jsonl" in out.output and "Traceback" not in out.output


def test_a_header_in_the_evidence_of_a_check_1_refusal_is_refused(
        built: Built, copy: Path) -> None:
    # A check-1 refusal names nothing from its header (6.1), so its evidence
    # holds no header either. Here the key holder gives one a header taken from
    # another entry, rebinds the entry to the new line and re-signs the tree.
    k = next(i for i, e in enumerate(entries_of(copy)) if e.message_id is None)
    donor = json.loads(lines(copy / "evidence.jsonl")[_line_of(copy, built.ids["referral"])])
    old = hashlib.sha256(lines(copy / "evidence.jsonl")[k][:-1]).hexdigest()
    _edit_evidence(copy, k, header=donor["header"], signatures=donor["signatures"])
    new = hashlib.sha256(lines(copy / "evidence.jsonl")[k][:-1]).hexdigest()
    entries = lines(copy / "entries.jsonl")
    entries[k] = entries[k].replace(old.encode(), new.encode())
    write_lines(copy / "entries.jsonl", entries)
    resign(copy, SIGNER)
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.file, result.line) == (False, "evidence.jsonl", k + 1)
    assert "refused at check 1" in (result.failure or "")


# --- strict reading of every file ------------------------------------------------------


def _spoil(raw: bytes, how: str) -> bytes:
    body = raw.rstrip(b"\n")
    if how == "crlf":
        return body + b"\r\n"
    if how == "trailing space":
        return body + b" \n"
    if how == "spaced":
        return json.dumps(json.loads(body)).encode() + b"\n"
    assert how == "duplicate key"
    first = body[1:-1].split(b",")[0]  # the first member, given twice
    return body[:-1] + b"," + first + b"}\n"


@pytest.mark.parametrize("how", ["crlf", "trailing space", "spaced", "duplicate key"])
@pytest.mark.parametrize("name", ["evidence.jsonl", "checkpoints.jsonl"])
def test_evidence_and_checkpoints_are_read_as_strictly_as_entries(
        copy: Path, name: str, how: str) -> None:
    items = lines(copy / name)
    items[1] = _spoil(items[1], how)
    write_lines(copy / name, items)
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.file, result.line) == (False, name, 2), result.summary()


@pytest.mark.parametrize("name", FILES)
def test_a_deeply_nested_line_is_named_by_file_and_line(copy: Path, name: str) -> None:
    items = lines(copy / name)
    items[1] = NESTED + b"\n"
    write_lines(copy / name, items)
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.file, result.line) == (False, name, 2), result.summary()
    out = CliRunner().invoke(audit_group, ["verify", str(copy), "--quiet"])
    assert out.exit_code == 1 and f"{name} line 2" in out.output
    assert "Traceback" not in out.output


@pytest.mark.parametrize("name", FILES)
def test_an_overlong_line_is_named_without_reading_it_whole(copy: Path, name: str) -> None:
    items = lines(copy / name)
    items[1] = b'{"seq":' + b"1" * (4 << 20) + b"}\n"
    write_lines(copy / name, items)
    result = verify(copy, log_key=SIGNER.verifier)
    assert (result.ok, result.file, result.line) == (False, name, 2)
    assert "longer than" in (result.failure or "")


def test_replay_report_and_prove_name_a_hostile_entry_line(built: Built, copy: Path) -> None:
    items = lines(copy / "entries.jsonl")
    items[1] = NESTED + b"\n"
    write_lines(copy / "entries.jsonl", items)
    for action in (lambda: replay(copy), lambda: report(copy),
                   lambda: prove(copy, built.ids["request"])):
        with pytest.raises(AuditError, match=r"entries\.jsonl line 2"):
            action()
    runner = CliRunner()
    for args in (["replay", str(copy)], ["report", str(copy)]):
        out = runner.invoke(audit_group, args)
        assert out.exit_code == 1 and "entries.jsonl line 2" in out.output, out.output


def test_replay_names_a_hostile_evidence_line(built: Built, copy: Path) -> None:
    items = lines(copy / "evidence.jsonl")
    items[1] = NESTED + b"\n"
    write_lines(copy / "evidence.jsonl", items)
    found = replay(copy)
    assert [m.seq for m in found] == [1]
    assert "evidence.jsonl line 2" in found[0].detail


def test_a_hostile_proof_file_is_named(built: Built, tmp_path: Path) -> None:
    proof = tmp_path / "proof.json"
    proof.write_bytes(NESTED)
    result = check_proof(proof, SIGNER.verifier)
    assert not result.ok and "proof.json" in (result.failure or "")
    out = CliRunner().invoke(audit_group, ["check-proof", str(proof)])
    assert out.exit_code == 1 and "proof.json" in out.output
    assert "Traceback" not in out.output
    # A proof whose entry text is itself hostile.
    doc = prove(built.export, built.ids["request"])
    doc["entries"][0]["entry"] = "[" * 100_000
    proof.write_text(json.dumps(doc))
    result = check_proof(proof, SIGNER.verifier)
    assert not result.ok and "entries[0]" in (result.failure or "")


def test_a_hostile_checkpoint_file_the_auditor_holds_is_named(tmp_path: Path) -> None:
    held = tmp_path / "held.jsonl"
    held.write_bytes(b'{"note": "x"}\n' + NESTED + b"\n")
    with pytest.raises(AuditError, match=r"held\.jsonl line 2"):
        load_checkpoint_notes(held)


def test_replay_names_a_hostile_registry_directory(copy: Path) -> None:
    (copy / "registry" / "directory-8.json").write_bytes(NESTED)
    found = replay(copy)
    assert found and all("directory-8.json" in m.detail for m in found)
