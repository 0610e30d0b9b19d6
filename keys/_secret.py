"""Symmetric keys for data at rest, sealed key text, and password hashes.

A :class:`SecretKey` encrypts records that a gateway holds (``SecretBox``:
XSalsa20-Poly1305 with a random nonce per message) and derives stable
lookup tags (keyed BLAKE2b) so that a case reference can be found without
being stored in the clear. The key itself is kept as text sealed under a
passphrase with argon2id, in the same way as private key files.

Passwords are hashed with argon2id (``nacl.pwhash.argon2id.str``); the hash
string carries its own salt and limits.
"""

from __future__ import annotations

import hashlib
import json

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from keys._pairs import b64decode, b64encode
from keys.errors import DecryptionError, KeyFileError, KeyFormatError

SEALED_FORMAT = "infoshare-secret-key/v1"
_TAG_PERSON = b"infoshare-tag"
# Interactive limits: a sign-in or a start-up under a second on a small machine.
_OPS = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_MEM = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE


class SecretKey:
    """A 32-byte key for ``SecretBox``; never printed (its repr hides it)."""

    __slots__ = ("_box", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) != nacl.secret.SecretBox.KEY_SIZE:
            raise KeyFormatError(f"a secret key is {nacl.secret.SecretBox.KEY_SIZE} bytes")
        self._key = bytes(key)
        self._box = nacl.secret.SecretBox(self._key)

    @classmethod
    def generate(cls) -> SecretKey:
        return cls(nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE))

    def __repr__(self) -> str:
        return "SecretKey(...)"

    def encrypt(self, plaintext: bytes) -> bytes:
        """Nonce and ciphertext with its tag; a fresh random nonce every call."""
        return bytes(self._box.encrypt(plaintext))

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Raises: DecryptionError: not made with this key, or altered."""
        try:
            return bytes(self._box.decrypt(ciphertext))
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as e:
            raise DecryptionError("the data was not sealed with this key or was altered") from e

    def tag(self, value: str) -> str:
        """A keyed hash of ``value`` (hex): equal values give equal tags, and without
        the key a tag reveals nothing about the value."""
        return hashlib.blake2b(value.encode("utf-8"), key=self._key, digest_size=16,
                               person=_TAG_PERSON).hexdigest()

    def sealed_text(self, passphrase: bytes) -> str:
        """This key sealed under ``passphrase`` (argon2id, then ``SecretBox``), as JSON text."""
        if not passphrase:
            raise KeyFileError("a passphrase is required to seal a key")
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        box = nacl.secret.SecretBox(_derive(passphrase, salt, _OPS, _MEM))
        return json.dumps({
            "format": SEALED_FORMAT,
            "kdf": {"alg": "argon2id", "salt": b64encode(salt), "opslimit": _OPS,
                    "memlimit": _MEM},
            "sealed": b64encode(bytes(box.encrypt(self._key))),
        }, indent=2) + "\n"

    @classmethod
    def from_sealed_text(cls, text: str, passphrase: bytes) -> SecretKey:
        """Raises: KeyFileError: not a sealed key, damaged, or the wrong passphrase."""
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("format") != SEALED_FORMAT:
                raise KeyFileError("not a sealed infoshare secret key")
            kdf = doc["kdf"]
            if kdf.get("alg") != "argon2id":
                raise KeyFileError("unknown key derivation")
            key = _derive(passphrase, b64decode(kdf["salt"]), int(kdf["opslimit"]),
                          int(kdf["memlimit"]))
            return cls(bytes(nacl.secret.SecretBox(key).decrypt(b64decode(doc["sealed"]))))
        except nacl.exceptions.CryptoError as e:
            raise KeyFileError("wrong passphrase or damaged key") from e
        except (AttributeError, KeyError, TypeError, ValueError, KeyFormatError) as e:
            raise KeyFileError("damaged sealed key") from e


def _derive(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return bytes(nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
                                          opslimit=opslimit, memlimit=memlimit))


def hash_password(password: str) -> str:
    """An argon2id hash string of ``password`` (salt and limits inside it)."""
    if not password:
        raise ValueError("a password must not be empty")
    return nacl.pwhash.argon2id.str(password.encode("utf-8"), opslimit=_OPS,
                                    memlimit=_MEM).decode("ascii")


def verify_password(stored: str, password: str) -> bool:
    """Whether ``password`` matches ``stored``; never raises for a wrong one."""
    try:
        return bool(nacl.pwhash.verify(stored.encode("ascii"), password.encode("utf-8")))
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError,
            UnicodeEncodeError):
        return False
