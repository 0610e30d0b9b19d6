"""``infoshare broker``: provision RabbitMQ from the registry, and run a router.

Both read the deployment file (``HOME/deployment.json``) for RabbitMQ, the
registry and the pinned registry key. The router's own secrets (its signing
key, the broker user's password) come from files under HOME or options.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from broker.deployment import Deployment, default_home, load
from broker.errors import BrokerError
from broker.router import DirectoryHolder, Router
from broker.topology import Credentials, provision
from broker.transfer_log import TransferLog
from keys import KeysError, NoteSigner, parse_public_key_text, read_private_key
from protocols.amqp import amqp_urls_for
from protocols.errors import ProtocolsError
from registry.client import RegistryClient
from registry.errors import RegistryError

log = logging.getLogger("infoshare.broker")

DEFAULT_ORIGIN = "wy-iisp.example/transfer-log"
BROKER_USER = "infoshare-broker"


def _deployment(home: Path) -> Deployment:
    try:
        return load(home)
    except BrokerError as e:
        raise click.ClickException(str(e)) from e


def _registry(dep: Deployment, token: str | None) -> RegistryClient:
    try:
        pinned = parse_public_key_text(Path(dep.registry_key).read_text(encoding="ascii"))
    except (OSError, KeysError) as e:
        raise click.ClickException(f"registry key {dep.registry_key}: unreadable") from e
    return RegistryClient(dep.registry_url, token or dep.agency_token, pinned)


home_option = click.option(
    "--home", type=click.Path(path_type=Path), default=None,
    help="Deployment directory (default $INFOSHARE_HOME, else ./var).")


@click.group()
def broker() -> None:
    """Provision RabbitMQ and run the router."""


@broker.command("provision")
@home_option
@click.option("--management-url", required=True, help="RabbitMQ management API, e.g. "
              "http://127.0.0.1:15672")
@click.option("--admin-user", default="guest", show_default=True)
@click.option("--admin-password-env", default="RABBITMQ_ADMIN_PASSWORD", show_default=True,
              help="Environment variable holding the administrator's password.")
def provision_command(home: Path | None, management_url: str, admin_user: str,
                      admin_password_env: str) -> None:
    """Create or update exchanges, queues, users and rights from the signed directory."""
    dep = _deployment(home or default_home())
    password = os.environ.get(admin_password_env, "guest" if admin_user == "guest" else "")
    try:
        directory = _registry(dep, None).directory()
        report = provision(management_url, admin_user, password, directory,
                           Credentials(Path(dep.credentials)), vhost=dep.vhost)
    except (BrokerError, RegistryError, ProtocolsError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"directory version {directory.version}")
    for label, items in (("created", report.created), ("updated", report.updated),
                         ("removed", report.removed), ("kept", report.kept)):
        for item in items:
            click.echo(f"{label:8} {item}")
    if not report.changed:
        click.echo("nothing to change")


@broker.command("run")
@home_option
@click.option("--log-url", default=None, help="Transfer log database URL "
              "(default sqlite:///HOME/transfer-log.db).")
@click.option("--key-file", type=click.Path(path_type=Path), default=None,
              help="The broker's signing key file (default HOME/broker.signing.key); "
              "passphrase from INFOSHARE_PASSPHRASE.")
@click.option("--origin", default=DEFAULT_ORIGIN, show_default=True,
              help="The transfer log's name in its checkpoints.")
@click.option("--registry-token", envvar="INFOSHARE_REGISTRY_TOKEN", default=None,
              help="Registry token (default: the deployment's agency token).")
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 5000))
def run_command(home: Path | None, log_url: str | None, key_file: Path | None, origin: str,
                registry_token: str | None, batch_size: int) -> None:
    """Route envelopes until SIGTERM: decide, log, deliver, notify, ack."""
    home = (home or default_home()).resolve()
    dep = _deployment(home)
    passphrase = os.environ.get("INFOSHARE_PASSPHRASE", "").encode("utf-8")
    try:
        broker_key = read_private_key(key_file or home / "broker.signing.key",
                                      passphrase).signing_pair()
        password = Credentials(Path(dep.credentials)).password(BROKER_USER)
        registry = _registry(dep, registry_token)
        holder = DirectoryHolder(registry.directory)
        transfer_log = TransferLog.open(log_url or f"sqlite:///{home / 'transfer-log.db'}",
                                        signer=NoteSigner(origin, broker_key), origin=origin)
    except (KeysError, BrokerError, RegistryError, ProtocolsError) as e:
        raise click.ClickException(str(e)) from e
    try:
        urls = amqp_urls_for(dep.amqp_url, BROKER_USER, password, dep.vhost)
    except ValueError as e:
        raise click.ClickException(f"deployment amqp_url: {e}") from e
    router = Router(amqp_url=urls,
                    transfer_log=transfer_log, directory=holder, broker_key=broker_key,
                    batch_size=batch_size)
    router.install_signal_handlers()
    click.echo(f"routing with directory version {holder.current.version}; "
               f"log size {transfer_log.size()}", err=True)
    try:
        router.run()
    finally:
        transfer_log.close()
    stats = router.stats
    click.echo(f"stopped: routed {stats.routed}, refused {stats.refused}, "
               f"redelivered {stats.redelivered}", err=True)
