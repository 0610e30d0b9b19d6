"""``infoshare broker``: set up the broker host, provision RabbitMQ, run a router.

Every command reads the broker host's directory (``--home``, default
``$INFOSHARE_HOME``; see :mod:`broker.host_config`). Secrets never come from
the command line: the broker key's passphrase from ``INFOSHARE_PASSPHRASE``,
the registry token from ``INFOSHARE_TOKEN``, ``--token-file`` or the copy kept
in HOME, the RabbitMQ administrator's password from
``RABBITMQ_ADMIN_PASSWORD`` or ``--admin-password-file``, a database URL
holding a password from ``INFOSHARE_DATABASE_URL`` or ``--database-url-file``.

Errors are one line and exit status 1; usage errors exit 2.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from broker.connection import check_reachable, connection_parameters
from broker.errors import BrokerError, ConfigError, ConnectionFailed, TopologyUnreachable
from broker.host_config import (
    CONFIG_FILE,
    HOME_ENV,
    KEY_FILE,
    LOG_KEY_FILE,
    PUBLIC_KEY_FILE,
    REGISTRY_KEY_FILE,
    TOKEN_FILE,
    BrokerConfig,
    check_amqp_url,
    check_origin,
    default_origin,
    ensure_private_dir,
    load,
    log_database_reference,
    read_secret_file,
    write_private_file,
)
from broker.router import DirectoryHolder, Router
from broker.topology import BROKER_USER, Credentials, ProvisionReport, amqp_url_for, provision
from broker.transfer_log import TransferLog
from keys import (
    BROKER_OWNER,
    KeysError,
    NoteSigner,
    NoteVerifier,
    SigningKeyPair,
    key_id,
    parse_public_key_text,
    read_private_key,
    sign_public_key_file,
    write_private_key,
    write_public_key,
    write_public_key_file,
)
from protocols.errors import ProtocolsError
from protocols.model import Directory
from registry.client import RegistryClient
from registry.errors import RegistryError, RegistryUnavailable

log = logging.getLogger("infoshare.broker")

PASSPHRASE_ENV = "INFOSHARE_PASSPHRASE"
TOKEN_ENV = "INFOSHARE_TOKEN"
ADMIN_PASSWORD_ENV = "RABBITMQ_ADMIN_PASSWORD"
_ERRORS = (BrokerError, KeysError, RegistryError, ProtocolsError)

T = TypeVar("T")


def _run(action: Callable[[], T]) -> T:
    """Call ``action``; the errors of the parts it uses become one line and exit 1."""
    try:
        return action()
    except _ERRORS as e:
        raise click.ClickException(str(e)) from e


def _home(value: Path | None) -> Path:
    if value is None:
        raise click.UsageError(f"give --home DIR or set {HOME_ENV}")
    return value


home_option = click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), envvar=HOME_ENV,
    default=None, show_envvar=True, help="The broker host's directory.")
token_file_option = click.option(
    "--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help=f"A file holding the registry token (else ${TOKEN_ENV}, else HOME/{TOKEN_FILE}).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _passphrase() -> bytes:
    value = os.environ.get(PASSPHRASE_ENV, "")
    if not value:
        raise click.ClickException(f"set {PASSPHRASE_ENV} to the broker key's passphrase")
    return value.encode("utf-8")


def _token(config: BrokerConfig | None, token_file: Path | None) -> str:
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    if token_file is not None:
        return _run(lambda: read_secret_file(token_file, "token file"))
    if config is not None and config.token_file.exists():
        return _run(lambda: read_secret_file(config.token_file, "token file"))
    raise click.ClickException(f"no registry token: set {TOKEN_ENV}, give --token-file, or "
                               f"keep one in HOME/{TOKEN_FILE}")


def _registry(config: BrokerConfig, token_file: Path | None) -> RegistryClient:
    try:
        pinned = parse_public_key_text(config.registry_key.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError, KeysError) as e:
        raise click.ClickException(f"registry key {config.registry_key}: not a readable "
                                   "public key file") from e
    return RegistryClient(config.registry_url, _token(config, token_file), pinned)


def _verifier(config: BrokerConfig) -> NoteVerifier:
    path = config.home / PUBLIC_KEY_FILE
    try:
        public = parse_public_key_text(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError, KeysError) as e:
        raise click.ClickException(f"{path}: not a readable public key file; was "
                                   "`infoshare broker init` run here?") from e
    return NoteVerifier(config.origin, public)


def _echo_json(doc: dict[str, Any]) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


@click.group()
def broker() -> None:
    """Set up the broker host, provision RabbitMQ and run the router."""


@broker.command("init")
@home_option
@click.option("--log-name", default=None, metavar="NAME",
              help="The log's name (origin) in its checkpoints, e.g. "
              "infoshare.example.gov.uk/transfer-log [default: <registry host or this "
              "machine's name>/transfer-log].")
@click.option("--amqp-url", "amqp_urls", multiple=True, required=True, metavar="URL",
              help="A RabbitMQ node, amqps://host:port (repeat for every node of a cluster).")
@click.option("--management-url", required=True, metavar="URL",
              help="RabbitMQ's management API, e.g. https://rabbitmq-1:15671.")
@click.option("--vhost", default="infoshare", show_default=True)
@click.option("--tls-ca", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="CA file that RabbitMQ's TLS certificates are checked against.")
@click.option("--registry-url", required=True, metavar="URL")
@click.option("--registry-key", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The registry's public key file; a copy is pinned in HOME.")
@click.option("--log-database-url", default=None, metavar="URL",
              help="The transfer log's database, a URL without a password "
              "[default: a SQLite file in HOME; $INFOSHARE_DATABASE_URL when set].")
@click.option("--database-url-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="A file holding the log database's URL (with its password).")
@token_file_option
@json_option
def init_command(home: Path | None, log_name: str | None, amqp_urls: tuple[str, ...],
                 management_url: str, vhost: str, tls_ca: Path | None, registry_url: str,
                 registry_key: Path, log_database_url: str | None,
                 database_url_file: Path | None, token_file: Path | None,
                 as_json: bool) -> None:
    """Make the broker's signing key and configuration; print the log's verifier key.

    The key is sealed with the passphrase in INFOSHARE_PASSPHRASE. Refuses a
    HOME that holds a broker already.
    """
    home = _home(home).resolve()
    try:
        urls = tuple(check_amqp_url(u) for u in amqp_urls)
        origin = check_origin(log_name) if log_name else default_origin(registry_url)
    except ConfigError as e:
        raise click.BadParameter(str(e)) from e
    if (home / CONFIG_FILE).exists() or (home / KEY_FILE).exists():
        raise click.ClickException(f"{home} holds a broker already; choose another --home")
    passphrase = _passphrase()
    token = _token(None, token_file) if (token_file or os.environ.get(TOKEN_ENV)) else None
    pinned = _run(lambda: parse_public_key_text(registry_key.read_text(encoding="ascii")))
    database = _run(lambda: log_database_reference(home, url=log_database_url,
                                                   url_file=database_url_file))
    config = BrokerConfig(
        home=home, origin=origin, amqp_urls=urls, management_url=management_url.rstrip("/"),
        vhost=vhost, tls_ca=None if tls_ca is None else tls_ca.resolve(),
        registry_url=registry_url.rstrip("/"), registry_key=home / REGISTRY_KEY_FILE,
        log_database=database)
    pair = SigningKeyPair.generate()
    verifier = NoteVerifier(origin, pair.public)

    def write() -> None:
        ensure_private_dir(home)
        write_private_key(home / KEY_FILE, kind="signing", owner="broker", private=pair.seed,
                          public=pair.public, passphrase=passphrase)
        # A public key file with proof of possession: what registry register-keys takes.
        write_public_key_file(home / PUBLIC_KEY_FILE, sign_public_key_file(
            "broker", BROKER_OWNER, "signing", pair.public, pair))
        write_public_key(home / REGISTRY_KEY_FILE, pinned)
        (home / LOG_KEY_FILE).write_text(verifier.line() + "\n", encoding="ascii")
        if token is not None:
            write_private_file(home / TOKEN_FILE, token + "\n")
        config.save()

    _run(write)
    if as_json:
        _echo_json({"home": str(home), "origin": origin, "log_key": verifier.line(),
                    "key_id": key_id(pair.public),
                    "public_key_file": str(home / PUBLIC_KEY_FILE),
                    "config_file": str(home / CONFIG_FILE)})
        return
    click.echo(f"broker host set up in {home}")
    click.echo(f"broker key {key_id(pair.public)}: register {home / PUBLIC_KEY_FILE} with "
               "infoshare registry register-keys --broker")
    click.echo("log verifier key (give it to auditors):")
    click.echo(verifier.line())


@broker.command("log-key")
@home_option
@json_option
def log_key_command(home: Path | None, as_json: bool) -> None:
    """Print the log's verifier key (name+hash+key) for auditors."""
    config = _run(lambda: load(_home(home)))
    verifier = _verifier(config)
    if as_json:
        _echo_json({"origin": config.origin, "log_key": verifier.line(),
                    "key_id": key_id(verifier.public)})
    else:
        click.echo(verifier.line())


@broker.command("provision")
@home_option
@click.option("--admin-user", default="guest", show_default=True,
              help="A RabbitMQ administrator.")
@click.option("--admin-password-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help=f"A file holding the administrator's password (else ${ADMIN_PASSWORD_ENV}; "
              "guest's is guest).")
@click.option("--wait", "wait_seconds", default=0.0, show_default=True,
              type=click.FloatRange(min=0), metavar="SECONDS",
              help="Wait up to this long for the registry and RabbitMQ to answer.")
@token_file_option
@json_option
def provision_command(home: Path | None, admin_user: str, admin_password_file: Path | None,
                      wait_seconds: float, token_file: Path | None, as_json: bool) -> None:
    """Create or update exchanges, queues, users and rights from the signed directory."""
    config = _run(lambda: load(_home(home)))
    if os.environ.get(ADMIN_PASSWORD_ENV):
        password = os.environ[ADMIN_PASSWORD_ENV]
    elif admin_password_file is not None:
        password = _run(lambda: read_secret_file(admin_password_file, "password file"))
    elif admin_user == "guest":
        password = "guest"
    else:
        raise click.ClickException(f"set {ADMIN_PASSWORD_ENV} or give --admin-password-file "
                                   f"for {admin_user}")
    registry = _registry(config, token_file)

    def attempt() -> tuple[Directory, ProvisionReport]:
        directory = registry.directory()
        return directory, provision(
            config.management_url, admin_user, password, directory,
            Credentials(config.credentials_file), vhost=config.vhost,
            amqp_url=config.amqp_urls[0], tls_ca=config.tls_ca)

    directory, report = _run(lambda: _waiting(attempt, wait_seconds))
    if as_json:
        _echo_json({"directory_version": directory.version, "created": list(report.created),
                    "updated": list(report.updated), "removed": list(report.removed),
                    "kept": list(report.kept)})
        return
    click.echo(f"directory version {directory.version}")
    for label, items in (("created", report.created), ("updated", report.updated),
                         ("removed", report.removed), ("kept", report.kept)):
        for item in items:
            click.echo(f"{label:8} {item}")
    if not report.changed:
        click.echo("nothing to change")


def _waiting(action: Callable[[], T], seconds: float) -> T:
    """``action()``, tried again every second for up to ``seconds`` while what it needs
    does not answer yet (a registry or RabbitMQ still starting)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except (RegistryUnavailable, TopologyUnreachable, ConnectionFailed):
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


@broker.command("checkpoint")
@home_option
@click.option("--database-url-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="A file holding the log database's URL.")
def checkpoint_command(home: Path | None, database_url_file: Path | None) -> None:
    """Print the log's newest signed checkpoint, to keep apart from the database.

    An auditor later checks that a log (after a restore, say) still holds the
    tree it signed: ``infoshare audit verify EXPORT --checkpoint FILE``.
    """
    config = _run(lambda: load(_home(home)))
    url = _run(lambda: config.log_database_url(database_url_file))
    transfer_log = _run(lambda: TransferLog.open(url, signer=None, origin=config.origin))
    try:
        note = _run(transfer_log.latest_checkpoint)
    finally:
        transfer_log.close()
    if note is None:
        raise click.ClickException("the log has no checkpoint yet: nothing was routed")
    click.echo(note, nl=False)


@broker.command("backup")
@home_option
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The backup file to make (it must not exist).")
def backup_command(home: Path | None, out: Path) -> None:
    """Copy a transfer log on SQLite while routers run (PostgreSQL: use pg_dump)."""
    config = _run(lambda: load(_home(home)))
    url = _run(config.log_database_url)
    transfer_log = _run(lambda: TransferLog.open(url, signer=None, origin=config.origin))
    try:
        size = _run(lambda: transfer_log.backup(out))
    finally:
        transfer_log.close()
    click.echo(f"backed up {size} entries to {out}")


@broker.command("config")
@home_option
@click.option("--amqp-url", "amqp_urls", multiple=True, metavar="URL",
              help="Every RabbitMQ node, amqps://host:port (repeat); replaces the list.")
@click.option("--management-url", default=None, metavar="URL")
@click.option("--tls-ca", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="CA file that RabbitMQ's certificates are checked against.")
@click.option("--registry-url", default=None, metavar="URL")
def config_command(home: Path | None, amqp_urls: tuple[str, ...], management_url: str | None,
                   tls_ca: Path | None, registry_url: str | None) -> None:
    """Print the broker host's configuration (JSON); with options, change those first."""
    config = _run(lambda: load(_home(home)))
    try:
        urls = tuple(check_amqp_url(u) for u in amqp_urls) or config.amqp_urls
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--amqp-url") from e
    changed = dataclasses.replace(
        config, amqp_urls=urls,
        management_url=(management_url or config.management_url).rstrip("/"),
        tls_ca=tls_ca.resolve() if tls_ca else config.tls_ca,
        registry_url=(registry_url or config.registry_url).rstrip("/"))
    if changed != config:
        _run(changed.save)
    _echo_json(changed.document())


@broker.command("run")
@home_option
@click.option("--database-url-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="A file holding the log database's URL (overrides HOME's "
              "configuration; $INFOSHARE_DATABASE_URL overrides both).")
@token_file_option
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 5000),
              help="Most messages decided and logged in one commit.")
@click.option("--batch-delay", default=0.005, show_default=True,
              type=click.FloatRange(0, 10), metavar="SECONDS",
              help="Least time between two batches: under load a longer delay makes "
              "batches larger and each commit serve more messages; a message reaching an "
              "idle router never waits for it.")
@click.option("--health-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A file touched every second while the router consumes (for health "
              "checks: healthy while it is fresh).")
@click.option("--wait", "wait_seconds", default=0.0, show_default=True,
              type=click.FloatRange(min=0), metavar="SECONDS",
              help="Wait up to this long for RabbitMQ and the registry to answer at start.")
def run_command(home: Path | None, database_url_file: Path | None, token_file: Path | None,
                batch_size: int, batch_delay: float, health_file: Path | None,
                wait_seconds: float) -> None:
    """Route envelopes until SIGTERM: decide, log, deliver, notify, ack."""
    config = _run(lambda: load(_home(home)))
    # Whatever the router creates (the log's files) is for this user alone.
    os.umask(0o077)
    _run(lambda: ensure_private_dir(config.home))
    passphrase = _passphrase()
    broker_key = _run(lambda: read_private_key(config.key_file, passphrase).signing_pair())
    password = _run(lambda: Credentials(config.credentials_file).password(BROKER_USER))
    urls = [amqp_url_for(u, BROKER_USER, password, config.vhost) for u in config.amqp_urls]
    params = _run(lambda: connection_parameters(urls, tls_ca=config.tls_ca))
    _run(lambda: _waiting(lambda: check_reachable(params), wait_seconds))
    registry = _registry(config, token_file)
    holder = _run(lambda: _waiting(lambda: DirectoryHolder(registry.directory), wait_seconds))
    url = _run(lambda: config.log_database_url(database_url_file))
    transfer_log = _run(lambda: TransferLog.open(
        url, signer=NoteSigner(config.origin, broker_key), origin=config.origin))
    router = _run(lambda: Router(
        amqp_url=urls, tls_ca=config.tls_ca, transfer_log=transfer_log, directory=holder,
        broker_key=broker_key, batch_size=batch_size, batch_delay=batch_delay,
        health_file=health_file))
    router.install_signal_handlers()
    click.echo(f"routing with directory version {holder.current.version}; "
               f"log size {transfer_log.size()}", err=True)
    try:
        router.run()
        # Stopped cleanly: the last checkpoint covers every entry, for auditors.
        _run(lambda: transfer_log.checkpoint(datetime.now(UTC)))
    finally:
        transfer_log.close()
    stats = router.stats
    click.echo(f"stopped: routed {stats.routed}, refused {stats.refused}, "
               f"redelivered {stats.redelivered}", err=True)


__all__ = ["broker"]
