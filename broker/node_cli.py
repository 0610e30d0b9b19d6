"""``node`` commands: start, stop and inspect a private RabbitMQ node.

The node's state lives in its data directory (``node.json``), so ``stop`` and
``status`` only need ``--data-dir``. Attach to a larger CLI with
``main.add_command(node)``, or run ``python -m broker.node_cli``.
"""

from __future__ import annotations

from pathlib import Path

import click

from broker.node import STATE_FILE, NodeConfig, NodeError, RabbitNode, free_ports

__all__ = ["node"]

_data_dir = click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The node's own directory (config, Mnesia, logs, node.json).",
)


@click.group(name="node")
def node() -> None:
    """Run a private RabbitMQ node (Debian's rabbitmq-server, no systemd)."""


@node.command()
@_data_dir
@click.option("--name", default="infoshare", show_default=True, help="Erlang node name.")
@click.option("--amqp-port", type=int, help="AMQP port [default: a free one].")
@click.option("--management-port", type=int, help="Management API port [default: a free one].")
@click.option("--dist-port", type=int, help="Erlang distribution port [default: a free one].")
@click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait for start-up.")
def start(
    data_dir: Path,
    name: str,
    amqp_port: int | None,
    management_port: int | None,
    dist_port: int | None,
    timeout: float,
) -> None:
    """Start a node in DATA_DIR, print its URLs and leave it running.

    A node started before in DATA_DIR starts again on its own ports (clients keep
    their URLs), unless others are given.
    """
    before = _load(data_dir) if (data_dir / STATE_FILE).exists() else None
    if before is not None and before.is_running():
        raise click.ClickException(f"a node is already running in {data_dir}")
    if before is not None:
        amqp, management, dist = (before.config.amqp_port, before.config.management_port,
                                  before.config.dist_port)
    else:
        amqp, management, dist = free_ports(3)
    config = NodeConfig(
        name=name,
        data_dir=data_dir.resolve(),
        amqp_port=amqp_port or amqp,
        management_port=management_port or management,
        dist_port=dist_port or dist,
    )
    rabbit = RabbitNode(config)
    try:
        rabbit.start(timeout=timeout)
    except NodeError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"node:       {rabbit.nodename} (pid {rabbit.pid()})")
    click.echo(f"AMQP:       {rabbit.amqp_url}")
    click.echo(f"management: {rabbit.management_url}")


@node.command()
@_data_dir
def stop(data_dir: Path) -> None:
    """Stop the node recorded in DATA_DIR."""
    rabbit = _load(data_dir)
    try:
        rabbit.stop()
    except NodeError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"stopped {rabbit.nodename}")


@node.command()
@_data_dir
def status(data_dir: Path) -> None:
    """Say whether the node in DATA_DIR runs; exit status 3 if it does not."""
    rabbit = _load(data_dir)
    pid = rabbit.pid()
    if pid is None:
        click.echo(f"{rabbit.nodename}: not running")
        raise SystemExit(3)
    click.echo(f"{rabbit.nodename}: running (pid {pid})")
    click.echo(f"AMQP:       {rabbit.amqp_url}")
    click.echo(f"management: {rabbit.management_url}")


def _load(data_dir: Path) -> RabbitNode:
    try:
        return RabbitNode.from_state(data_dir)
    except NodeError as e:
        raise click.ClickException(str(e)) from e


if __name__ == "__main__":
    node(prog_name="rabbitmq-node")
