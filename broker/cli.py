"""The ``infoshare`` command: one group, each part's commands attached to it.

Errors a user can cause end as a message and a non-zero exit status, never a
traceback: every part raises its own exception tree, and this adapter maps
them to click's exit codes.
"""

from __future__ import annotations

import logging
import sys

import click

from broker.audit_cli import audit
from broker.broker_cli import broker
from broker.client_cli import notices, receive, send
from broker.demo import demo
from broker.envelope_cli import envelope
from broker.node_cli import node
from keys.cli import keys
from protocols.cli import protocol
from registry.cli import registry


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """infoshare: safeguarding information sharing between agencies."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # pika is chatty at INFO and says nothing an operator needs below WARNING.
    logging.getLogger("pika").setLevel(max(level, logging.WARNING))


for command in (keys, protocol, registry, broker, envelope, send, receive, notices, audit, node,
                demo):
    main.add_command(command)


if __name__ == "__main__":
    main()
