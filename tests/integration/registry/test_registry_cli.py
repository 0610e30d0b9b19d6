"""The ``registry`` commands through click's CliRunner, on a real data directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from registry_testing import WY_FILE

from keys import EncryptionKeyPair, SigningKeyPair, key_id, public_key_text, write_public_key
from registry.cli import registry
from registry.datadir import DataDir
from registry.store import Store

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    data = tmp_path / "registry"
    monkeypatch.setenv("INFOSHARE_REGISTRY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("INFOSHARE_REGISTRY_DATA", str(data))
    return data


def run(*args: str) -> Result:
    result = CliRunner().invoke(registry, list(args))
    # Never a traceback: either success or a clean exit with a message.
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.output
    return result


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def test_init_makes_a_private_data_directory_and_a_first_admin(env: Path) -> None:
    out = ok("init", "--actor", "cli:setup")
    secret = out.strip().splitlines()[-1]
    for name in ("registry-key", "session-secret", "registry.json"):
        assert stat.S_IMODE((env / name).stat().st_mode) == 0o600
    dd = DataDir(env)
    store = Store(dd.database_url, public_key=dd.public_key())
    try:
        token = store.authenticate(secret)
        assert token is not None and token.role == "admin" and token.created_by == "cli:setup"
        assert store.history()[0].actor == "cli:setup"
    finally:
        store.close()
    again = run("init")
    assert again.exit_code == 1 and "holds a registry already" in again.output


def test_every_change_from_the_command_line(env: Path, tmp_path: Path) -> None:
    ok("init")
    assert ok("load-protocol", str(WY_FILE)).strip() == "registry version 1"
    ok("add-unit", "leeds-cc", "youth-justice", "--name", "Youth Justice", "--role",
       "youth-justice")
    ok("set-roles", "leeds-cc", "youth-justice", "--role", "youth-justice", "--role", "marac")
    sig = SigningKeyPair.generate()
    write_public_key(tmp_path / "sig.pub", sig.public)
    out = ok("register-key", "--holder", "unit", "--owner", "leeds-cc/youth-justice",
             "--use", "signing", "--public-key-file", str(tmp_path / "sig.pub"),
             "--valid-from", "2024-01-01T00:00:00Z")
    assert f"key {key_id(sig.public)}" in out
    enc = EncryptionKeyPair.generate()
    ok("register-key", "--holder", "unit", "--owner", "leeds-cc/youth-justice", "--use",
       "encryption", "--public-key", public_key_text(enc.public))
    ok("revoke-key", key_id(sig.public), "--reason", "rotated")
    ok("revoke-key", key_id(enc.public), "--reason", "rotated", "--at",
       "2024-06-01T00:00:00Z")
    ok("remove-unit", "leeds-cc", "youth-justice")
    ok("add-manager", "lcc-hos-01", "--org", "leeds-cc", "--title", "Head of Service")
    ok("set-status", "wy-iisp-2016", "suspended", "--actor", "cli:dpo")
    versions = ok("versions").strip().splitlines()
    assert len(versions) == 11 and versions[-1].split("\t")[2:] == [
        "cli:dpo", "set_protocol_status"]
    history = ok("history")
    assert '"reason": "rotated"' in history and "remove_unit" in history


def test_tokens_from_the_command_line(env: Path) -> None:
    ok("init")
    out = ok("token", "create", "--role", "agency", "--label", "broker")
    token_id = out.split()[1]
    secret = out.strip().splitlines()[-1]
    listed = ok("token", "list")
    assert token_id in listed and secret not in listed
    ok("token", "revoke", token_id)
    assert "revoked" in ok("token", "list")
    again = run("token", "revoke", token_id)
    assert again.exit_code == 1 and "revoked already" in again.output


@pytest.mark.parametrize(("args", "status", "message"), [
    (["add-unit", "no-such-org", "x", "--name", "X", "--role", "r"], 1, "not registered"),
    (["add-unit", "leeds-cc", "Bad Id", "--name", "X", "--role", "r"], 1, "id:"),
    (["revoke-key", "0" * 32, "--reason", "x"], 1, "not registered"),
    (["set-status", "wy-iisp-2016", "paused"], 2, "paused"),
    (["revoke-key", "x", "--reason", "r", "--at", "yesterday"], 2, "not a time"),
    (["register-key", "--holder", "unit", "--owner", "leeds-cc/front-door", "--use",
      "signing"], 2, "exactly one of"),
    (["register-key", "--holder", "unit", "--owner", "leeds-cc/front-door", "--use",
      "signing", "--public-key", "not-base64"], 1, "not a public key"),
    (["token", "create", "--role", "root", "--label", "x"], 2, "root"),
])
def test_bad_input_is_a_message_and_an_exit_status(env: Path, args: list[str], status: int,
                                                   message: str) -> None:
    ok("init")
    ok("load-protocol", str(WY_FILE))
    result = run(*args)
    assert result.exit_code == status
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_protocol_file_with_problems_lists_them(env: Path, tmp_path: Path) -> None:
    ok("init")
    bad = tmp_path / "bad.yaml"
    bad.write_text(WY_FILE.read_text().replace("status: in_force", "status: maybe", 1))
    result = run("load-protocol", str(bad))
    assert result.exit_code == 1 and "status:" in result.output


def test_without_the_passphrase_changes_are_refused(env: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ok("init")
    monkeypatch.delenv("INFOSHARE_REGISTRY_PASSPHRASE")
    result = run("load-protocol", str(WY_FILE))
    assert result.exit_code == 1 and "INFOSHARE_REGISTRY_PASSPHRASE" in result.output
    monkeypatch.setenv("INFOSHARE_REGISTRY_PASSPHRASE", "wrong")
    result = run("load-protocol", str(WY_FILE))
    assert result.exit_code == 1 and "cannot be opened" in result.output
    # Reading needs only the public key.
    assert ok("versions").startswith("0\t")


def test_a_missing_data_directory_is_a_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(registry, ["versions", "--data-dir",
                                           str(tmp_path / "nowhere")], env={
        "INFOSHARE_REGISTRY_DATA": None})
    assert result.exit_code == 1 and "registry init" in result.output
