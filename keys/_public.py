"""Public key files: whose key it is, for what use, and proof that its holder has it.

A public key file is one JSON object (format ``infoshare-public-key/v1``)::

    {"format": "infoshare-public-key/v1", "holder": "unit", "owner": "leeds-cc/front-door",
     "manager": null, "use": "signing", "public": "<base64 of the 32 raw bytes>",
     "key_id": "<32 hex>", "proof": {"key": "<key id of the signer>", "sig": "<base64>"}}

``holder`` is ``unit`` (``owner`` the unit's address), ``manager`` (``owner`` the
organisation, ``manager`` the manager's id) or ``broker`` (``owner`` is
``broker``); ``use`` is ``signing`` or ``encryption`` (managers and the broker
hold signing keys only). The **statement** is the compact JSON object
``{"format", "holder", "owner", "manager", "use", "public"}`` in that order,
without whitespace; every value is ASCII from a fixed alphabet, so the bytes
follow from the values alone. The **proof** is an Ed25519 signature over
``b"infoshare/key-statement/v1\\n" + statement`` by:

- the key itself, for a signing key (whoever signs holds its private half);
- the same unit's signing key, for an encryption key (an X25519 key cannot
  sign; the unit vouches for it with the key that signs its envelopes).

So a file cannot be offered for another unit, another use, or without its
holder's private key: changing any field breaks the proof.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from keys._pairs import (
    SIGNATURE_BYTES,
    EncryptionKeyPair,
    KeyId,
    SigningKeyPair,
    b64decode,
    b64encode,
    key_id,
    verify_signature,
)
from keys.errors import KeyFileError, KeyFormatError

__all__ = [
    "BROKER_OWNER",
    "NAME_MAX",
    "NAME_PATTERN",
    "PUBLIC_FORMAT",
    "KeyHolder",
    "KeyUse",
    "NewKeys",
    "PublicKeyFile",
    "new_keys",
    "parse_public_key_file",
    "read_public_key_file",
    "sign_public_key_file",
    "write_public_key_file",
]

PUBLIC_FORMAT = "infoshare-public-key/v1"
PROOF_CONTEXT = b"infoshare/key-statement/v1\n"
BROKER_OWNER = "broker"
#: Wire spec section 1 names; keys sits below protocols and keeps its own copy.
NAME_PATTERN = r"[a-z0-9](-?[a-z0-9])*"
NAME_MAX = 40
_NAME = re.compile(NAME_PATTERN)
_KEY_ID = re.compile(r"[0-9a-f]{32}")
_FIELDS = ("format", "holder", "owner", "manager", "use", "public", "key_id", "proof")
#: A key file is a few hundred bytes; anything much larger is not one.
MAX_FILE_BYTES = 4096

KeyHolder = Literal["unit", "manager", "broker"]
KeyUse = Literal["signing", "encryption"]
HOLDERS: tuple[str, ...] = get_args(KeyHolder)
USES: tuple[str, ...] = get_args(KeyUse)


def is_name(value: object) -> bool:
    """True for a wire spec section 1 name (organisation, unit, manager ids)."""
    return isinstance(value, str) and len(value) <= NAME_MAX and bool(_NAME.fullmatch(value))


def _owner_problem(holder: str, owner: object, manager: object) -> str | None:
    """Why ``owner`` and ``manager`` do not fit ``holder``, or None."""
    if holder == "unit":
        org, sep, unit = owner.partition("/") if isinstance(owner, str) else ("", "", "")
        if not (sep and is_name(org) and is_name(unit)):
            return "a unit key's owner is the unit's address, org/unit"
        if manager is not None:
            return "only a manager's key names a manager"
    elif holder == "manager":
        if not is_name(owner):
            return "a manager key's owner is the manager's organisation id"
        if not is_name(manager):
            return "a manager key names its manager's id"
    elif owner != BROKER_OWNER or manager is not None:
        return f"the broker's key has owner {BROKER_OWNER} and no manager"
    return None


def statement_bytes(holder: KeyHolder, owner: str, manager: str | None, use: KeyUse,
                    public: bytes) -> bytes:
    """The exact bytes a key file's proof signs (after :data:`PROOF_CONTEXT`)."""
    values = {"format": PUBLIC_FORMAT, "holder": holder, "owner": owner, "manager": manager,
              "use": use, "public": b64encode(public)}
    return json.dumps(values, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@dataclass(frozen=True)
class PublicKeyFile:
    """A parsed public key file. Its self-signed proof, if any, has been verified."""

    holder: KeyHolder
    owner: str
    manager: str | None
    use: KeyUse
    public: bytes
    proof_key: KeyId
    proof_sig: bytes

    @property
    def key_id(self) -> KeyId:
        return key_id(self.public)

    @property
    def self_signed(self) -> bool:
        return self.proof_key == self.key_id

    @property
    def statement(self) -> bytes:
        return statement_bytes(self.holder, self.owner, self.manager, self.use, self.public)

    def proof_verifies(self, signer_public: bytes) -> bool:
        """True when ``signer_public`` is the proof's key and its signature verifies."""
        if len(signer_public) != 32 or key_id(signer_public) != self.proof_key:
            return False
        return verify_signature(signer_public, PROOF_CONTEXT + self.statement, self.proof_sig)

    def describe(self) -> str:
        """Whose key this is, in words: ``the signing key of unit leeds-cc/front-door``."""
        whose = {"unit": f"unit {self.owner}",
                 "manager": f"manager {self.manager} of {self.owner}",
                 "broker": "the broker"}[self.holder]
        return f"the {self.use} key of {whose}"

    def to_json(self) -> dict[str, Any]:
        return {"format": PUBLIC_FORMAT, "holder": self.holder, "owner": self.owner,
                "manager": self.manager, "use": self.use, "public": b64encode(self.public),
                "key_id": self.key_id,
                "proof": {"key": self.proof_key, "sig": b64encode(self.proof_sig)}}

    def text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


def sign_public_key_file(holder: KeyHolder, owner: str, use: KeyUse, public: bytes,
                         signer: SigningKeyPair, manager: str | None = None) -> PublicKeyFile:
    """The public key file of ``public``, its proof signed by ``signer``.

    Raises:
        KeyFormatError: the holder, owner, manager or use do not fit together, or a
            signing key is not signed by itself.
    """
    problem = _owner_problem(holder, owner, manager) if holder in HOLDERS else "unknown holder"
    if problem is not None:
        raise KeyFormatError(problem)
    if use not in USES or (holder != "unit" and use != "signing"):
        raise KeyFormatError(f"a {holder} holds signing keys only" if use in USES
                             else "unknown use")
    if use == "signing" and signer.public != public:
        raise KeyFormatError("a signing key's statement is signed by that key itself")
    statement = statement_bytes(holder, owner, manager, use, public)
    return PublicKeyFile(holder=holder, owner=owner, manager=manager, use=use,
                         public=bytes(public), proof_key=signer.key_id,
                         proof_sig=signer.sign(PROOF_CONTEXT + statement))


@dataclass(frozen=True)
class NewKeys:
    """Fresh key pairs of one holder and their public key files, by use."""

    signing: SigningKeyPair
    encryption: EncryptionKeyPair | None
    files: dict[str, PublicKeyFile]


def new_keys(holder: KeyHolder, owner: str, manager: str | None = None) -> NewKeys:
    """Generate a holder's keys (a unit's two, a manager's or the broker's one) with their files.

    Raises:
        KeyFormatError: the holder, owner and manager do not fit together.
    """
    signing = SigningKeyPair.generate()
    files = {"signing": sign_public_key_file(holder, owner, "signing", signing.public, signing,
                                             manager)}
    encryption = None
    if holder == "unit":
        # The unit's signing key vouches for its encryption key, which cannot sign.
        encryption = EncryptionKeyPair.generate()
        files["encryption"] = sign_public_key_file(holder, owner, "encryption",
                                                   encryption.public, signing, manager)
    return NewKeys(signing, encryption, files)


def _problem(message: str) -> KeyFileError:
    return KeyFileError(f"not a valid public key file: {message}; "
                        "use the .pub file that infoshare keys generate wrote")


def parse_public_key_file(doc: Mapping[str, Any] | str | bytes) -> PublicKeyFile:
    """Read a public key file from its text or its parsed JSON object.

    Checks every field, that ``key_id`` is the key's id and, for a self-signed
    file (every signing key), that the proof verifies. An encryption key's
    proof names another key; whoever accepts the file checks it with that key.

    Raises:
        KeyFileError: with a sentence saying what is wrong and what to do.
    """
    if isinstance(doc, str | bytes):
        if len(doc) > MAX_FILE_BYTES:
            raise _problem("far too large")
        try:
            doc = json.loads(doc)
        except (ValueError, RecursionError) as e:
            raise _problem("not JSON") from e
    if not isinstance(doc, Mapping) or set(doc) != set(_FIELDS):
        raise _problem("it must be one JSON object with exactly the fields "
                       + ", ".join(_FIELDS))
    if doc["format"] != PUBLIC_FORMAT:
        raise _problem(f"format must be {PUBLIC_FORMAT}")
    holder, owner, manager, use = doc["holder"], doc["owner"], doc["manager"], doc["use"]
    if holder not in HOLDERS:
        raise _problem("holder must be one of " + ", ".join(HOLDERS))
    problem = _owner_problem(holder, owner, manager)
    if problem is not None:
        raise _problem(problem)
    if use not in USES:
        raise _problem("use must be signing or encryption")
    if holder != "unit" and use != "signing":
        raise _problem(f"a {holder} holds signing keys only")
    proof = doc["proof"]
    if not isinstance(proof, Mapping) or set(proof) != {"key", "sig"}:
        raise _problem('proof must be {"key": <key id>, "sig": <base64 signature>}')
    try:
        public = b64decode(doc["public"])
        sig = b64decode(proof["sig"])
    except KeyFormatError as e:
        raise _problem("public and proof.sig must be canonical base64") from e
    if len(public) != 32 or len(sig) != SIGNATURE_BYTES:
        raise _problem("public must be 32 bytes and proof.sig 64 bytes")
    if doc["key_id"] != key_id(public):
        raise _problem("key_id is not the id of this public key")
    if not isinstance(proof["key"], str) or not _KEY_ID.fullmatch(proof["key"]):
        raise _problem("proof.key must be a key id, 32 lowercase hex digits")
    parsed = PublicKeyFile(holder=holder, owner=owner, manager=manager, use=use,
                           public=public, proof_key=KeyId(proof["key"]), proof_sig=sig)
    if use == "signing" and not parsed.self_signed:
        raise _problem("a signing key's proof is signed by that key itself")
    if parsed.self_signed and not parsed.proof_verifies(public):
        raise _problem("its proof of possession does not verify, so the file was changed "
                       "after it was made")
    return parsed


def read_public_key_file(path: Path) -> PublicKeyFile:
    """Read and check a public key file.

    Raises:
        KeyFileError: unreadable, or not a valid public key file.
    """
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read ({e.strerror})") from e
    try:
        return parse_public_key_file(raw)
    except KeyFileError as e:
        raise KeyFileError(f"{path}: {e}") from e


def write_public_key_file(path: Path, key_file: PublicKeyFile) -> None:
    """Write a public key file, never over an existing file.

    Raises:
        KeyFileError: the file exists already.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError as e:
        raise KeyFileError(f"{path} exists already; refusing to overwrite a key") from e
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key_file.text())
