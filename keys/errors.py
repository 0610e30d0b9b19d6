"""The exceptions raised by ``keys``; every one derives from :class:`KeysError`."""

from __future__ import annotations


class KeysError(Exception):
    """Base of every error raised by the keys package."""


class KeyFormatError(KeysError):
    """Text or bytes that should hold a key do not."""


class KeyFileError(KeysError):
    """A key file cannot be read: wrong mode, wrong passphrase, or damaged."""


class WeakPassphrase(KeyFileError):
    """A passphrase too weak to seal a private key with."""


class DecryptionError(KeysError):
    """A sealed box did not open with the given key."""


class NoteError(KeysError):
    """A signed note or checkpoint is malformed or its signature does not verify."""
