"""Key pairs, key ids, key files, signatures, sealed boxes and signed notes.

The only package of infoshare that imports PyNaCl.
"""

from keys._files import (
    KeyKind,
    PrivateKeyFile,
    check_passphrase,
    read_private_key,
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
from keys._public import (
    BROKER_OWNER,
    PUBLIC_FORMAT,
    KeyHolder,
    KeyUse,
    NewKeys,
    PublicKeyFile,
    new_keys,
    parse_public_key_file,
    read_public_key_file,
    sign_public_key_file,
    write_public_key_file,
)
from keys.errors import (
    DecryptionError,
    KeyFileError,
    KeyFormatError,
    KeysError,
    NoteError,
    WeakPassphrase,
)

__all__ = [
    "BROKER_OWNER",
    "PUBLIC_FORMAT",
    "Checkpoint",
    "DecryptionError",
    "EncryptionKeyPair",
    "KeyFileError",
    "KeyFormatError",
    "KeyHolder",
    "KeyId",
    "KeyKind",
    "KeyUse",
    "KeysError",
    "NewKeys",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "PrivateKeyFile",
    "PublicKeyFile",
    "SigningKeyPair",
    "WeakPassphrase",
    "b64decode",
    "b64encode",
    "check_passphrase",
    "key_id",
    "new_keys",
    "open_checkpoint",
    "parse_public_key_file",
    "parse_public_key_text",
    "public_key_text",
    "read_private_key",
    "read_public_key_file",
    "seal",
    "sign_public_key_file",
    "verify_note",
    "verify_signature",
    "write_private_key",
    "write_public_key",
    "write_public_key_file",
]
