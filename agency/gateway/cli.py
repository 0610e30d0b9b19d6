"""``infoshare agency ...``: set up and run an organisation's gateway.

Secrets never on the command line: the gateway's passphrase from
``INFOSHARE_PASSPHRASE``, the registry token from ``--token-file`` or
``INFOSHARE_TOKEN``, a database URL from ``INFOSHARE_DATABASE_URL`` or
``--database-url-file``, account passwords from ``INFOSHARE_ACCOUNT_PASSWORD``
and a manager's passphrase from ``INFOSHARE_MANAGER_PASSPHRASE``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from agency.bundle import read_token
from agency.errors import AgencyError
from agency.gateway.api import token_digest
from agency.gateway.auth import make_account, make_manager_account
from agency.gateway.home import GatewayHome, init_home
from agency.gateway.runtime import database_url, open_store, passphrase
from keys import KeysError, read_public_key_file

__all__ = ["agency"]


def _home_default() -> Path:
    return Path(os.environ.get("INFOSHARE_HOME") or "var/gateway")


home_option = click.option("--home", type=click.Path(file_okay=False, path_type=Path),
                           default=_home_default, show_default="$INFOSHARE_HOME",
                           help="The gateway's directory.")
db_option = click.option("--database-url-file", type=click.Path(dir_okay=False,
                                                                path_type=Path),
                         default=None, help="A file holding a PostgreSQL URL (default "
                         "$INFOSHARE_DATABASE_URL, else SQLite under HOME).")


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (AgencyError, KeysError) as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"{e.filename or 'I/O'}: {e.strerror}") from e


@click.group()
def agency() -> None:
    """An organisation's gateway: set up, run, accounts and case systems."""


@agency.command("init")
@home_option
@click.option("--bundle", "bundle_file", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The organisation's bundle from the broker's operator.")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="The gateway's own agency token (default $INFOSHARE_TOKEN).")
@click.option("--keys", "keys_dir", type=click.Path(file_okay=False, exists=True,
                                                     path_type=Path), default=None,
              help="Existing unit key files to use (ORG.UNIT.signing.key ...); others are made.")
@click.option("--folder-unit", "folder_units", multiple=True, metavar="ORG/UNIT",
              help="A unit whose case system exchanges files (repeatable).")
def init(home: Path, bundle_file: Path, token_file: Path | None, keys_dir: Path | None,
         folder_units: tuple[str, ...]) -> None:
    """Make a gateway's home from its organisation's bundle."""
    with _errors():
        made = init_home(home, bundle_file, read_token(token_file), passphrase(),
                         keys_dir=keys_dir, folder_units=folder_units)
        gh = GatewayHome(home)
        open_store(home, passphrase(), database_url(None)).close()
    click.echo(f"gateway for {gh.org} in {home}")
    for path in made:
        click.echo(f"new keys (the registry's administrator registers them): {path}")


@agency.command("serve")
@home_option
@db_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))
@click.option("--certfile", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="TLS certificate (PEM) for HTTPS.")
@click.option("--keyfile", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="TLS private key (PEM) for HTTPS.")
def serve_command(home: Path, database_url_file: Path | None, host: str, port: int,
                  threads: int, certfile: Path | None, keyfile: Path | None) -> None:
    """Run the gateway: API, pages, and the courier, until stopped."""
    from agency.gateway.serve import serve

    if (certfile is None) != (keyfile is None):
        raise click.UsageError("give both --certfile and --keyfile, or neither")
    with _errors():
        serve(home, passphrase(), database_url(database_url_file), host=host, port=port,
              threads=threads, certfile=certfile, keyfile=keyfile)


@agency.group("account")
def account() -> None:
    """Accounts of practitioners and managers (local; single sign-on can replace them)."""


@account.command("add")
@home_option
@db_option
@click.option("--username", required=True)
@click.option("--unit", required=True, metavar="ORG/UNIT")
@click.option("--role", required=True, type=click.Choice(["practitioner", "manager"]))
@click.option("--manager-id", default=None, help="A manager's code in the registry.")
def account_add(home: Path, database_url_file: Path | None, username: str, unit: str,
                role: str, manager_id: str | None) -> None:
    """Add an account; its password from INFOSHARE_ACCOUNT_PASSWORD. A manager's signing key
    is made and sealed with INFOSHARE_MANAGER_PASSPHRASE; register its public key."""
    password = os.environ.get("INFOSHARE_ACCOUNT_PASSWORD", "")
    if len(password) < 10:
        raise click.UsageError("set INFOSHARE_ACCOUNT_PASSWORD (at least 10 characters)")
    with _errors():
        gh = GatewayHome(home)
        if unit not in gh.bundle().units:
            raise click.UsageError(f"{unit} is not a unit of {gh.org}")
        pub_path = None
        if role == "manager":
            mp = os.environ.get("INFOSHARE_MANAGER_PASSPHRASE", "")
            if not manager_id or len(mp) < 10:
                raise click.UsageError("a manager needs --manager-id and "
                                       "INFOSHARE_MANAGER_PASSPHRASE (at least 10 characters)")
            made, pub_path = make_manager_account(
                gh.path / "public", username=username, unit=unit, password=password,
                manager_id=manager_id, manager_passphrase=mp)
        else:
            made = make_account(username=username, unit=unit, role=role, password=password)
        store = open_store(home, passphrase(), database_url(database_url_file))
        try:
            store.add_account(made)
        finally:
            store.close()
    click.echo(f"account {username}: {role} of {unit}")
    if pub_path is not None:
        click.echo(f"manager key {read_public_key_file(pub_path).key_id} (register it for "
                   f"{gh.org} as manager {manager_id}): {pub_path}")


@agency.group("case-system")
def case_system() -> None:
    """Case systems that use the API, each with a token of its own."""


@case_system.command("add")
@home_option
@db_option
@click.option("--unit", required=True, metavar="ORG/UNIT")
@click.option("--label", required=True, help="What the case system is, e.g. 'Mosaic'.")
@click.option("--token-out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write the new token to (mode 0600); it is not shown again.")
def case_system_add(home: Path, database_url_file: Path | None, unit: str, label: str,
                    token_out: Path) -> None:
    """Create a case system's API token, bound to one unit."""
    with _errors():
        gh = GatewayHome(home)
        if unit not in gh.bundle().units:
            raise click.UsageError(f"{unit} is not a unit of {gh.org}")
        token = secrets.token_urlsafe(32)
        ident = secrets.token_hex(6)
        fd = os.open(token_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        store = open_store(home, passphrase(), database_url(database_url_file))
        try:
            store.add_case_system(id=ident, unit=unit, label=label[:80],
                                  token_sha256=token_digest(token))
        finally:
            store.close()
    click.echo(f"case system {ident} for {unit}: token in {token_out}")
