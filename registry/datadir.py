"""A registry's data directory: its database settings, its key and its session secret.

Layout::

    DIR/                   mode 0700: nobody but the registry's user reads into it
    DIR/registry.json      {"database_url": null | "postgresql+psycopg://..."} (0600)
    DIR/registry.sqlite3   the database, when no URL is given (0600, and so its WAL
                           and shared-memory files, which SQLite creates alike)
    DIR/registry-key       the registry's Ed25519 private key, sealed (keys file, 0600)
    DIR/registry-key.pub   its public key, the one clients and the broker pin
    DIR/session-secret     the web pages' session signing secret (0600)

The private key is sealed with the passphrase in the environment variable
``INFOSHARE_REGISTRY_PASSPHRASE``; nothing that signs starts without it. A
database URL that holds a password comes from ``INFOSHARE_DATABASE_URL`` or a
file (never a command line); given at ``init`` it is kept in registry.json.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from keys import (
    KeyFileError,
    KeyFormatError,
    SigningKeyPair,
    parse_public_key_text,
    read_private_key,
    write_private_key,
    write_public_key,
)
from registry.errors import NotInitialised, RegistryError

PASSPHRASE_ENV = "INFOSHARE_REGISTRY_PASSPHRASE"
DATABASE_URL_ENV = "INFOSHARE_DATABASE_URL"
CONFIG_FILE = "registry.json"
SQLITE_FILE = "registry.sqlite3"
KEY_FILE = "registry-key"
PUBLIC_KEY_FILE = "registry-key.pub"
SESSION_SECRET_FILE = "session-secret"


def passphrase_from_env() -> bytes:
    """The registry key's passphrase.

    Raises:
        RegistryError: the variable is unset or empty.
    """
    value = os.environ.get(PASSPHRASE_ENV, "")
    if not value:
        raise RegistryError(f"set {PASSPHRASE_ENV} to the registry key's passphrase")
    return value.encode("utf-8")


def _write_secret_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)


def database_url_from(url_file: Path | None) -> str | None:
    """A database URL from ``url_file`` or ``INFOSHARE_DATABASE_URL``, or None for neither.

    Raises:
        RegistryError: the file cannot be read or is empty.
    """
    if url_file is not None:
        try:
            url = url_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise RegistryError(f"{url_file}: cannot read the database URL") from e
        if not url:
            raise RegistryError(f"{url_file} is empty; write the database URL in it")
        return url
    return os.environ.get(DATABASE_URL_ENV) or None


@dataclass(frozen=True)
class DataDir:
    path: Path
    #: A database URL given for this run (environment or file), over registry.json's.
    url_override: str | None = None

    @property
    def database_url(self) -> str:
        if self.url_override is not None:
            return self.url_override
        try:
            config = json.loads((self.path / CONFIG_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise NotInitialised(f"{self.path} is not a registry data directory; "
                                 "run registry init") from e
        except (OSError, ValueError) as e:
            raise RegistryError(f"{self.path / CONFIG_FILE} cannot be read") from e
        url = config.get("database_url") if isinstance(config, dict) else None
        if url is None:
            return f"sqlite:///{(self.path / SQLITE_FILE).resolve()}"
        return str(url)

    def public_key(self) -> bytes:
        try:
            return parse_public_key_text((self.path / PUBLIC_KEY_FILE).read_text("ascii"))
        except FileNotFoundError as e:
            raise NotInitialised(f"{self.path} has no registry key; run registry init") from e
        except (OSError, UnicodeDecodeError, KeyFormatError) as e:
            raise RegistryError(f"{self.path / PUBLIC_KEY_FILE} is damaged") from e

    def signing_key(self, passphrase: bytes) -> SigningKeyPair:
        path = self.path / KEY_FILE
        if not path.exists():
            raise NotInitialised(f"{self.path} has no registry key; run registry init")
        try:
            pair = read_private_key(path, passphrase).signing_pair()
        except KeyFileError as e:
            raise RegistryError(f"the registry key cannot be opened: {e}") from e
        if pair.public != self.public_key():
            raise RegistryError(f"{path} does not match {PUBLIC_KEY_FILE}")
        return pair

    def session_secret(self) -> str:
        try:
            return (self.path / SESSION_SECRET_FILE).read_text("ascii").strip()
        except FileNotFoundError as e:
            raise NotInitialised(f"{self.path} has no session secret; run registry init") from e


def create_data_dir(path: Path, passphrase: bytes, database_url: str | None = None) -> tuple[
        DataDir, SigningKeyPair]:
    """Make a new data directory with a fresh registry key and session secret.

    Raises:
        RegistryError: the directory holds a registry already, or files cannot be written.
    """
    if not passphrase:
        raise RegistryError(f"set {PASSPHRASE_ENV} to a passphrase for the registry key")
    if (path / CONFIG_FILE).exists() or (path / KEY_FILE).exists():
        raise RegistryError(f"{path} holds a registry already")
    pair = SigningKeyPair.generate()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        # An existing empty directory keeps its mode through mkdir: set it.
        path.chmod(0o700)
        if database_url is None:
            # Created 0600 before SQLite opens it; SQLite gives its -wal and
            # -shm files the mode of the database file.
            _write_secret_file(path / SQLITE_FILE, "")
        write_private_key(path / KEY_FILE, kind="signing", owner="registry",
                          private=pair.seed, public=pair.public, passphrase=passphrase)
        write_public_key(path / PUBLIC_KEY_FILE, pair.public)
        _write_secret_file(path / SESSION_SECRET_FILE, secrets.token_hex(32) + "\n")
        # 0600 too: a PostgreSQL URL may carry a password.
        _write_secret_file(path / CONFIG_FILE, json.dumps({"database_url": database_url}) + "\n")
    except (OSError, KeyFileError) as e:
        raise RegistryError(f"cannot write the registry files in {path}: {e}") from e
    return DataDir(path), pair
