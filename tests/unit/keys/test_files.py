"""Key files: public keys as text, private keys sealed with a passphrase, mode 0600."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from keys import (
    EncryptionKeyPair,
    KeyFileError,
    SigningKeyPair,
    key_id,
    read_private_key,
    write_private_key,
    write_public_key,
)
from keys.cli import keys as keys_cli

PASSPHRASE = b"correct horse battery staple"


def _write_signing(path: Path, pair: SigningKeyPair) -> None:
    write_private_key(path, kind="signing", owner="leeds-cc/front-door", private=pair.seed,
                      public=pair.public, passphrase=PASSPHRASE)


def test_private_key_file_round_trip_with_mode_0600(tmp_path: Path) -> None:
    pair = SigningKeyPair.generate()
    path = tmp_path / "leeds-cc.front-door.signing.key"
    _write_signing(path, pair)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = read_private_key(path, PASSPHRASE)
    assert loaded.kind == "signing"
    assert loaded.owner == "leeds-cc/front-door"
    assert loaded.signing_pair() == pair
    with pytest.raises(KeyFileError):
        loaded.encryption_pair()


def test_encryption_key_file_round_trip(tmp_path: Path) -> None:
    pair = EncryptionKeyPair.generate()
    path = tmp_path / "k.encryption.key"
    write_private_key(path, kind="encryption", owner="x/y", private=pair.secret,
                      public=pair.public, passphrase=PASSPHRASE)
    assert read_private_key(path, PASSPHRASE).encryption_pair() == pair


def test_the_file_does_not_hold_the_private_key_in_the_clear(tmp_path: Path) -> None:
    pair = SigningKeyPair.generate()
    path = tmp_path / "k.key"
    _write_signing(path, pair)
    text = path.read_text()
    assert pair.seed.hex() not in text
    doc = json.loads(text)
    assert doc["kdf"]["alg"] == "argon2id"


def test_refused_when_others_may_read_it(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    _write_signing(path, SigningKeyPair.generate())
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        read_private_key(path, PASSPHRASE)


def test_wrong_passphrase_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    _write_signing(path, SigningKeyPair.generate())
    with pytest.raises(KeyFileError, match="passphrase"):
        read_private_key(path, b"not the passphrase")


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    first = SigningKeyPair.generate()
    _write_signing(path, first)
    with pytest.raises(KeyFileError, match="exists"):
        _write_signing(path, SigningKeyPair.generate())
    assert read_private_key(path, PASSPHRASE).signing_pair() == first


def test_empty_passphrase_refused(tmp_path: Path) -> None:
    pair = SigningKeyPair.generate()
    with pytest.raises(KeyFileError):
        write_private_key(tmp_path / "k.key", kind="signing", owner="o", private=pair.seed,
                          public=pair.public, passphrase=b"")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("[]", id="not an object"),
        pytest.param("{}", id="no format"),
        pytest.param('{"format": "infoshare-private-key/v1", "kind": "signing", "kdf": 5}',
                     id="kdf not an object"),
        pytest.param("not json", id="not json"),
    ],
)
def test_damaged_files_are_refused_cleanly(tmp_path: Path, content: str) -> None:
    path = tmp_path / "k.key"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        read_private_key(path, PASSPHRASE)


def test_a_public_key_that_does_not_match_is_refused(tmp_path: Path) -> None:
    pair = SigningKeyPair.generate()
    path = tmp_path / "k.key"
    write_private_key(path, kind="signing", owner="o", private=pair.seed,
                      public=SigningKeyPair.generate().public, passphrase=PASSPHRASE)
    with pytest.raises(KeyFileError, match="does not match"):
        read_private_key(path, PASSPHRASE)


def test_public_key_file_is_one_line_of_base64(tmp_path: Path) -> None:
    pair = SigningKeyPair.generate()
    path = tmp_path / "k.pub"
    write_public_key(path, pair.public)
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    assert len(text.strip()) == 44


# --- the keys command ----------------------------------------------------------------------


def test_generate_unit_keys(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        keys_cli, ["generate", "--unit", "leeds-cc/front-door", "--out", str(tmp_path)],
        env={"INFOSHARE_PASSPHRASE": "pw"})
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"leeds-cc.front-door.{k}.{e}" for k in ("encryption", "signing")
                     for e in ("key", "pub")]
    for kind in ("signing", "encryption"):
        key = read_private_key(tmp_path / f"leeds-cc.front-door.{kind}.key", b"pw")
        pub = (tmp_path / f"leeds-cc.front-door.{kind}.pub").read_text().strip()
        # What is printed is what an administrator registers.
        assert pub in result.output
        assert key_id(key.public) in result.output


def test_generate_manager_key_only_signs(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        keys_cli, ["generate", "--manager", "m-0042", "--org", "leeds-cc", "--out",
                   str(tmp_path)], env={"INFOSHARE_PASSPHRASE": "pw"})
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "leeds-cc.manager.m-0042.signing.key", "leeds-cc.manager.m-0042.signing.pub"]


def test_generate_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    existing = tmp_path / "leeds-cc.front-door.encryption.pub"
    existing.write_text("kept\n")
    result = CliRunner().invoke(
        keys_cli, ["generate", "--unit", "leeds-cc/front-door", "--out", str(tmp_path)],
        env={"INFOSHARE_PASSPHRASE": "pw"})
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.output
    assert [p.name for p in tmp_path.iterdir()] == [existing.name]
    assert existing.read_text() == "kept\n"


def test_generate_prompts_for_the_passphrase_twice(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        keys_cli, ["generate", "--unit", "leeds-cc/front-door", "--out", str(tmp_path)],
        input="secret\nsecret\n", env={"INFOSHARE_PASSPHRASE": None})
    assert result.exit_code == 0, result.output
    assert "secret" not in result.output
    read_private_key(tmp_path / "leeds-cc.front-door.signing.key", b"secret")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--unit", "Leeds/front-door"], id="bad organisation"),
        pytest.param(["--unit", "leeds-cc"], id="no unit"),
        pytest.param(["--unit", "leeds-cc/../x"], id="path in the unit"),
        pytest.param(["--manager", "m-1"], id="manager without org"),
        pytest.param(["--unit", "leeds-cc/a", "--manager", "m", "--org", "leeds-cc"],
                     id="both"),
    ],
)
def test_generate_refuses_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(keys_cli, ["generate", *args, "--out", str(tmp_path)],
                                env={"INFOSHARE_PASSPHRASE": "pw"})
    assert result.exit_code == 2
    assert list(tmp_path.iterdir()) == []
