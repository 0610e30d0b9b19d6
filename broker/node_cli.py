"""``infoshare node``: start, stop and inspect a private RabbitMQ node.

The node's state lives in its own directory (``--home``, its ``node.json``),
so ``stop`` and ``status`` need nothing else. ``start`` prints the AMQP URL
exactly as ``infoshare broker init --amqp-url`` takes it (no user, no
password, no virtual host). The administrator's password comes from
``RABBITMQ_ADMIN_PASSWORD`` or ``--admin-password-file``, never the command line.

Exit status: 0 done, 1 error (including ``status`` of a node that is not
running), 2 usage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from broker.errors import ConfigError
from broker.host_config import read_secret_file
from broker.node import STATE_FILE, NodeConfig, NodeError, NodeTls, RabbitNode, free_ports

__all__ = ["node"]

ADMIN_PASSWORD_ENV = "RABBITMQ_ADMIN_PASSWORD"

_home = click.option(
    "--home",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The node's own directory (config, Mnesia, logs, node.json).",
)
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
_pem = click.Path(dir_okay=False, exists=True, path_type=Path)


def _describe(rabbit: RabbitNode, as_json: bool, running: bool) -> None:
    doc: dict[str, Any] = {"node": rabbit.nodename, "pid": rabbit.pid(), "running": running,
                           "amqp_url": rabbit.url, "management_url": rabbit.management_url,
                           "tls": rabbit.config.tls is not None,
                           "admin_user": rabbit.config.admin_user}
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    if not running:
        click.echo(f"{rabbit.nodename}: not running")
        return
    click.echo(f"node:       {rabbit.nodename} (pid {doc['pid']})")
    click.echo(f"AMQP:       {rabbit.url}")
    click.echo(f"management: {rabbit.management_url}")


def _admin_password(user: str, password_file: Path | None) -> str:
    if os.environ.get(ADMIN_PASSWORD_ENV):
        return os.environ[ADMIN_PASSWORD_ENV]
    if password_file is not None:
        try:
            return read_secret_file(password_file, "password file")
        except ConfigError as e:
            raise click.ClickException(str(e)) from e
    if user == "guest":
        return "guest"
    raise click.ClickException(f"set {ADMIN_PASSWORD_ENV} or give --admin-password-file "
                               f"for the administrator {user}")


@click.group(name="node")
def node() -> None:
    """Run a private RabbitMQ node (Debian's rabbitmq-server, no systemd)."""


@node.command()
@_home
@click.option("--name", default="infoshare", show_default=True, help="Erlang node name.")
@click.option("--amqp-port", type=int, help="AMQP(S) port [default: a free one].")
@click.option("--management-port", type=int, help="Management API port [default: a free one].")
@click.option("--dist-port", type=int, help="Erlang distribution port [default: a free one].")
@click.option("--tls-cert", type=_pem, help="The node's certificate (PEM); turns on TLS.")
@click.option("--tls-key", type=_pem, help="The certificate's private key (PEM).")
@click.option("--tls-ca", type=_pem, help="The CA certificate clients verify the node with.")
@click.option("--admin-user", default="guest", show_default=True,
              help="The administrator RabbitMQ creates on first start (guest: loopback only).")
@click.option("--admin-password-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"A file holding the administrator's password (else ${ADMIN_PASSWORD_ENV}).")
@click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait for start-up.")
@_json
def start(home: Path, name: str, amqp_port: int | None, management_port: int | None,
          dist_port: int | None, tls_cert: Path | None, tls_key: Path | None,
          tls_ca: Path | None, admin_user: str, admin_password_file: Path | None,
          timeout: float, as_json: bool) -> None:
    """Start a node in HOME, print its URLs and leave it running.

    A node started before in HOME starts again on its own ports (clients keep
    their URLs), unless others are given.
    """
    given = [p for p in (tls_cert, tls_key, tls_ca) if p is not None]
    if given and len(given) != 3:
        raise click.UsageError("TLS needs all of --tls-cert, --tls-key and --tls-ca")
    tls = NodeTls(tls_cert.resolve(), tls_key.resolve(), tls_ca.resolve()) \
        if tls_cert and tls_key and tls_ca else None
    before = _load(home) if (home / STATE_FILE).exists() else None
    if before is not None and before.is_running():
        raise click.ClickException(f"a node is already running in {home}")
    if before is not None:
        amqp, management, dist = (before.config.amqp_port, before.config.management_port,
                                  before.config.dist_port)
    else:
        amqp, management, dist = free_ports(3)
    config = NodeConfig(
        name=name,
        data_dir=home.resolve(),
        amqp_port=amqp_port or amqp,
        management_port=management_port or management,
        dist_port=dist_port or dist,
        tls=tls,
        admin_user=admin_user,
        admin_password=_admin_password(admin_user, admin_password_file),
    )
    rabbit = RabbitNode(config)
    try:
        rabbit.start(timeout=timeout)
    except NodeError as e:
        raise click.ClickException(str(e)) from e
    _describe(rabbit, as_json, running=True)


@node.command()
@_home
def stop(home: Path) -> None:
    """Stop the node recorded in HOME."""
    rabbit = _load(home)
    try:
        rabbit.stop()
    except NodeError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"stopped {rabbit.nodename}")


@node.command()
@_home
@_json
def status(home: Path, as_json: bool) -> None:
    """Say whether the node in HOME runs, and its URLs; exit status 1 if it does not run."""
    rabbit = _load(home)
    running = rabbit.pid() is not None
    _describe(rabbit, as_json, running)
    if not running:
        raise SystemExit(1)


def _load(home: Path) -> RabbitNode:
    try:
        return RabbitNode.from_state(home)
    except NodeError as e:
        raise click.ClickException(str(e)) from e


if __name__ == "__main__":
    node(prog_name="rabbitmq-node")
