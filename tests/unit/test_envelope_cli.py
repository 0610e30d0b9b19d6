"""``infoshare envelope inspect`` through click's CliRunner."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from envelope_factories import SECRET_NAME, compact, flip_byte, referral, world

from infoshare.envelope_cli import envelope
from keys import b64encode, public_key_text
from protocols.directory import sign_directory
from protocols.envelope import MAX_BODY_BYTES, countersign, parse_envelope


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    w = world()
    paths = {"directory": tmp_path / "directory.json", "key": tmp_path / "registry.pub",
             "other_key": tmp_path / "other.pub"}
    paths["directory"].write_bytes(sign_directory(w.directory, w.registry))
    paths["key"].write_text(public_key_text(w.registry.public) + "\n")
    paths["other_key"].write_text(public_key_text(w.broker.public) + "\n")
    return paths


def _write(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "envelope.json"
    path.write_bytes(body)
    return path


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(envelope, ["inspect", *map(str, args)])


def _fresh() -> tuple[bytes, object]:
    return referral(created_at=datetime.now(UTC))


def _assert_bad_input(result: Result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output


def test_inspect_without_directory(tmp_path: Path) -> None:
    body, _ = referral()
    result = _run(_write(tmp_path, body))
    assert result.exit_code == 0, result.output
    parsed = parse_envelope(body)
    for text in (parsed.header.message_id, parsed.header_sha256, "referral",
                 "not_sought (child-significant-harm)", "concern, identity",
                 f"{world().police_sign.key_id} (sender)"):
        assert text in result.output
    assert "check 1           pass" in result.output
    assert "payload length    pass" in result.output
    assert "payload sha256    pass" in result.output
    assert "decision" not in result.output
    # Codes only: nothing of the record or the reasons.
    assert SECRET_NAME not in result.output and "bruising" not in result.output
    assert "consent not sought" not in result.output


def test_inspect_with_directory_routes(tmp_path: Path, files: dict[str, Path]) -> None:
    body, _ = _fresh()
    result = _run(_write(tmp_path, body), "--directory", files["directory"],
                  "--registry-key", files["key"])
    assert result.exit_code == 0, result.output
    assert "west-yorkshire-police.police-safeguarding (assumed" in result.output
    assert "version 7" in result.output
    assert "decision          routed" in result.output


def test_inspect_shows_countersignatures(tmp_path: Path) -> None:
    body = countersign(_fresh()[0], world().police_manager)
    result = _run(_write(tmp_path, body))
    assert result.exit_code == 0, result.output
    assert f"signatures[1]     {world().police_manager.key_id} (countersignature)" in (
        result.output)


@pytest.mark.parametrize(("user", "reason"), [
    ("leeds-cc.front-door", "sender_mismatch"),
    ("west-yorkshire-police.police-safeguarding", None),
])
def test_inspect_user_id(tmp_path: Path, files: dict[str, Path], user: str,
                         reason: str | None) -> None:
    body, _ = _fresh()
    result = _run(_write(tmp_path, body), "--directory", files["directory"],
                  "--registry-key", files["key"], "--user-id", user)
    assert result.exit_code == 0, result.output
    expected = "routed" if reason is None else f"refused ({reason})"
    assert f"decision          {expected}" in result.output


def test_inspect_stale_envelope(tmp_path: Path, files: dict[str, Path]) -> None:
    body, _ = referral(created_at=datetime.now(UTC) - timedelta(days=2))
    result = _run(_write(tmp_path, body), "--directory", files["directory"],
                  "--registry-key", files["key"])
    assert "decision          refused (stale)" in result.output


def test_inspect_tampered_payload(tmp_path: Path, files: dict[str, Path]) -> None:
    body, _ = _fresh()
    d = json.loads(body)
    env = parse_envelope(body)
    d["payload"] = b64encode(flip_byte(env.payload, 3))
    result = _run(_write(tmp_path, compact(d)), "--directory", files["directory"],
                  "--registry-key", files["key"])
    assert result.exit_code == 0, result.output
    assert "payload length    pass" in result.output
    assert "payload sha256    FAIL" in result.output
    assert "decision          refused (payload_mismatch)" in result.output


def test_inspect_malformed(tmp_path: Path) -> None:
    _assert_bad_input(_run(_write(tmp_path, b"{not json")), "malformed", "check 1")


def test_inspect_malformed_after_the_header_shows_the_header(tmp_path: Path) -> None:
    body, env = referral()
    d = json.loads(body)
    d["signatures"] = []
    result = _run(_write(tmp_path, compact(d)))
    _assert_bad_input(result, "malformed", "body.signatures", env.header.message_id)


def test_inspect_version_2(tmp_path: Path) -> None:
    _assert_bad_input(_run(_write(tmp_path, b'{"version":2}')), "unsupported_version")


def test_inspect_too_large(tmp_path: Path) -> None:
    _assert_bad_input(_run(_write(tmp_path, b" " * (MAX_BODY_BYTES + 1))), "too_large")


def test_inspect_missing_file(tmp_path: Path) -> None:
    _assert_bad_input(_run(tmp_path / "nope.json"), "cannot read")


def test_inspect_directory_signed_by_another_key(tmp_path: Path,
                                                 files: dict[str, Path]) -> None:
    body, _ = _fresh()
    result = _run(_write(tmp_path, body), "--directory", files["directory"],
                  "--registry-key", files["other_key"])
    _assert_bad_input(result, "directory", "not pinned")


def test_inspect_tampered_directory(tmp_path: Path, files: dict[str, Path]) -> None:
    doc = json.loads(files["directory"].read_bytes())
    doc["directory"] = b64encode(b'{"version":8}')
    files["directory"].write_bytes(compact(doc))
    result = _run(_write(tmp_path, _fresh()[0]), "--directory", files["directory"],
                  "--registry-key", files["key"])
    _assert_bad_input(result, "does not verify")


@pytest.mark.parametrize("key_text", [b"", b"not base64\n", b"AAAA\n", b"\xff\xfe"])
def test_inspect_bad_registry_key(tmp_path: Path, files: dict[str, Path],
                                  key_text: bytes) -> None:
    files["key"].write_bytes(key_text)
    result = _run(_write(tmp_path, _fresh()[0]), "--directory", files["directory"],
                  "--registry-key", files["key"])
    _assert_bad_input(result, "registry key", "32-byte")


def test_inspect_option_pairs(tmp_path: Path, files: dict[str, Path]) -> None:
    path = _write(tmp_path, _fresh()[0])
    _assert_bad_input(_run(path, "--directory", files["directory"]), "go together")
    _assert_bad_input(_run(path, "--registry-key", files["key"]), "go together")
    _assert_bad_input(_run(path, "--user-id", "x.y"), "needs --directory")
