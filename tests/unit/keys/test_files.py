"""Key files: public key files with proofs, private keys sealed with a passphrase, mode 0600."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from keys import (
    EncryptionKeyPair,
    KeyFileError,
    KeyFormatError,
    SigningKeyPair,
    WeakPassphrase,
    b64encode,
    key_id,
    new_keys,
    parse_public_key_file,
    parse_public_key_text,
    read_private_key,
    read_public_key_file,
    sign_public_key_file,
    verify_signature,
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

PW = "correct horse battery staple"


def generate(tmp_path: Path, *args: str, passphrase: str | None = PW, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(keys_cli, ["generate", *args, "--out", str(tmp_path)],
                              input=input, env={"INFOSHARE_PASSPHRASE": passphrase})


def test_generate_unit_keys_writes_public_key_files_with_proofs(tmp_path: Path) -> None:
    result = generate(tmp_path, "--unit", "leeds-cc/front-door")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"leeds-cc.front-door.{k}.{e}" for k in ("encryption", "signing")
                     for e in ("key", "pub")]
    signing = read_public_key_file(tmp_path / "leeds-cc.front-door.signing.pub")
    encryption = read_public_key_file(tmp_path / "leeds-cc.front-door.encryption.pub")
    for kind, pub in (("signing", signing), ("encryption", encryption)):
        key = read_private_key(tmp_path / f"leeds-cc.front-door.{kind}.key", PW.encode())
        assert (pub.holder, pub.owner, pub.manager, pub.use) == (
            "unit", "leeds-cc/front-door", None, kind)
        assert pub.public == key.public and key_id(key.public) in result.output
        # The raw 32-byte key is in the file as base64 (wire spec section 1).
        assert json.loads((tmp_path / f"leeds-cc.front-door.{kind}.pub").read_text())[
            "public"] == b64encode(key.public)
    assert signing.self_signed and signing.proof_verifies(signing.public)
    # The unit's signing key vouches for its encryption key.
    assert encryption.proof_key == signing.key_id
    assert encryption.proof_verifies(signing.public)


def test_generate_manager_and_broker_keys_only_sign(tmp_path: Path) -> None:
    assert generate(tmp_path, "--manager", "m-0042", "--org", "leeds-cc").exit_code == 0
    assert generate(tmp_path, "--broker").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "broker.signing.key", "broker.signing.pub",
        "leeds-cc.manager.m-0042.signing.key", "leeds-cc.manager.m-0042.signing.pub"]
    manager = read_public_key_file(tmp_path / "leeds-cc.manager.m-0042.signing.pub")
    assert (manager.holder, manager.owner, manager.manager) == ("manager", "leeds-cc", "m-0042")
    broker = read_public_key_file(tmp_path / "broker.signing.pub")
    assert (broker.holder, broker.owner, broker.use) == ("broker", "broker", "signing")
    # The broker's public key file is also a pinned key wherever one is read.
    assert parse_public_key_text((tmp_path / "broker.signing.pub").read_text()) == broker.public


def test_generate_json_output(tmp_path: Path) -> None:
    result = generate(tmp_path, "--unit", "leeds-cc/front-door", "--json")
    out = json.loads(result.output)
    assert [k["use"] for k in out["keys"]] == ["signing", "encryption"]
    assert out["owner"] == "leeds-cc/front-door"


@pytest.mark.parametrize("passphrase", ["", "pw", "short words", "aaaaaaaaaaaaaaaaaaaa",
                                        "abababababababab"])
def test_a_weak_passphrase_is_refused_with_a_sentence(tmp_path: Path, passphrase: str) -> None:
    result = generate(tmp_path, "--unit", "leeds-cc/front-door", passphrase=passphrase)
    assert result.exit_code == 1
    assert "passphrase" in result.output
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(WeakPassphrase if passphrase else KeyFileError):
        write_private_key(tmp_path / "k.key", kind="signing", owner="o",
                          private=bytes(32), public=SigningKeyPair.from_seed(bytes(32)).public,
                          passphrase=passphrase.encode())


def test_generate_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    existing = tmp_path / "leeds-cc.front-door.encryption.pub"
    existing.write_text("kept\n")
    result = generate(tmp_path, "--unit", "leeds-cc/front-door")
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.output
    assert [p.name for p in tmp_path.iterdir()] == [existing.name]
    assert existing.read_text() == "kept\n"


def test_generate_prompts_for_the_passphrase_twice(tmp_path: Path) -> None:
    result = generate(tmp_path, "--unit", "leeds-cc/front-door", passphrase=None,
                      input=f"{PW}\n{PW}\n")
    assert result.exit_code == 0, result.output
    assert PW not in result.output
    read_private_key(tmp_path / "leeds-cc.front-door.signing.key", PW.encode())


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--unit", "Leeds/front-door"], id="bad organisation"),
        pytest.param(["--unit", "leeds-cc"], id="no unit"),
        pytest.param(["--unit", "leeds-cc/../x"], id="path in the unit"),
        pytest.param(["--manager", "m-1"], id="manager without org"),
        pytest.param(["--unit", "leeds-cc/a", "--manager", "m", "--org", "leeds-cc"],
                     id="both"),
        pytest.param(["--unit", "leeds-cc/a", "--broker"], id="unit and broker"),
    ],
)
def test_generate_refuses_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    result = generate(tmp_path, *args)
    assert result.exit_code == 2
    assert list(tmp_path.iterdir()) == []


# --- public key files --------------------------------------------------------------------


def _file_json(holder: str = "unit", owner: str = "leeds-cc/front-door",
               manager: str | None = None) -> dict[str, Any]:
    made = new_keys(holder, owner, manager)  # type: ignore[arg-type]
    return made.files["signing"].to_json()


def test_a_public_key_file_round_trips_and_its_statement_is_fixed() -> None:
    doc = _file_json()
    parsed = parse_public_key_file(json.dumps(doc))
    assert parsed.to_json() == doc
    assert parsed.statement == (
        '{"format":"infoshare-public-key/v1","holder":"unit","owner":"leeds-cc/front-door",'
        f'"manager":null,"use":"signing","public":"{doc["public"]}"}}').encode()
    assert verify_signature(parsed.public, b"infoshare/key-statement/v1\n" + parsed.statement,
                            parsed.proof_sig)


@pytest.mark.parametrize(("change", "message"), [
    ({"owner": "leeds-cc/early-help"}, "proof of possession does not verify"),
    ({"use": "encryption"}, "proof"),
    ({"holder": "broker", "owner": "broker"}, "proof of possession does not verify"),
    ({"key_id": "0" * 32}, "key_id"),
    ({"format": "infoshare-public-key/v2"}, "format"),
    ({"extra": 1}, "exactly the fields"),
    ({"manager": "m-1"}, "only a manager"),
    ({"owner": "leeds-cc"}, "org/unit"),
    ({"public": "not base64"}, "base64"),
    ({"proof": {"key": "x", "sig": "y"}}, "base64"),
])
def test_a_changed_or_malformed_key_file_is_refused(change: dict[str, Any], message: str) -> None:
    doc = {**_file_json(), **change}
    with pytest.raises(KeyFileError, match=message):
        parse_public_key_file(json.dumps(doc))


@pytest.mark.parametrize("text", ["", "[]", "{", "x" * 5000, '{"format": 1}'])
def test_what_is_not_a_key_file_is_refused_cleanly(text: str) -> None:
    with pytest.raises(KeyFileError, match="infoshare keys generate"):
        parse_public_key_file(text)


def test_signing_files_cannot_be_signed_by_another_key() -> None:
    other = SigningKeyPair.generate()
    with pytest.raises(KeyFormatError):
        sign_public_key_file("unit", "leeds-cc/front-door", "signing",
                             SigningKeyPair.generate().public, other)
    with pytest.raises(KeyFormatError):
        sign_public_key_file("manager", "leeds-cc", "encryption",
                             EncryptionKeyPair.generate().public, other, "m-1")
