"""The ``registry`` commands: set up, serve and change a registry from the shell.

Every change names its actor (``--actor``, by default ``cli:<login name>``)
and prints the new registry version. Errors a user can cause end with a
message and exit status 1 (or 2 for a usage error), never a traceback.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from keys import KeyFormatError, parse_public_key_text
from protocols.directory import format_time, parse_time
from registry.datadir import (
    PUBLIC_KEY_FILE,
    DataDir,
    create_data_dir,
    passphrase_from_env,
)
from registry.errors import Invalid, RegistryError
from registry.store import ROLES, Store, dump_detail

P = ParamSpec("P")
R = TypeVar("R")

DATA_ENV = "INFOSHARE_REGISTRY_DATA"


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid{os.getuid()}"


class WireTime(click.ParamType[datetime]):
    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a time such as 2024-05-01T09:00:00Z", param, ctx)


TIME = WireTime()


def _fail(e: RegistryError) -> click.ClickException:
    message = str(e)
    if isinstance(e, Invalid) and e.fields:
        lines = [f"  {field}: {m}" for field, msgs in sorted(e.fields.items()) for m in msgs]
        message += "\n" + "\n".join(lines)
    return click.ClickException(message)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except RegistryError as e:
        raise _fail(e) from e


def data_dir_option(f: Callable[P, R]) -> Callable[P, R]:
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                        envvar=DATA_ENV, required=True,
                        help=f"The registry's data directory (or ${DATA_ENV}).")(f)


def actor_option(f: Callable[P, R]) -> Callable[P, R]:
    return click.option("--actor", default=lambda: f"cli:{_login()}", show_default="cli:<login>",
                        help="Who the history records for this change.")(f)


def _store(data_dir: Path, *, write: bool) -> Store:
    dd = DataDir(data_dir)
    if write:
        return Store(dd.database_url, signing_key=dd.signing_key(passphrase_from_env()))
    return Store(dd.database_url, public_key=dd.public_key())


def change_command(f: Callable[..., int]) -> Callable[..., None]:
    """A command that changes the registry: opens the store, prints the new version."""

    @wraps(f)
    def run(data_dir: Path, actor: str, **kwargs: Any) -> None:
        with _errors():
            store = _store(data_dir, write=True)
            try:
                version = f(store, actor=actor, **kwargs)
            finally:
                store.close()
        click.echo(f"registry version {version}")

    return actor_option(data_dir_option(run))


@click.group("registry")
def registry() -> None:
    """The registry: protocols, units, keys and managers, as signed versions."""


@registry.command()
@data_dir_option
@click.option("--database-url", default=None,
              help="A PostgreSQL URL (postgresql+psycopg://...); default a SQLite file.")
@actor_option
def init(data_dir: Path, database_url: str | None, actor: str) -> None:
    """Create a registry: its key, its database (version 0) and a first admin token."""
    with _errors():
        dd, key = create_data_dir(data_dir, passphrase_from_env(), database_url)
        store = Store(dd.database_url, signing_key=key)
        try:
            store.initialise(actor=actor)
            token_id, secret = store.create_token("admin", "first administrator", actor=actor)
        finally:
            store.close()
    click.echo(f"registry created in {data_dir}")
    click.echo(f"registry public key (pin this): {data_dir / PUBLIC_KEY_FILE}")
    click.echo(f"admin token {token_id} (shown once, keep it safe):")
    click.echo(secret)


@registry.command()
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
def serve(data_dir: Path, host: str, port: int, workers: int) -> None:
    """Serve the API and web pages with gunicorn."""
    from registry.serve import serve as run

    with _errors():
        run(data_dir, host=host, port=port, workers=workers)


@registry.command("load-protocol")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@change_command
def load_protocol(store: Store, *, file: Path, actor: str) -> int:
    """Load a protocol file (a new protocol or a higher version of one)."""
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise Invalid(f"{file} is not UTF-8 text") from e
    return store.load_protocol(text, actor=actor, source=str(file))


@registry.command("set-status")
@click.argument("protocol_id")
@click.argument("status", type=click.Choice(["draft", "in_force", "suspended", "ended"]))
@click.option("--effective-from", type=TIME, default=None)
@click.option("--ends-at", type=TIME, default=None)
@change_command
def set_status(store: Store, *, protocol_id: str, status: str,
               effective_from: datetime | None, ends_at: datetime | None, actor: str) -> int:
    """Change a protocol's status (and its in-force dates)."""
    return store.set_protocol_status(protocol_id, status, effective_from=effective_from,
                                     ends_at=ends_at, actor=actor)


@registry.command("add-unit")
@click.argument("org")
@click.argument("unit")
@click.option("--name", required=True, help="The unit's name.")
@click.option("--role", "roles", multiple=True, required=True, help="A role (repeat).")
@change_command
def add_unit(store: Store, *, org: str, unit: str, name: str, roles: tuple[str, ...],
             actor: str) -> int:
    """Add a unit to an organisation."""
    return store.add_unit(org, unit, name, list(roles), actor=actor)


@registry.command("set-roles")
@click.argument("org")
@click.argument("unit")
@click.option("--role", "roles", multiple=True, required=True, help="A role (repeat).")
@change_command
def set_roles(store: Store, *, org: str, unit: str, roles: tuple[str, ...], actor: str) -> int:
    """Replace a unit's roles."""
    return store.set_unit_roles(org, unit, list(roles), actor=actor)


@registry.command("remove-unit")
@click.argument("org")
@click.argument("unit")
@change_command
def remove_unit(store: Store, *, org: str, unit: str, actor: str) -> int:
    """Remove a unit that holds no valid key."""
    return store.remove_unit(org, unit, actor=actor)


@registry.command("register-key")
@click.option("--holder", type=click.Choice(["unit", "manager", "broker"]), required=True)
@click.option("--owner", required=True,
              help="org/unit for a unit key, the org for a manager key, broker for the broker.")
@click.option("--use", type=click.Choice(["signing", "encryption"]), required=True)
@click.option("--public-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--public-key", "public_text", help="The public key as base64 text.")
@click.option("--valid-from", type=TIME, default=None, help="Default: now.")
@click.option("--valid-until", type=TIME, default=None)
@click.option("--manager", default=None, help="The manager's id, for a manager key.")
@change_command
def register_key(store: Store, *, holder: str, owner: str, use: str,
                 public_key_file: Path | None, public_text: str | None,
                 valid_from: datetime | None, valid_until: datetime | None,
                 manager: str | None, actor: str) -> int:
    """Register a public key."""
    if (public_key_file is None) == (public_text is None):
        raise click.UsageError("give exactly one of --public-key-file and --public-key")
    try:
        text = public_text if public_text is not None else \
            public_key_file.read_text("ascii")  # type: ignore[union-attr]
        public = parse_public_key_text(text)
    except (KeyFormatError, UnicodeDecodeError) as e:
        raise Invalid("not a public key: base64 of 32 bytes", {"public": [str(e)]}) from e
    when = valid_from or datetime.now(UTC)
    version = store.register_key(holder, owner, use, public, when, valid_until, manager,
                                 actor=actor)
    from keys import key_id

    click.echo(f"key {key_id(public)}")
    return version


@registry.command("revoke-key")
@click.argument("key_id")
@click.option("--reason", required=True)
@click.option("--at", type=TIME, default=None, help="Revoked from this time (default now).")
@change_command
def revoke_key(store: Store, *, key_id: str, reason: str, at: datetime | None,
               actor: str) -> int:
    """Revoke a key."""
    return store.revoke_key(key_id, reason, at, actor=actor)


@registry.command("add-manager")
@click.argument("manager_id")
@click.option("--org", required=True)
@click.option("--title", required=True)
@change_command
def add_manager(store: Store, *, manager_id: str, org: str, title: str, actor: str) -> int:
    """Register a manager (a code, not a name) who may countersign for an organisation."""
    return store.register_manager(manager_id, org, title, actor=actor)


@registry.command()
@data_dir_option
def versions(data_dir: Path) -> None:
    """List every registry version."""
    with _errors():
        store = _store(data_dir, write=False)
        try:
            rows = store.versions()
        finally:
            store.close()
    for v in rows:
        click.echo(f"{v.version}\t{format_time(v.created_at)}\t{v.actor}\t{v.action}")


@registry.command()
@data_dir_option
def history(data_dir: Path) -> None:
    """Show every change with who made it, when and what it was."""
    with _errors():
        store = _store(data_dir, write=False)
        try:
            rows = store.history()
        finally:
            store.close()
    for h in rows:
        click.echo(f"{h.version}\t{format_time(h.created_at)}\t{h.actor}\t{h.action}\t"
                   f"{dump_detail(h.detail)}")


@registry.group()
def token() -> None:
    """API tokens: create (the secret is shown once), list, revoke."""


@token.command("create")
@data_dir_option
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--label", required=True, help="What or who it is for (no personal names).")
@actor_option
def token_create(data_dir: Path, role: str, label: str, actor: str) -> None:
    """Create a token and print its secret once."""
    with _errors():
        store = _store(data_dir, write=False)
        try:
            token_id, secret = store.create_token(role, label, actor=actor)
        finally:
            store.close()
    click.echo(f"token {token_id} ({role}), shown once:")
    click.echo(secret)


@token.command("list")
@data_dir_option
def token_list(data_dir: Path) -> None:
    """List tokens (never their secrets)."""
    with _errors():
        store = _store(data_dir, write=False)
        try:
            rows = store.list_tokens()
        finally:
            store.close()
    for t in rows:
        revoked = "-" if t.revoked_at is None else f"revoked {format_time(t.revoked_at)}"
        click.echo(f"{t.id}\t{t.role}\t{t.label}\t{format_time(t.created_at)}\t{revoked}")


@token.command("revoke")
@click.argument("token_id")
@data_dir_option
@actor_option
def token_revoke(token_id: str, data_dir: Path, actor: str) -> None:
    """Revoke a token."""
    with _errors():
        store = _store(data_dir, write=False)
        try:
            store.revoke_token(token_id, actor=actor)
        finally:
            store.close()
    click.echo(f"token {token_id} revoked")
