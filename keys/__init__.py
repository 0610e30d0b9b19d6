"""Key pairs, key ids, key files, signatures, sealed boxes and signed notes.

The only package of infoshare that imports PyNaCl.
"""

from keys._files import (
    KeyKind,
    PrivateKeyFile,
    open_private_key_text,
    read_private_key,
    sealed_private_key_text,
    write_private_key,
    write_public_key,
)
from keys._note import Checkpoint, NoteSigner, NoteVerifier, open_checkpoint, verify_note
from keys._pairs import (
    EncryptionKeyPair,
    KeyId,
    SigningKeyPair,
    b64decode,
    b64encode,
    key_id,
    parse_public_key_text,
    public_key_text,
    seal,
    verify_signature,
)
from keys._secret import SecretKey, hash_password, verify_password
from keys.errors import DecryptionError, KeyFileError, KeyFormatError, KeysError, NoteError

__all__ = [
    "Checkpoint",
    "DecryptionError",
    "EncryptionKeyPair",
    "KeyFileError",
    "KeyFormatError",
    "KeyId",
    "KeyKind",
    "KeysError",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "PrivateKeyFile",
    "SecretKey",
    "SigningKeyPair",
    "b64decode",
    "b64encode",
    "hash_password",
    "key_id",
    "open_checkpoint",
    "open_private_key_text",
    "parse_public_key_text",
    "public_key_text",
    "read_private_key",
    "seal",
    "sealed_private_key_text",
    "verify_note",
    "verify_password",
    "verify_signature",
    "write_private_key",
    "write_public_key",
]
