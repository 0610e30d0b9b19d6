"""The ``registry`` commands through click's CliRunner, on a real data directory."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from registry_testing import WY_FILE

from keys import new_keys, write_public_key_file
from registry.cli import registry
from registry.datadir import DataDir
from registry.store import Store

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    data = tmp_path / "registry"
    monkeypatch.setenv("INFOSHARE_REGISTRY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("INFOSHARE_HOME", str(data))
    monkeypatch.delenv("INFOSHARE_TOKEN", raising=False)
    monkeypatch.delenv("INFOSHARE_DATABASE_URL", raising=False)
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


def init(env: Path, monkeypatch: pytest.MonkeyPatch, label: str = "IG officer, Leeds") -> str:
    """Initialise and use the first admin token for the next commands (INFOSHARE_TOKEN)."""
    out = json.loads(ok("init", "--admin-label", label, "--json"))
    monkeypatch.setenv("INFOSHARE_TOKEN", out["admin_token"])
    return str(out["admin_token"])


def test_init_makes_a_private_data_directory_and_a_first_admin(env: Path) -> None:
    out = ok("init", "--admin-label", "IG officer, Leeds")
    secret = out.strip().splitlines()[-1]
    assert stat.S_IMODE(env.stat().st_mode) == 0o700
    for name in ("registry-key", "session-secret", "registry.json", "registry.sqlite3"):
        assert stat.S_IMODE((env / name).stat().st_mode) == 0o600, name
    dd = DataDir(env)
    store = Store(dd.database_url, public_key=dd.public_key())
    try:
        token = store.authenticate(secret)
        assert token is not None and token.role == "admin"
        assert token.label == "IG officer, Leeds"
        assert store.history()[0].actor == f"token:{token.id}"
    finally:
        store.close()
    again = run("init")
    assert again.exit_code == 1 and "holds a registry already" in again.output


def test_the_database_and_its_wal_files_stay_private(env: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    init(env, monkeypatch)
    ok("load-protocol", str(WY_FILE))
    sqlite_files = sorted(p.name for p in env.iterdir() if p.name.startswith("registry.sqlite3"))
    assert "registry.sqlite3" in sqlite_files
    for name in sqlite_files:
        assert stat.S_IMODE((env / name).stat().st_mode) == 0o600, name


def test_token_out_writes_the_first_token_to_a_private_file(env: Path, tmp_path: Path) -> None:
    out = ok("init", "--token-out", str(tmp_path / "admin.token"))
    secret = (tmp_path / "admin.token").read_text().strip()
    assert secret.startswith("isr_") and secret not in out
    assert stat.S_IMODE((tmp_path / "admin.token").stat().st_mode) == 0o600
    assert ok("load-protocol", "--token-file", str(tmp_path / "admin.token"),
              str(WY_FILE)).strip() == "registry version 1"


def test_a_token_created_into_a_private_file(env: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    init(env, monkeypatch)
    path = tmp_path / "auditor.token"
    out = ok("token", "create", "--role", "auditor", "--label", "ICO audit 2026",
             "--token-out", str(path))
    secret = path.read_text().strip()
    assert secret.startswith("isr_") and secret not in out and f"written to {path}" in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    dd = DataDir(env)
    store = Store(dd.database_url, public_key=dd.public_key())
    try:
        token = store.authenticate(secret)
        assert token is not None and (token.role, token.label) == ("auditor", "ICO audit 2026")
    finally:
        store.close()
    again = run("token", "create", "--role", "auditor", "--label", "x", "--token-out", str(path))
    assert again.exit_code == 1 and "exists already" in again.output
    assert len(json.loads(ok("token", "list", "--json"))) == 2  # no token made for nothing


def test_every_change_from_the_command_line(env: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    init(env, monkeypatch)
    assert ok("load-protocol", str(WY_FILE)).strip() == "registry version 1"
    ok("add-unit", "leeds-cc", "youth-justice", "--name", "Youth Justice", "--role",
       "youth-justice")
    ok("set-roles", "leeds-cc", "youth-justice", "--role", "youth-justice", "--role", "marac")
    made = new_keys("unit", "leeds-cc/youth-justice")
    for use, f in made.files.items():
        write_public_key_file(tmp_path / f"yj.{use}.pub", f)
    out = json.loads(ok("register-keys", "--unit", "leeds-cc/youth-justice", "--json",
                        "--valid-from", "2024-01-01T00:00:00Z",
                        str(tmp_path / "yj.signing.pub"), str(tmp_path / "yj.encryption.pub")))
    assert out == {"version": 4, "keys": [
        {"key_id": made.files["signing"].key_id, "use": "signing"},
        {"key_id": made.files["encryption"].key_id, "use": "encryption"}]}
    ok("revoke-key", made.files["signing"].key_id, "--reason", "rotated")
    ok("revoke-key", made.files["encryption"].key_id, "--reason", "rotated", "--at",
       "2024-06-01T00:00:00Z")
    ok("remove-unit", "leeds-cc", "youth-justice")
    ok("add-manager", "lcc-hos-01", "--org", "leeds-cc", "--title", "Head of Service")
    manager = new_keys("manager", "leeds-cc", "lcc-hos-01")
    write_public_key_file(tmp_path / "m.pub", manager.files["signing"])
    ok("register-keys", "--manager", "lcc-hos-01", str(tmp_path / "m.pub"))
    broker = new_keys("broker", "broker")
    write_public_key_file(tmp_path / "broker.pub", broker.files["signing"])
    ok("register-keys", "--broker", str(tmp_path / "broker.pub"))
    ok("set-status", "wy-iisp-2016", "suspended")
    versions = ok("versions").strip().splitlines()
    assert len(versions) == 12 and versions[-1].split("\t")[3] == "set_protocol_status"
    history = ok("history")
    assert "IG officer, Leeds" in history and "cli:" not in history
    assert "Added unit leeds-cc/youth-justice with roles youth-justice" in history
    assert "Removed unit leeds-cc/youth-justice" in history
    assert ": rotated" in history
    as_json = json.loads(ok("history", "--json"))
    assert as_json[-1]["summary"].startswith("Set protocol wy-iisp-2016 version 1 to suspended")


def test_a_key_file_for_another_unit_is_refused_with_exit_status_3(
        env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init(env, monkeypatch)
    ok("load-protocol", str(WY_FILE))
    other = new_keys("unit", "leeds-cc/early-help")
    for use, f in other.files.items():
        write_public_key_file(tmp_path / f"eh.{use}.pub", f)
    result = run("register-keys", "--unit", "leeds-cc/front-door",
                 str(tmp_path / "eh.signing.pub"), str(tmp_path / "eh.encryption.pub"))
    assert result.exit_code == 3
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: this file holds the signing key of unit leeds-cc/early-help")
    assert "infoshare keys generate --unit leeds-cc/front-door" in line


def test_changes_need_an_admin_token(env: Path, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    secret = init(env, monkeypatch)
    monkeypatch.delenv("INFOSHARE_TOKEN")
    result = run("load-protocol", str(WY_FILE))
    assert result.exit_code == 1 and "--token-file" in result.stderr
    monkeypatch.setenv("INFOSHARE_TOKEN", "isr_not-a-token")
    assert run("load-protocol", str(WY_FILE)).exit_code == 1
    monkeypatch.setenv("INFOSHARE_TOKEN", secret)
    agency = json.loads(ok("token", "create", "--role", "agency", "--label", "broker",
                           "--json"))
    (tmp_path / "agency.token").write_text(agency["secret"] + "\n")
    result = run("load-protocol", "--token-file", str(tmp_path / "agency.token"), str(WY_FILE))
    assert result.exit_code == 1 and "not an active admin token" in result.stderr


def test_tokens_from_the_command_line(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init(env, monkeypatch)
    out = ok("token", "create", "--role", "agency", "--label", "broker")
    token_id = out.split()[1]
    secret = out.strip().splitlines()[-1]
    listed = ok("token", "list")
    assert token_id in listed and secret not in listed
    ok("token", "revoke", token_id)
    assert "revoked" in ok("token", "list")
    again = run("token", "revoke", token_id)
    assert again.exit_code == 1 and "revoked already" in again.stderr
    assert "Granted an agency token" in ok("history")


@pytest.mark.parametrize(("args", "status", "message"), [
    (["add-unit", "no-such-org", "x", "--name", "X", "--role", "r"], 1, "not registered"),
    (["add-unit", "leeds-cc", "Bad Id", "--name", "X", "--role", "r"], 1, "id:"),
    (["add-unit", "leeds-cc", "x", "--name", "Early\u202eHelp", "--role", "r"], 1, "U+202E"),
    (["revoke-key", "0" * 32, "--reason", "x"], 1, "not registered"),
    (["set-status", "wy-iisp-2016", "paused"], 2, "paused"),
    (["revoke-key", "x", "--reason", "r", "--at", "yesterday"], 2, "not a time"),
    (["register-keys", str(WY_FILE)], 2, "--unit"),
    (["register-keys", "--unit", "leeds-cc/front-door", str(WY_FILE)], 1,
     "not a valid public key file"),
    (["token", "create", "--role", "root", "--label", "x"], 2, "root"),
])
def test_bad_input_is_a_message_and_an_exit_status(env: Path, monkeypatch: pytest.MonkeyPatch,
                                                   args: list[str], status: int,
                                                   message: str) -> None:
    init(env, monkeypatch)
    ok("load-protocol", str(WY_FILE))
    result = run(*args)
    assert result.exit_code == status, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    if status == 1:
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith("error: ")


def test_a_protocol_file_with_problems_lists_them_on_one_line(
        env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init(env, monkeypatch)
    bad = tmp_path / "bad.yaml"
    bad.write_text(WY_FILE.read_text().replace("status: in_force", "status: maybe", 1))
    result = run("load-protocol", str(bad))
    assert result.exit_code == 1 and "status:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_without_the_passphrase_changes_are_refused(env: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    init(env, monkeypatch)
    monkeypatch.delenv("INFOSHARE_REGISTRY_PASSPHRASE")
    result = run("load-protocol", str(WY_FILE))
    assert result.exit_code == 1 and "INFOSHARE_REGISTRY_PASSPHRASE" in result.output
    monkeypatch.setenv("INFOSHARE_REGISTRY_PASSPHRASE", "wrong passphrase, long enough")
    result = run("load-protocol", str(WY_FILE))
    assert result.exit_code == 1 and "cannot be opened" in result.output
    # Reading needs only the public key.
    assert ok("versions").startswith("0\t")


def test_a_weak_registry_passphrase_is_refused(env: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFOSHARE_REGISTRY_PASSPHRASE", "short")
    result = run("init")
    assert result.exit_code == 1 and "passphrase is too weak" in result.stderr
    assert not (env / "registry-key").exists()


def test_the_database_url_comes_from_a_file_or_the_environment(
        env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}"
    (tmp_path / "db-url").write_text(url + "\n")
    out = json.loads(ok("init", "--database-url-file", str(tmp_path / "db-url"), "--json"))
    monkeypatch.setenv("INFOSHARE_TOKEN", out["admin_token"])
    assert (tmp_path / "elsewhere.sqlite3").exists()
    monkeypatch.setenv("INFOSHARE_DATABASE_URL", url)
    assert ok("load-protocol", str(WY_FILE)).strip() == "registry version 1"
    assert ok("versions", "--database-url-file", str(tmp_path / "db-url")).count("\n") == 2
    assert os.environ["INFOSHARE_DATABASE_URL"] not in ok("history")


def test_a_missing_data_directory_is_a_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(registry, ["versions", "--home",
                                           str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "registry init" in result.output
