"""A gateway's home directory: what ``infoshare agency init`` makes and ``serve`` opens.

::

    HOME/                     0700
      gateway.json            the organisation and which units use the folder integration
      bundle.json             the organisation's bundle (0600, from the broker's operator)
      registry.token          the gateway's own agency token (0600)
      gateway-key.sealed      the key that seals records at rest, sealed with the passphrase
      session.secret          signs the pages' session cookies (0600)
      keys/                   each unit's signing and encryption keys, sealed (0600 each)
      public/                 their public keys, for the registry's administrator
      gateway.db              the store, unless a PostgreSQL URL is given
      units/ORG.UNIT/state/   the SDK's delivery state (ids and codes only)
      folders/ORG.UNIT/       outbox/ sent/ failed/ inbox/ for units that use files

The passphrase (``INFOSHARE_PASSPHRASE``) opens the gateway's key and its
units' keys; it is never stored. A database URL comes from
``INFOSHARE_DATABASE_URL`` or a file, never from the command line.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from agency.bundle import BUNDLE_FILE, TOKEN_FILE, Bundle, read_bundle
from agency.files import write_atomic
from agency.gateway.errors import SetupError
from keys import (
    EncryptionKeyPair,
    KeysError,
    PublicKeyFile,
    SecretKey,
    SigningKeyPair,
    read_private_key,
    sign_public_key_file,
    write_private_key,
    write_public_key_file,
)
from protocols.model import amqp_user

__all__ = ["GatewayHome", "UnitKeys", "init_home"]

CONFIG = "gateway.json"
CONFIG_FORMAT = "infoshare-gateway/v1"
KEY_FILE = "gateway-key.sealed"
SECRET_FILE = "session.secret"


@dataclass(frozen=True)
class UnitKeys:
    unit: str
    signing: SigningKeyPair
    encryption: list[EncryptionKeyPair]


def _write_secret(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


@dataclass(frozen=True)
class GatewayHome:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    def config(self) -> dict[str, object]:
        try:
            doc = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SetupError(f"{self.config_path} not found: run `infoshare agency init "
                             f"--home {self.path}` first") from None
        except (OSError, ValueError) as e:
            raise SetupError(f"{self.config_path}: cannot read ({type(e).__name__})") from e
        if not isinstance(doc, dict) or doc.get("format") != CONFIG_FORMAT:
            raise SetupError(f"{self.config_path}: not a gateway configuration")
        return doc

    @property
    def org(self) -> str:
        return str(self.config()["org"])

    def folder_units(self) -> list[str]:
        units = self.config().get("folder_units", [])
        return [str(u) for u in units] if isinstance(units, list) else []

    def bundle(self) -> Bundle:
        try:
            return read_bundle(self.path / BUNDLE_FILE)
        except KeysError as e:
            raise SetupError(str(e)) from e

    @property
    def token_path(self) -> Path:
        return self.path / TOKEN_FILE

    def token(self) -> str:
        try:
            return self.token_path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise SetupError(f"{self.token_path}: cannot read ({e.strerror})") from e

    def secret_key(self, passphrase: bytes) -> SecretKey:
        try:
            return SecretKey.from_sealed_text(
                (self.path / KEY_FILE).read_text(encoding="utf-8"), passphrase)
        except OSError as e:
            raise SetupError(f"{self.path / KEY_FILE}: cannot read ({e.strerror})") from e
        except KeysError as e:
            raise SetupError(f"{self.path / KEY_FILE}: {e} (is INFOSHARE_PASSPHRASE "
                             "right?)") from e

    def session_secret(self) -> str:
        return (self.path / SECRET_FILE).read_text(encoding="utf-8").strip()

    def database_url(self, given: str | None) -> str:
        return given or f"sqlite:///{self.path / 'gateway.db'}"

    def unit_keys(self, unit: str, passphrase: bytes) -> UnitKeys:
        user = amqp_user(unit)
        keys_dir = self.path / "keys"
        try:
            signing = read_private_key(keys_dir / f"{user}.signing.key", passphrase)
            enc = [read_private_key(p, passphrase).encryption_pair()
                   for p in [keys_dir / f"{user}.encryption.key",
                             *sorted(keys_dir.glob(f"{user}.encryption.*.key"))]]
            return UnitKeys(unit, signing.signing_pair(), enc)
        except KeysError as e:
            raise SetupError(f"keys of {unit}: {e}") from e

    def state_dir(self, unit: str) -> Path:
        return self.path / "units" / amqp_user(unit) / "state"

    def folder(self, unit: str) -> Path:
        return self.path / "folders" / amqp_user(unit)


def init_home(home: Path, bundle_file: Path, token: str, passphrase: bytes, *,
              keys_dir: Path | None = None, folder_units: tuple[str, ...] = ()) -> list[Path]:
    """Make a gateway's home from its organisation's bundle; returns, for each unit whose
    keys were made here, the registration request body written beside their public key
    files (``HOME/public/ORG.UNIT.keys.json``), for the registry's administrator.

    Unit keys found in ``keys_dir`` (``ORG.UNIT.signing.key`` ...) are copied;
    the others are generated, sealed with ``passphrase``.

    Raises:
        SetupError: the home exists already, or the bundle, keys or folder units are wrong.
    """
    home = Path(home)
    gh = GatewayHome(home)
    if gh.config_path.exists():
        raise SetupError(f"{home} holds a gateway already; nothing was changed")
    if not passphrase:
        raise SetupError("set INFOSHARE_PASSPHRASE: it seals the gateway's keys")
    try:
        bundle = read_bundle(bundle_file)
    except KeysError as e:
        raise SetupError(str(e)) from e
    for unit in folder_units:
        if unit not in bundle.units:
            raise SetupError(f"{unit} is not a unit of {bundle.org}'s bundle: choose one of "
                             f"{', '.join(sorted(bundle.units))}")
    try:
        _mkdir(home)
        for sub in ("keys", "public", "units"):
            _mkdir(home / sub)
        shutil.copyfile(bundle_file, home / BUNDLE_FILE)
        (home / BUNDLE_FILE).chmod(0o600)
        if bundle.ca_file:
            shutil.copyfile(bundle.ca_file, home / "bundle-ca.pem")
            doc = json.loads((home / BUNDLE_FILE).read_text(encoding="utf-8"))
            doc["ca_file"] = "bundle-ca.pem"
            _write_secret(home / BUNDLE_FILE, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        _write_secret(home / TOKEN_FILE, token.strip() + "\n")
        _write_secret(home / KEY_FILE, SecretKey.generate().sealed_text(passphrase))
        _write_secret(home / SECRET_FILE, secrets.token_urlsafe(32) + "\n")
        made = []
        for unit in sorted(bundle.units):
            made += _unit_keys(home, unit, passphrase, keys_dir)
        for unit in folder_units:
            for sub in ("outbox", "sent", "failed", "inbox"):
                _mkdir(gh.folder(unit) / sub)
        _write_secret(home / CONFIG, json.dumps({
            "format": CONFIG_FORMAT, "org": bundle.org,
            "folder_units": sorted(folder_units)}, indent=2) + "\n")
    except OSError as e:
        raise SetupError(f"{e.filename or home}: cannot write ({e.strerror})") from e
    except KeysError as e:
        raise SetupError(str(e)) from e
    return made


def _unit_keys(home: Path, unit: str, passphrase: bytes, keys_dir: Path | None) -> list[Path]:
    """The unit's two keys, copied from ``keys_dir`` or made here; for those made here, their
    public key files (``keys/_public.py``), the encryption key's proof signed by the unit's
    signing key."""
    user = amqp_user(unit)
    made: list[Path] = []
    files: dict[str, PublicKeyFile] = {}
    signer: SigningKeyPair | None = None
    for kind in ("signing", "encryption"):
        name = f"{user}.{kind}.key"
        target = home / "keys" / name
        if keys_dir is not None and (keys_dir / name).exists():
            # Opened to prove the passphrase fits, then copied as it is.
            found = read_private_key(keys_dir / name, passphrase)
            if kind == "signing":
                signer = found.signing_pair()
            shutil.copyfile(keys_dir / name, target)
            target.chmod(0o600)
            continue
        if kind == "signing":
            signer = SigningKeyPair.generate()
            private, public = signer.seed, signer.public
        else:
            e = EncryptionKeyPair.generate()
            private, public = e.secret, e.public
        assert signer is not None
        write_private_key(target, kind=kind, owner=unit, private=private, public=public,
                          passphrase=passphrase)
        key_file = sign_public_key_file("unit", unit, kind, public, signer)
        write_public_key_file(home / "public" / f"{user}.{kind}.pub", key_file)
        files[kind] = key_file
    if files:
        made.append(write_registration(home / "public" / f"{user}.keys.json", files))
    return made


def write_registration(path: Path, files: dict[str, PublicKeyFile]) -> Path:
    """Write the body of the registry's key registration request for public key files
    (``{"signing": FILE, "encryption": FILE}``), which the administrator sends as it is."""
    path.write_text(json.dumps({use: f.to_json() for use, f in files.items()}, indent=2)
                    + "\n", encoding="ascii")
    return path
