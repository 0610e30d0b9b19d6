"""Key pairs, key ids, strict base64, signatures and sealed boxes (wire spec section 1)."""

from __future__ import annotations

import hashlib

import pytest

from keys import (
    DecryptionError,
    EncryptionKeyPair,
    KeyFormatError,
    SigningKeyPair,
    b64decode,
    b64encode,
    key_id,
    parse_public_key_text,
    public_key_text,
    seal,
    verify_signature,
)

# RFC 8032 section 7.1, TEST 1 and TEST 2: secret key, public key, message, signature.
RFC8032 = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e"
        "39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="TEST 1",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f"
        "3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="TEST 2",
    ),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_known_answers(secret: str, public: str, message: str, signature: str) -> None:
    pair = SigningKeyPair.from_seed(bytes.fromhex(secret))
    assert pair.public.hex() == public
    assert pair.sign(bytes.fromhex(message)).hex() == signature
    assert verify_signature(bytes.fromhex(public), bytes.fromhex(message),
                            bytes.fromhex(signature))


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_signature_refused_for_other_message(secret: str, public: str, message: str,
                                                     signature: str) -> None:
    assert not verify_signature(bytes.fromhex(public), bytes.fromhex(message) + b"\x00",
                                bytes.fromhex(signature))


def test_key_id_is_first_16_bytes_of_sha256_in_lowercase_hex() -> None:
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    # Known answer, so a change of the definition (length, case, hash) shows.
    assert key_id(public) == "21fe31dfa154a261626bf854046fd227"
    assert key_id(public) == hashlib.sha256(public).hexdigest()[:32]
    assert SigningKeyPair.from_seed(bytes(32)).key_id == key_id(
        SigningKeyPair.from_seed(bytes(32)).public)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_key_id_refuses_keys_that_are_not_32_bytes(length: int) -> None:
    with pytest.raises(KeyFormatError):
        key_id(bytes(length))


def test_encryption_key_id_uses_the_same_definition() -> None:
    pair = EncryptionKeyPair.generate()
    assert pair.key_id == hashlib.sha256(pair.public).hexdigest()[:32]


def test_base64_round_trip_with_padding() -> None:
    assert b64encode(b"a") == "YQ=="
    assert b64decode("YQ==") == b"a"
    assert b64decode("") == b""


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("YQ", id="padding missing"),
        pytest.param("YR==", id="stray bits in the last character"),
        pytest.param("YQ==\n", id="trailing newline"),
        pytest.param("Y Q==", id="space inside"),
        pytest.param("-_8=", id="url-safe alphabet"),
        pytest.param("YQ===", id="too much padding"),
        pytest.param("Y\u00e9==", id="not ascii"),
    ],
)
def test_base64_is_strict(text: str) -> None:
    with pytest.raises(KeyFormatError):
        b64decode(text)


@pytest.mark.parametrize("value", [None, 5, b"YQ=="])
def test_base64_refuses_what_is_not_text(value: object) -> None:
    with pytest.raises(KeyFormatError):
        b64decode(value)  # type: ignore[arg-type]


def test_public_key_text_round_trip_and_length() -> None:
    pair = SigningKeyPair.generate()
    assert parse_public_key_text(public_key_text(pair.public)) == pair.public
    with pytest.raises(KeyFormatError):
        parse_public_key_text(b64encode(bytes(31)))
    with pytest.raises(KeyFormatError):
        public_key_text(bytes(33))


def test_verify_signature_never_raises_on_bad_lengths() -> None:
    pair = SigningKeyPair.generate()
    sig = pair.sign(b"m")
    assert verify_signature(pair.public, b"m", sig)
    assert not verify_signature(pair.public[:31], b"m", sig)
    assert not verify_signature(pair.public, b"m", sig[:63])
    assert not verify_signature(SigningKeyPair.generate().public, b"m", sig)


def test_sealed_box_round_trip() -> None:
    pair = EncryptionKeyPair.generate()
    box = seal(pair.public, b'{"record": {}}')
    assert box != b'{"record": {}}'
    assert pair.unseal(box) == b'{"record": {}}'


def test_sealed_box_refuses_the_wrong_key() -> None:
    box = seal(EncryptionKeyPair.generate().public, b"for someone else")
    with pytest.raises(DecryptionError):
        EncryptionKeyPair.generate().unseal(box)


def test_sealed_box_refuses_a_changed_byte() -> None:
    pair = EncryptionKeyPair.generate()
    box = bytearray(seal(pair.public, b"payload"))
    box[-1] ^= 0x01
    with pytest.raises(DecryptionError):
        pair.unseal(bytes(box))


def test_pairs_rebuild_from_their_private_halves() -> None:
    s = SigningKeyPair.generate()
    assert SigningKeyPair.from_seed(s.seed) == s
    e = EncryptionKeyPair.generate()
    assert EncryptionKeyPair.from_secret(e.secret) == e
    with pytest.raises(KeyFormatError):
        SigningKeyPair.from_seed(bytes(31))
    assert "seed=" not in repr(s)
