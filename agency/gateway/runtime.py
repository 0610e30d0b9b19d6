"""Opening a gateway from its home: store, keys, registry, clients, folders."""

from __future__ import annotations

import os
from pathlib import Path

from agency.gateway.courier import Courier
from agency.gateway.errors import SetupError
from agency.gateway.folder import FolderIntegration
from agency.gateway.home import GatewayHome
from agency.gateway.service import DirectoryCache, Gateway
from agency.gateway.store import GatewayStore
from registry.client import RegistryClient

__all__ = ["DATABASE_URL_ENV", "PASSPHRASE_ENV", "database_url", "open_gateway", "passphrase"]

PASSPHRASE_ENV = "INFOSHARE_PASSPHRASE"
DATABASE_URL_ENV = "INFOSHARE_DATABASE_URL"


def passphrase() -> bytes:
    value = os.environ.get(PASSPHRASE_ENV, "")
    if not value:
        raise SetupError(f"set {PASSPHRASE_ENV}: it opens the gateway's keys")
    return value.encode("utf-8")


def database_url(url_file: Path | None) -> str | None:
    """From ``--database-url-file``, else ``$INFOSHARE_DATABASE_URL``, else None (SQLite)."""
    if url_file is not None:
        try:
            return url_file.read_text(encoding="utf-8").strip() or None
        except OSError as e:
            raise SetupError(f"{url_file}: cannot read ({e.strerror})") from e
    return os.environ.get(DATABASE_URL_ENV) or None


def open_store(home: Path, secret: bytes, url: str | None) -> GatewayStore:
    gh = GatewayHome(Path(home))
    gh.config()
    return GatewayStore(gh.database_url(url), gh.secret_key(secret))


def open_gateway(home: Path, secret: bytes, url: str | None) -> tuple[Gateway, Courier]:
    """The gateway of ``home`` and its courier (not started).

    Raises:
        SetupError: the home is incomplete, or a key does not open.
    """
    gh = GatewayHome(Path(home))
    store = open_store(home, secret, url)
    bundle = gh.bundle()
    registry = RegistryClient(bundle.registry_url, gh.token(), bundle.registry_public_key())
    units = {u: gh.unit_keys(u, secret) for u in sorted(bundle.units)}
    gateway = Gateway(org=gh.org, store=store, bundle=bundle, units=units,
                      directory=DirectoryCache(registry.directory), state_dir=gh.state_dir,
                      folder_units=gh.folder_units())
    folders = {u: gh.folder(u) for u in gh.folder_units()}
    folder = FolderIntegration(gateway, folders) if folders else None
    return gateway, Courier(gateway, folder_step=folder.step if folder else None)
