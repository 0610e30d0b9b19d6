"""C2SP signed notes and tlog checkpoints with Ed25519 keys.

A note is text ending in a newline, a blank line, then signature lines
``— <name> <base64(4-byte key hash || 64-byte signature)>``. The signature
covers the text exactly, including its final newline. The key hash is the
first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key), and a verifier
key is written ``<name>+<hex key hash>+<base64(0x01 || public key)>``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from keys._pairs import SigningKeyPair, b64decode, b64encode, verify_signature
from keys.errors import KeyFormatError, NoteError

ED25519_ALG = b"\x01"
SIG_PREFIX = "\u2014 "
_NAME = re.compile(r"^[^\s+]+$")


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519_ALG + public).digest()[:4]


@dataclass(frozen=True)
class NoteVerifier:
    """A named Ed25519 key that verifies note signatures."""

    name: str
    public: bytes

    @property
    def key_hash(self) -> bytes:
        return _key_hash(self.name, self.public)

    def line(self) -> str:
        """The verifier key as text: ``name+hexhash+base64(0x01||key)``."""
        return f"{self.name}+{self.key_hash.hex()}+{b64encode(ED25519_ALG + self.public)}"

    @classmethod
    def parse(cls, line: str) -> NoteVerifier:
        """Parse a verifier key line.

        Raises:
            NoteError: not of the form above, not Ed25519, or the hash does not match.
        """
        # At most two splits: the base64 key itself may contain "+".
        parts = line.strip().split("+", 2)
        if len(parts) != 3 or not _NAME.match(parts[0]):
            raise NoteError("a verifier key is name+hash+key")
        name, hash_hex, key_b64 = parts
        try:
            raw = b64decode(key_b64)
        except KeyFormatError as e:
            raise NoteError("the verifier key is not base64") from e
        if len(raw) != 33 or raw[:1] != ED25519_ALG:
            raise NoteError("only Ed25519 verifier keys are supported")
        verifier = cls(name=name, public=raw[1:])
        if verifier.key_hash.hex() != hash_hex:
            raise NoteError("the verifier key's hash does not match its key")
        return verifier


@dataclass(frozen=True)
class NoteSigner:
    """A named Ed25519 key that signs notes."""

    name: str
    pair: SigningKeyPair

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise NoteError("a key name has no spaces and no '+'")

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(name=self.name, public=self.pair.public)

    def sign(self, text: str) -> str:
        """Return ``text`` as a signed note with one signature by this key."""
        if not text.endswith("\n"):
            raise NoteError("note text must end with a newline")
        sig = self.pair.sign(text.encode("utf-8"))
        return f"{text}\n{SIG_PREFIX}{self.name} {b64encode(self.verifier.key_hash + sig)}\n"


def verify_note(note: str, verifier: NoteVerifier) -> str:
    """Return the text of ``note`` when it carries a valid signature by ``verifier``.

    Signatures by other keys are ignored, as C2SP allows.

    Raises:
        NoteError: malformed, or no valid signature by ``verifier``.
    """
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("a signed note is text, a blank line, then signature lines")
    text, sig_block = note[: split + 1], note[split + 2 :]
    found = False
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise NoteError("malformed signature line")
        fields = line[len(SIG_PREFIX) :].split(" ")
        if len(fields) != 2:
            raise NoteError("malformed signature line")
        name, blob_b64 = fields
        try:
            blob = b64decode(blob_b64)
        except KeyFormatError as e:
            raise NoteError("signature is not base64") from e
        if name != verifier.name or blob[:4] != verifier.key_hash:
            continue
        if len(blob) != 68 or not verify_signature(verifier.public, text.encode("utf-8"),
                                                   blob[4:]):
            raise NoteError(f"the signature by {name} does not verify")
        found = True
    if not found:
        raise NoteError(f"no signature by {verifier.name}")
    return text


@dataclass(frozen=True)
class Checkpoint:
    """The body of a C2SP tlog checkpoint: origin, tree size and root hash."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{b64encode(self.root)}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse checkpoint text (the part of a note above its signatures).

        Raises:
            NoteError: not origin, decimal size and base64 32-byte root, one per line.
        """
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or not lines[0]:
            raise NoteError("a checkpoint has an origin, a size and a root hash")
        origin, size_text, root_b64 = lines[0], lines[1], lines[2]
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise NoteError("the checkpoint size is not a decimal number")
        try:
            root = b64decode(root_b64)
        except KeyFormatError as e:
            raise NoteError("the checkpoint root is not base64") from e
        if len(root) != 32:
            raise NoteError("the checkpoint root is not 32 bytes")
        return cls(origin=origin, size=int(size_text), root=root)


def open_checkpoint(note: str, verifier: NoteVerifier) -> Checkpoint:
    """Verify a signed checkpoint note and parse its body.

    Raises:
        NoteError: bad signature or malformed checkpoint.
    """
    return Checkpoint.parse(verify_note(note, verifier))
