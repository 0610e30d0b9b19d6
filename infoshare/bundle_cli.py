"""``infoshare broker bundle``: one organisation's bundle, made on the broker host.

The broker host's credentials file holds every unit's AMQP password; the
bundle takes only the passwords of the named organisation's units (users
``org.unit``), with the addresses and pinned keys its tools need
(:mod:`agency.bundle`). This command lives in the composition root because it
reads the broker's files and writes the agency's format.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from pathlib import Path

import click

from agency.bundle import Bundle, write_bundle
from agency.errors import AgencyError
from broker.errors import BrokerError
from broker.host_config import HOME_ENV, PUBLIC_KEY_FILE, load
from broker.topology import Credentials
from keys import KeysError, parse_public_key_text, public_key_text

__all__ = ["bundle", "make_bundle"]


def _key_text(path: Path) -> str:
    return public_key_text(parse_public_key_text(path.read_text(encoding="ascii").strip()))


def node_address(url: str) -> str:
    """A node's address without credentials or vhost: ``scheme://host:port[?query]``."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, "", parts.query, ""))


def make_bundle(home: Path, org: str, *, amqp_nodes: tuple[str, ...] = (),
                ca_file: str | None = None) -> Bundle:
    """The bundle of ``org`` from the broker host's configuration in ``home``.

    Raises:
        BrokerError, KeysError, OSError: the broker host's files cannot be read.
        click.ClickException: the organisation has no unit in the credentials file.
    """
    config = load(home)
    credentials = Credentials(config.credentials_file)
    prefix = f"{org}."
    units = {f"{org}/{user[len(prefix):]}": credentials.password(user)
             for user in credentials.users() if user.startswith(prefix)}
    if not units:
        raise click.ClickException(
            f"no unit of {org} in {config.credentials_file}: is the organisation in the "
            "registry, and has `infoshare broker provision` run since?")
    nodes = tuple(node_address(n) for n in (amqp_nodes or config.amqp_urls))
    return Bundle(org=org, units=units, amqp_nodes=nodes,
                  vhost=config.vhost, registry_url=config.registry_url,
                  registry_key=_key_text(config.registry_key),
                  broker_key=_key_text(config.home / PUBLIC_KEY_FILE), ca_file=ca_file)


@click.command("bundle")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar=HOME_ENV,
              required=True, show_envvar=True, help="The broker host's directory.")
@click.option("--org", required=True, metavar="ORG", help="The organisation, e.g. leeds-cc.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The bundle file to write (mode 0600).")
@click.option("--amqp-node", "amqp_nodes", multiple=True, metavar="URL",
              help="A RabbitMQ node's address, amqp://host:port or amqps://host:port "
                   "(repeat for each node; default every node of the broker's configuration).")
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="CA certificate for TLS to RabbitMQ; copied beside the bundle "
              "(default the broker's own --tls-ca).")
def bundle(home: Path, org: str, out: Path, amqp_nodes: tuple[str, ...],
           ca_file: Path | None) -> None:
    """Write the bundle of one organisation: its units' AMQP credentials and nothing else."""
    ca_name = None
    try:
        ca_file = ca_file or load(home).tls_ca
        if ca_file is not None:
            out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            ca_name = f"{out.stem}-ca.pem"
            if (out.parent / ca_name).resolve() != ca_file.resolve():
                shutil.copyfile(ca_file, out.parent / ca_name)
        made = make_bundle(home, org, amqp_nodes=amqp_nodes, ca_file=ca_name)
        write_bundle(out, made)
    except (AgencyError, BrokerError, KeysError) as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"{e.filename or 'I/O'}: {e.strerror}") from e
    click.echo(f"bundle for {org}: {len(made.units)} units -> {out} (mode "
               f"{os.stat(out).st_mode & 0o777:04o})")
