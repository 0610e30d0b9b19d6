"""The ``infoshare`` command: one group, each part's commands attached to it.

Errors a user can cause end as one line on stderr (``error: ...``) and an
exit status, never a traceback: every part raises its own exception tree,
and this adapter maps them to exit codes. Anything unexpected is one line
too, unless ``-v`` asks for the traceback.

Exit status: 0 done, 1 error, 2 usage, 3 refused by policy (a reason code).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import click

from agency.client_cli import notices, receive, send
from agency.errors import AgencyError
from agency.gateway.cli import agency
from audit.audit_cli import LogOpener, audit
from audit.errors import AuditError
from audit.serve_cli import audit_serve, log_group
from broker.broker_cli import broker
from broker.errors import BrokerError
from broker.node import NodeError
from broker.node_cli import node
from broker.transfer_log import TransferLog
from infoshare.bundle_cli import bundle
from infoshare.demo import demo
from infoshare.envelope_cli import envelope
from keys import KeysError, NoteSigner
from keys.cli import keys
from protocols.cli import protocol
from protocols.errors import ProtocolsError
from registry.cli import registry
from registry.errors import RegistryError

#: The exit status of each outcome, the same for every command.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3

#: Every part's exception tree: what a user can cause, reported in one line.
PROJECT_ERRORS: tuple[type[Exception], ...] = (
    AgencyError, AuditError, BrokerError, KeysError, NodeError, ProtocolsError,
    RegistryError)


def _open_transfer_log(url: str, signer: NoteSigner | None, origin: str) -> TransferLog:
    return TransferLog.open(url, signer=signer, origin=origin)


class _Main(click.Group):
    """The root group: one line per error, distinct exit codes, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except PROJECT_ERRORS as e:
            raise click.ClickException(str(e) or type(e).__name__) from e
        except OSError as e:
            what = e.filename or "I/O"
            raise click.ClickException(f"{what}: {e.strerror or type(e).__name__}") from e
        except Exception as e:
            if ctx.meta.get("infoshare.verbose"):
                raise
            raise click.ClickException(f"unexpected {type(e).__name__}; run with -v to see "
                                       "where") from e

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False,
                                  **extra)
        except click.UsageError as e:
            e.show()
            sys.exit(EXIT_USAGE)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("error: interrupted", err=True)
            sys.exit(EXIT_ERROR)
        sys.exit(result if isinstance(result, int) else EXIT_OK)


@click.group(cls=_Main)
@click.version_option(package_name="infoshare", message="infoshare %(version)s")
@click.option("-v", "--verbose", count=True,
              help="More log output (-v info, -vv debug) and tracebacks of unexpected errors.")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """infoshare: safeguarding information sharing between agencies.

    Exit status: 0 done, 1 error, 2 usage, 3 refused by policy.
    """
    # The audit reads a log database only through what is handed in here.
    ctx.obj = LogOpener(open=_open_transfer_log, errors=(BrokerError,))
    ctx.meta["infoshare.verbose"] = verbose > 0
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # pika logs every failed connection attempt at ERROR, with tracebacks; the
    # commands say what went wrong in one line, so pika speaks only when asked.
    logging.getLogger("pika").setLevel(
        logging.CRITICAL + 1 if verbose == 0 else logging.WARNING if verbose == 1
        else logging.DEBUG)


broker.add_command(bundle)
for command in (agency, keys, protocol, registry, broker, envelope, send, receive, notices,
                audit, node, demo, log_group):
    main.add_command(command)
audit.add_command(audit_serve)


if __name__ == "__main__":
    main()
