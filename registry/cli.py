"""The ``registry`` commands: set up, serve and change a registry from the shell.

Conventions (those of every infoshare command): ``--home DIR`` is the
registry's data directory (default ``$INFOSHARE_HOME``); a change is made with
an administrator's token, from ``--token-file FILE`` or ``INFOSHARE_TOKEN``,
and the history records that token, shown by its label; a database URL with a
password comes from ``INFOSHARE_DATABASE_URL`` or ``--database-url-file``.
Exit status 0 done, 1 error, 2 usage, 3 refused (a key file for someone else,
another use or without a valid proof; the broker's last key). Errors are one
line on stderr, ``error: ...``, never a traceback. ``--json`` prints what a
script reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar

import click

from keys import KeyFileError, PublicKeyFile, read_public_key_file
from protocols.directory import format_time, parse_time
from registry.changes import KeyOwner
from registry.datadir import (
    PUBLIC_KEY_FILE,
    DataDir,
    create_data_dir,
    database_url_from,
    passphrase_from_env,
)
from registry.errors import Invalid, LastBrokerKey, RegistryError, Unauthenticated
from registry.history import events
from registry.store import ROLES, Store, TokenInfo

P = ParamSpec("P")
R = TypeVar("R")

HOME_ENV = "INFOSHARE_HOME"
TOKEN_ENV = "INFOSHARE_TOKEN"
#: Refusals with a reason code: exit status 3.
REFUSAL_CODES = frozenset({"wrong_owner", "wrong_use", "bad_proof", "proof_key_not_registered",
                           "last_broker_key"})


class CommandError(click.ClickException):
    """One line on stderr, ``error: ...``; exit status 1."""


    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class Refused(CommandError):
    """A refusal with a reason code: exit status 3."""

    exit_code = 3


def _one_line(e: RegistryError) -> str:
    message = str(e)
    if isinstance(e, Invalid) and e.fields:
        message += ": " + "; ".join(f"{field}: {m}" for field, msgs in sorted(e.fields.items())
                                    for m in msgs)
    return " ".join(message.split())


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except RegistryError as e:
        refused = isinstance(e, LastBrokerKey) or e.code in REFUSAL_CODES
        raise (Refused if refused else CommandError)(_one_line(e)) from e


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


def home_option(f: Callable[P, R]) -> Callable[P, R]:
    return click.option("--home", type=click.Path(file_okay=False, path_type=Path),
                        envvar=HOME_ENV, required=True,
                        help=f"The registry's data directory (default ${HOME_ENV}).")(f)


def url_file_option(f: Callable[P, R]) -> Callable[P, R]:
    return click.option("--database-url-file", type=click.Path(dir_okay=False, path_type=Path),
                        default=None, help="A file holding the database URL (default "
                        "INFOSHARE_DATABASE_URL, else what init recorded).")(f)


def token_option(f: Callable[P, R]) -> Callable[P, R]:
    return click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
                        default=None, help=f"A file holding an admin token (default "
                        f"${TOKEN_ENV}).")(f)


def json_option(f: Callable[P, R]) -> Callable[P, R]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as JSON.")(f)


def _data_dir(home: Path, url_file: Path | None) -> DataDir:
    return DataDir(home, database_url_from(url_file))


def _open(home: Path, url_file: Path | None, *, write: bool) -> Store:
    dd = _data_dir(home, url_file)
    if write:
        return Store(dd.database_url, signing_key=dd.signing_key(passphrase_from_env()))
    return Store(dd.database_url, public_key=dd.public_key())


def _admin(store: Store, token_file: Path | None) -> TokenInfo:
    """The administrator making this change, from their token."""
    if token_file is not None:
        try:
            secret = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise Unauthenticated(f"{token_file}: cannot read the token") from e
    else:
        secret = os.environ.get(TOKEN_ENV, "").strip()
    if not secret:
        raise Unauthenticated(f"a change needs an admin token: give --token-file FILE or set "
                              f"{TOKEN_ENV}")
    token = store.authenticate(secret)
    if token is None or token.role != "admin":
        raise Unauthenticated("the token is not an active admin token")
    return token


def _print(as_json: bool, value: Any, text: str) -> None:
    click.echo(json.dumps(value) if as_json else text)


@contextmanager
def _as_admin(home: Path, url_file: Path | None, token_file: Path | None, *,
              write: bool) -> Iterator[tuple[Store, str]]:
    """The store, and the actor the history records: the administrator's token."""
    with _errors():
        store = _open(home, url_file, write=write)
        try:
            yield store, f"token:{_admin(store, token_file).id}"
        finally:
            store.close()


def change_command(f: Callable[..., Any]) -> Callable[..., None]:
    """A command that changes the registry as the token's holder; prints the new version."""

    @wraps(f)
    def run(home: Path, database_url_file: Path | None, token_file: Path | None,
            as_json: bool, **kwargs: Any) -> None:
        with _as_admin(home, database_url_file, token_file, write=True) as (store, actor):
            result = f(store, actor=actor, **kwargs)
        version, extra = result if isinstance(result, tuple) else (result, {})
        _print(as_json, {"version": version, **extra}, f"registry version {version}")

    return home_option(url_file_option(token_option(json_option(run))))


def _check_token_out(path: Path | None) -> None:
    if path is not None and path.exists():
        raise RegistryError(f"{path} exists already; choose a new file for the token")


def _write_token(path: Path, token_id: str, secret: str, again: str) -> None:
    """The token's secret alone in a new file only its owner reads (0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secret + "\n")
    except OSError as e:
        raise RegistryError(f"{path}: cannot write the token ({e.strerror}); revoke token "
                            f"{token_id} and {again}") from e


@click.group("registry")
def registry() -> None:
    """The registry: protocols, units, keys and managers, as signed versions."""


@registry.command()
@home_option
@url_file_option
@click.option("--admin-label", default="first administrator", show_default=True,
              help="The first admin token's label: the name the history shows for it.")
@click.option("--token-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the first admin token to this new file (0600) instead of printing it.")
@json_option
def init(home: Path, database_url_file: Path | None, admin_label: str, token_out: Path | None,
         as_json: bool) -> None:
    """Create a registry: its key, its database (version 0) and a first admin token."""
    with _errors():
        _check_token_out(token_out)
        dd, key = create_data_dir(home, passphrase_from_env(), database_url_from(database_url_file))
        store = Store(dd.database_url, signing_key=key)
        try:
            store.create_tables()
            token_id, secret = store.create_token("admin", admin_label, actor="setup")
            store.initialise(actor=f"token:{token_id}")
        finally:
            store.close()
        if token_out is not None:
            _write_token(token_out, token_id, secret, "run init again")
    shown = None if token_out is not None else secret
    if as_json:
        click.echo(json.dumps({"home": str(home), "public_key": str(home / PUBLIC_KEY_FILE),
                               "admin_token_id": token_id, "admin_token": shown}))
        return
    click.echo(f"registry created in {home}")
    click.echo(f"registry public key (pin this): {home / PUBLIC_KEY_FILE}")
    if token_out is not None:
        click.echo(f"admin token {token_id} written to {token_out}")
    else:
        click.echo(f"admin token {token_id} (shown once, keep it safe):")
        click.echo(secret)


@registry.command()
@home_option
@url_file_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="0 picks a free port; the address is printed either way.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Serve HTTPS with this certificate chain (PEM).")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="The certificate's private key (PEM).")
def serve(home: Path, database_url_file: Path | None, host: str, port: int, workers: int,
          certfile: Path | None, keyfile: Path | None) -> None:
    """Serve the API and web pages with gunicorn; prints "registry listening on URL"."""
    from registry.serve import serve as run

    if (certfile is None) != (keyfile is None):
        raise click.UsageError("HTTPS needs both --certfile and --keyfile")
    with _errors():
        run(_data_dir(home, database_url_file), host=host, port=port, workers=workers,
            certfile=certfile, keyfile=keyfile)


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


def _key_files(files: tuple[Path, ...]) -> dict[str, PublicKeyFile]:
    """The files by the use each declares; two of one use is a usage error."""
    offered: dict[str, PublicKeyFile] = {}
    for path in files:
        try:
            f = read_public_key_file(path)
        except KeyFileError as e:
            raise Invalid(str(e), code="bad_key_file") from e
        if f.use in offered:
            raise click.UsageError(f"two {f.use} keys given; give one file per use")
        offered[f.use] = f
    return offered


@registry.command("register-keys")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--unit", metavar="ORG/UNIT", default=None, help="The unit whose keys these are.")
@click.option("--manager", metavar="ID", default=None, help="The manager whose key this is.")
@click.option("--broker", is_flag=True, help="The broker's notice and checkpoint key.")
@click.option("--valid-from", type=TIME, default=None, help="Default: now.")
@click.option("--valid-until", type=TIME, default=None)
@change_command
def register_keys(store: Store, *, files: tuple[Path, ...], unit: str | None,
                  manager: str | None, broker: bool, valid_from: datetime | None,
                  valid_until: datetime | None, actor: str) -> tuple[int, dict[str, Any]]:
    """Register public key files as infoshare keys generate wrote them (FILE...: .pub files).

    A unit's signing and encryption keys together, a manager's or the broker's
    signing key. Refused (exit status 3) when a file is for another holder or
    use, or its proof of possession does not verify.
    """
    if sum((unit is not None, manager is not None, broker)) != 1:
        raise click.UsageError("say whose keys these are: --unit ORG/UNIT, --manager ID "
                               "or --broker")
    expected = (KeyOwner("unit", unit) if unit is not None else
                store.manager_keys(manager) if manager is not None else
                KeyOwner("broker", "broker"))
    offered = _key_files(files)
    version = store.register_keys(expected, offered, valid_from, valid_until, actor=actor)
    keys = [{"key_id": f.key_id, "use": f.use} for f in offered.values()]
    if not click.get_current_context().params.get("as_json"):
        for k in keys:
            click.echo(f"key {k['key_id']} ({k['use']})")
    return version, {"keys": keys}


@registry.command("revoke-key")
@click.argument("key_id")
@click.option("--reason", required=True)
@click.option("--at", type=TIME, default=None, help="Revoked from this time (default now).")
@click.option("--last-broker-key", is_flag=True,
              help="Confirm revoking the broker's last valid key (it stops every notice).")
@change_command
def revoke_key(store: Store, *, key_id: str, reason: str, at: datetime | None,
               last_broker_key: bool, actor: str) -> int:
    """Revoke a key."""
    return store.revoke_key(key_id, reason, at, actor=actor, last_broker_key=last_broker_key)


@registry.command("add-manager")
@click.argument("manager_id")
@click.option("--org", required=True)
@click.option("--title", required=True)
@change_command
def add_manager(store: Store, *, manager_id: str, org: str, title: str, actor: str) -> int:
    """Register a manager (a code, not a name) who may countersign for an organisation."""
    return store.register_manager(manager_id, org, title, actor=actor)


def read_command(f: Callable[..., None]) -> Callable[..., None]:
    """A command that only reads: opens the store with the public key."""

    @wraps(f)
    def run(home: Path, database_url_file: Path | None, as_json: bool) -> None:
        with _errors():
            store = _open(home, database_url_file, write=False)
            try:
                f(store, as_json)
            finally:
                store.close()

    return home_option(url_file_option(json_option(run)))


@registry.command()
@read_command
def versions(store: Store, as_json: bool) -> None:
    """List every registry version."""
    rows = store.versions()
    if as_json:
        click.echo(json.dumps([{"version": v.version, "created_at": format_time(v.created_at),
                                "actor": v.actor, "change": v.action} for v in rows]))
        return
    for v in rows:
        click.echo(f"{v.version}\t{format_time(v.created_at)}\t{v.actor}\t{v.action}")


@registry.command()
@read_command
def history(store: Store, as_json: bool) -> None:
    """Every change and token granted or revoked: when, who, and what in words."""
    rows = events(store)
    if as_json:
        click.echo(json.dumps([{"version": e.version, "created_at": format_time(e.at),
                                "actor": e.actor, "actor_label": e.actor_label,
                                "action": e.action, "summary": e.summary, "detail": e.detail}
                               for e in rows]))
        return
    for e in rows:
        version = "-" if e.version is None else str(e.version)
        click.echo(f"{version}\t{format_time(e.at)}\t{e.who}\t{e.summary}")


@registry.group()
def token() -> None:
    """API tokens: create (the secret is shown once), list, revoke."""


def token_command(f: Callable[..., None]) -> Callable[..., None]:
    """A token command, run by an administrator with their own token."""

    @wraps(f)
    def run(home: Path, database_url_file: Path | None, token_file: Path | None,
            as_json: bool, **kwargs: Any) -> None:
        # Tokens are not part of the signed directory: the registry key stays sealed.
        with _as_admin(home, database_url_file, token_file, write=False) as (store, actor):
            f(store, actor, as_json, **kwargs)

    return home_option(url_file_option(token_option(json_option(run))))


@token.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--label", required=True, help="What or who it is for; the history shows it.")
@click.option("--token-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the secret to this new file (0600) instead of printing it.")
@token_command
def token_create(store: Store, actor: str, as_json: bool, role: str, label: str,
                 token_out: Path | None) -> None:
    """Create a token and print its secret once (or write it to --token-out)."""
    _check_token_out(token_out)
    token_id, secret = store.create_token(role, label, actor=actor)
    if token_out is not None:
        _write_token(token_out, token_id, secret, "create another")
        _print(as_json, {"id": token_id, "role": role, "label": label, "secret": None},
               f"token {token_id} ({role}) written to {token_out}")
        return
    _print(as_json, {"id": token_id, "role": role, "label": label, "secret": secret},
           f"token {token_id} ({role}), shown once:\n{secret}")


@token.command("list")
@token_command
def token_list(store: Store, actor: str, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    rows = store.list_tokens()
    if as_json:
        click.echo(json.dumps([{"id": t.id, "role": t.role, "label": t.label,
                                "created_at": format_time(t.created_at),
                                "revoked_at": None if t.revoked_at is None
                                else format_time(t.revoked_at)} for t in rows]))
        return
    for t in rows:
        revoked = "-" if t.revoked_at is None else f"revoked {format_time(t.revoked_at)}"
        click.echo(f"{t.id}\t{t.role}\t{t.label}\t{format_time(t.created_at)}\t{revoked}")


@token.command("revoke")
@click.argument("token_id")
@token_command
def token_revoke(store: Store, actor: str, as_json: bool, token_id: str) -> None:
    """Revoke a token (not the last active admin token)."""
    store.revoke_token(token_id, actor=actor)
    _print(as_json, {"id": token_id, "revoked": True}, f"token {token_id} revoked")
