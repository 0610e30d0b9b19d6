"""The ``infoshare`` command: one group, each part's commands attached to it.

Errors a user can cause end as a message and a non-zero exit status, never a
traceback: every part raises its own exception tree, and this adapter maps
them to click's exit codes.
"""

from __future__ import annotations

import logging
import sys

import click

from agency.client_cli import notices, receive, send
from agency.gateway.cli import agency
from audit.audit_cli import LogOpener, audit
from audit.serve_cli import audit_serve, log_group
from broker.broker_cli import broker
from broker.errors import BrokerError
from broker.node_cli import node
from broker.transfer_log import TransferLog
from infoshare.bundle_cli import bundle
from infoshare.demo import demo
from infoshare.envelope_cli import envelope
from keys import NoteSigner
from keys.cli import keys
from protocols.cli import protocol
from registry.cli import registry


def _open_transfer_log(url: str, signer: NoteSigner | None, origin: str) -> TransferLog:
    return TransferLog.open(url, signer=signer, origin=origin)


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """infoshare: safeguarding information sharing between agencies."""
    # The audit reads a log database only through what is handed in here.
    ctx.obj = LogOpener(open=_open_transfer_log, errors=(BrokerError,))
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # pika is chatty at INFO and says nothing an operator needs below WARNING.
    logging.getLogger("pika").setLevel(max(level, logging.WARNING))


broker.add_command(bundle)
for command in (agency, keys, protocol, registry, broker, envelope, send, receive, notices,
                audit, node, demo, log_group):
    main.add_command(command)
audit.add_command(audit_serve)


if __name__ == "__main__":
    main()
