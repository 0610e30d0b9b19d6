"""Key files: public keys as one line of text, private keys sealed with a passphrase.

A private key file is JSON: the key's kind, unit and public key in the clear (so
an administrator can see what it is), and the private key in a ``SecretBox``
whose key is derived from the passphrase with argon2id. Files are created with
mode 0600 and refused on read when group or others may read them.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from keys._pairs import (
    EncryptionKeyPair,
    SigningKeyPair,
    b64decode,
    b64encode,
    public_key_text,
)
from keys.errors import KeyFileError, KeyFormatError, WeakPassphrase

KeyKind = Literal["signing", "encryption"]
FILE_FORMAT = "infoshare-private-key/v1"
# Interactive limits keep a CLI start under a second; a deployment that wants
# more can re-seal with higher limits, which the file records.
OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
#: A sealed key file can be copied and attacked offline, at the speed argon2id
#: allows; a short or repetitive passphrase falls first.
PASSPHRASE_MIN_CHARS = 12
PASSPHRASE_MIN_DISTINCT = 5


def check_passphrase(passphrase: bytes) -> None:
    """Refuse a passphrase too weak to seal a private key with.

    Raises:
        WeakPassphrase: with a sentence saying what a strong enough one is.
    """
    try:
        text = passphrase.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WeakPassphrase("the passphrase is not UTF-8 text") from e
    if len(text) < PASSPHRASE_MIN_CHARS or len(set(text)) < PASSPHRASE_MIN_DISTINCT:
        raise WeakPassphrase(
            f"the passphrase is too weak to seal a private key: use at least "
            f"{PASSPHRASE_MIN_CHARS} characters, {PASSPHRASE_MIN_DISTINCT} or more of them "
            "different (four random words are a good passphrase)")


@dataclass(frozen=True)
class PrivateKeyFile:
    kind: KeyKind
    owner: str
    private: bytes
    public: bytes

    def signing_pair(self) -> SigningKeyPair:
        if self.kind != "signing":
            raise KeyFileError(f"this is an {self.kind} key, not a signing key")
        return SigningKeyPair.from_seed(self.private)

    def encryption_pair(self) -> EncryptionKeyPair:
        if self.kind != "encryption":
            raise KeyFileError(f"this is a {self.kind} key, not an encryption key")
        return EncryptionKeyPair.from_secret(self.private)


def _derive(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, opslimit=opslimit, memlimit=memlimit
    )


def _write_private(path: Path, text: str) -> None:
    # O_EXCL: never overwrite an existing key by accident; 0600 from creation,
    # so there is no moment when the file is readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def write_private_key(
    path: Path, *, kind: KeyKind, owner: str, private: bytes, public: bytes, passphrase: bytes
) -> None:
    """Seal ``private`` under ``passphrase`` and write it to a new file with mode 0600.

    Raises:
        KeyFileError: the file exists already or the passphrase is empty.
        WeakPassphrase: the passphrase is too weak (see :func:`check_passphrase`).
    """
    text = sealed_private_key_text(kind=kind, owner=owner, private=private, public=public,
                                   passphrase=passphrase)
    try:
        _write_private(path, text)
    except FileExistsError as e:
        raise KeyFileError(f"{path} exists already; refusing to overwrite a key") from e


def sealed_private_key_text(*, kind: KeyKind, owner: str, private: bytes, public: bytes,
                            passphrase: bytes) -> str:
    """The text of a private key file: ``private`` sealed under ``passphrase``.

    Raises:
        KeyFileError: the passphrase is empty.
    """
    if not passphrase:
        raise KeyFileError("a passphrase is required to seal a private key")
    check_passphrase(passphrase)
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, OPSLIMIT, MEMLIMIT))
    doc = {
        "format": FILE_FORMAT,
        "kind": kind,
        "owner": owner,
        "public": public_key_text(public),
        "kdf": {"alg": "argon2id", "salt": b64encode(salt), "opslimit": OPSLIMIT,
                "memlimit": MEMLIMIT},
        "sealed": b64encode(bytes(box.encrypt(private))),
    }
    return json.dumps(doc, indent=2) + "\n"


def read_private_key(path: Path, passphrase: bytes) -> PrivateKeyFile:
    """Read and unseal a private key file.

    Raises:
        KeyFileError: missing, readable by group or others, damaged, or wrong passphrase.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read ({e.strerror})") from e
    if mode & 0o077:
        raise KeyFileError(f"{path}: mode {mode:04o} lets others read it; chmod 600 it")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read ({e.strerror})") from e
    return open_private_key_text(text, passphrase, where=str(path))


def open_private_key_text(text: str, passphrase: bytes, *,
                          where: str = "private key") -> PrivateKeyFile:
    """Unseal the text of a private key file.

    Raises:
        KeyFileError: damaged, or the wrong passphrase.
    """
    path = where
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise KeyFileError(f"{path}: not an infoshare private key file")
        if doc.get("format") != FILE_FORMAT or doc.get("kind") not in ("signing", "encryption"):
            raise KeyFileError(f"{path}: not an infoshare private key file")
        kdf = doc["kdf"]
        if kdf.get("alg") != "argon2id":
            raise KeyFileError(f"{path}: unknown key derivation {kdf.get('alg')!r}")
        key = _derive(passphrase, b64decode(kdf["salt"]), int(kdf["opslimit"]),
                      int(kdf["memlimit"]))
        private = nacl.secret.SecretBox(key).decrypt(b64decode(doc["sealed"]))
        public = b64decode(doc["public"])
    except nacl.exceptions.CryptoError as e:
        raise KeyFileError(f"{path}: wrong passphrase or damaged file") from e
    except (AttributeError, KeyError, TypeError, ValueError, KeyFormatError) as e:
        raise KeyFileError(f"{path}: damaged key file") from e
    kind: KeyKind = doc["kind"]
    pair_public = (
        SigningKeyPair.from_seed(private).public
        if kind == "signing"
        else EncryptionKeyPair.from_secret(private).public
    )
    if pair_public != public:
        raise KeyFileError(f"{path}: the private key does not match the public key it names")
    return PrivateKeyFile(kind=kind, owner=str(doc.get("owner", "")), private=private,
                          public=public)


def write_public_key(path: Path, public: bytes) -> None:
    """Write a public key as one line of base64 text."""
    path.write_text(public_key_text(public) + "\n", encoding="ascii")
