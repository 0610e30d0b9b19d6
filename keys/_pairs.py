"""Key pairs, key ids, public-key text, signatures and sealed boxes (wire spec section 1).

Invariants: a key id is the lowercase hex of the first 16 bytes of SHA-256 over
the raw 32-byte public key; public keys travel as padded base64 of those 32 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import NewType

import nacl.exceptions
import nacl.public
import nacl.signing

from keys.errors import DecryptionError, KeyFormatError

KeyId = NewType("KeyId", str)

KEY_BYTES = 32
SIGNATURE_BYTES = 64


def key_id(public_key: bytes) -> KeyId:
    """Return the wire key id of a raw 32-byte public key."""
    if len(public_key) != KEY_BYTES:
        raise KeyFormatError(f"a public key is {KEY_BYTES} bytes, got {len(public_key)}")
    return KeyId(hashlib.sha256(public_key).digest()[:16].hex())


def b64encode(data: bytes) -> str:
    """RFC 4648 section 4 base64 with padding, as text."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict base64: padding required, no characters outside the alphabet.

    Raises:
        KeyFormatError: the text is not canonical padded base64.
    """
    if not isinstance(text, str):
        # Parsed JSON hands us whatever the document held; a number or null
        # must be a format error, not an AttributeError further down.
        raise KeyFormatError("base64 must be text")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as e:
        raise KeyFormatError("not valid base64") from e
    # Refuse non-canonical encodings (stray bits in the last character), so one
    # value has exactly one text form.
    if base64.b64encode(data).decode("ascii") != text:
        raise KeyFormatError("not canonical base64")
    return data


def public_key_text(public_key: bytes) -> str:
    """The text form of a public key (base64 of its 32 raw bytes)."""
    if len(public_key) != KEY_BYTES:
        raise KeyFormatError(f"a public key is {KEY_BYTES} bytes, got {len(public_key)}")
    return b64encode(public_key)


def parse_public_key_text(text: str) -> bytes:
    """Parse the text of a public key: base64 of its 32 bytes, or a public key file.

    A public key file (JSON, see :mod:`keys._public`) gives its ``public``; a
    self-signed one only if its proof verifies.

    Raises:
        KeyFormatError: neither base64 of exactly 32 bytes nor a valid public key file.
    """
    if text.lstrip().startswith("{"):
        from keys._public import parse_public_key_file
        from keys.errors import KeyFileError

        try:
            return parse_public_key_file(text).public
        except KeyFileError as e:
            raise KeyFormatError(str(e)) from e
    raw = b64decode(text.strip())
    if len(raw) != KEY_BYTES:
        raise KeyFormatError(f"a public key is {KEY_BYTES} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class SigningKeyPair:
    """An Ed25519 key pair; ``seed`` is the 32-byte private seed."""

    seed: bytes = field(repr=False)
    public: bytes

    @classmethod
    def generate(cls) -> SigningKeyPair:
        sk = nacl.signing.SigningKey.generate()
        return cls(seed=bytes(sk), public=bytes(sk.verify_key))

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKeyPair:
        if len(seed) != KEY_BYTES:
            raise KeyFormatError("an Ed25519 seed is 32 bytes")
        sk = nacl.signing.SigningKey(seed)
        return cls(seed=seed, public=bytes(sk.verify_key))

    @property
    def key_id(self) -> KeyId:
        return key_id(self.public)

    @cached_property
    def _signer(self) -> nacl.signing.SigningKey:
        # Expanding the seed costs as much as a signature; do it once per pair.
        return nacl.signing.SigningKey(self.seed)

    def sign(self, message: bytes) -> bytes:
        """A detached 64-byte Ed25519 signature over ``message``."""
        return self._signer.sign(message).signature


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message``; never raises."""
    if len(public_key) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class EncryptionKeyPair:
    """An X25519 key pair for sealed boxes; ``secret`` is the 32-byte private key."""

    secret: bytes = field(repr=False)
    public: bytes

    @classmethod
    def generate(cls) -> EncryptionKeyPair:
        sk = nacl.public.PrivateKey.generate()
        return cls(secret=bytes(sk), public=bytes(sk.public_key))

    @classmethod
    def from_secret(cls, secret: bytes) -> EncryptionKeyPair:
        if len(secret) != KEY_BYTES:
            raise KeyFormatError("an X25519 private key is 32 bytes")
        sk = nacl.public.PrivateKey(secret)
        return cls(secret=secret, public=bytes(sk.public_key))

    @property
    def key_id(self) -> KeyId:
        return key_id(self.public)

    def unseal(self, ciphertext: bytes) -> bytes:
        """Open a sealed box addressed to this key.

        Raises:
            DecryptionError: the box was not sealed to this key or was altered.
        """
        try:
            return nacl.public.SealedBox(nacl.public.PrivateKey(self.secret)).decrypt(ciphertext)
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as e:
            raise DecryptionError("the sealed box does not open with this key") from e


def seal(public_key: bytes, plaintext: bytes) -> bytes:
    """Seal ``plaintext`` to an X25519 public key (libsodium ``crypto_box_seal``)."""
    if len(public_key) != KEY_BYTES:
        raise KeyFormatError("an X25519 public key is 32 bytes")
    return nacl.public.SealedBox(nacl.public.PublicKey(public_key)).encrypt(plaintext)
