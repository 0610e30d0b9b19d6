"""The ``keys`` command group: generate the key files of a unit, a manager or the broker.

``keys generate --unit ORG/UNIT --out DIR`` writes the unit's signing and
encryption key pairs as ``DIR/<org>.<unit>.{signing,encryption}.{key,pub}``;
``keys generate --manager ID --org ORG --out DIR`` a manager's signing pair as
``DIR/<org>.manager.<id>.signing.{key,pub}`` (ids hold no dots, so the two
never collide); ``keys generate --broker --out DIR`` the broker's notice and
checkpoint key as ``DIR/broker.signing.{key,pub}``.

A ``.key`` file holds the private key sealed with the passphrase from
``INFOSHARE_PASSPHRASE`` (or a hidden prompt), mode 0600. A ``.pub`` file is a
public key file (:mod:`keys._public`): whose key it is, for what use, and a
proof signed by the holder's signing key, which the registry checks when the
key is registered. Nothing is written when any of the files exists already,
and nothing when the passphrase is too weak.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import click

from keys._files import KeyKind, check_passphrase, write_private_key
from keys._public import (
    NAME_MAX,
    KeyHolder,
    PublicKeyFile,
    is_name,
    new_keys,
    write_public_key_file,
)
from keys.errors import KeysError

PASSPHRASE_ENV = "INFOSHARE_PASSPHRASE"


@dataclass(frozen=True)
class _Planned:
    kind: KeyKind
    private: bytes
    public_file: PublicKeyFile
    key_path: Path
    pub_path: Path


def _name(value: str, what: str) -> str:
    if not is_name(value):
        raise click.BadParameter(
            f"{what} must be lowercase letters and digits with single hyphens, "
            f"at most {NAME_MAX} characters")
    return value


def _passphrase() -> bytes:
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env is not None:
        return from_env.encode("utf-8")
    entered: str = click.prompt("Passphrase for the private keys", hide_input=True,
                                confirmation_prompt=True)
    return entered.encode("utf-8")


def _plan(out: Path, stem: str, holder: KeyHolder, owner: str,
          manager: str | None) -> list[_Planned]:
    made = new_keys(holder, owner, manager)
    privates = {"signing": made.signing.seed}
    if made.encryption is not None:
        privates["encryption"] = made.encryption.secret
    return [_Planned(f.use, privates[f.use], f, out / f"{stem}.{f.use}.key",
                     out / f"{stem}.{f.use}.pub") for f in made.files.values()]


@click.group("keys")
def keys() -> None:
    """Key pairs for units, managers and the broker."""


@keys.command("generate")
@click.option("--unit", "unit", metavar="ORG/UNIT",
              help="A unit's address, e.g. leeds-cc/front-door.")
@click.option("--manager", "manager", metavar="ID", help="A manager's id (a code, not a name).")
@click.option("--org", "org", metavar="ORG", help="The manager's organisation.")
@click.option("--broker", "broker", is_flag=True,
              help="The broker's key for signing notices and checkpoints.")
@click.option("--out", "out", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Directory for the key files.")
@click.option("--json", "as_json", is_flag=True, help="Print the key ids and files as JSON.")
def generate(unit: str | None, manager: str | None, org: str | None, broker: bool, out: Path,
             as_json: bool) -> None:
    """Generate key pairs and their public key files for the registry.

    With --unit: a signing and an encryption pair. With --manager and --org, or
    with --broker: a signing pair only. Refuses to overwrite any existing file.
    """
    chosen = sum((unit is not None, manager is not None or org is not None, broker))
    if chosen != 1:
        raise click.UsageError("give one of --unit ORG/UNIT, --manager ID with --org ORG, "
                               "or --broker")
    holder: KeyHolder
    if unit is not None:
        org_id, sep, unit_id = unit.partition("/")
        if not sep:
            raise click.BadParameter("an address is ORG/UNIT", param_hint="--unit")
        owner = f"{_name(org_id, 'ORG')}/{_name(unit_id, 'UNIT')}"
        holder, manager_id, stem = "unit", None, f"{org_id}.{unit_id}"
    elif broker:
        holder, owner, manager_id, stem = "broker", "broker", None, "broker"
    else:
        if manager is None or org is None:
            raise click.UsageError("a manager's keys need --manager ID and --org ORG")
        holder, owner, manager_id = "manager", _name(org, "ORG"), _name(manager, "the manager id")
        stem = f"{org}.manager.{manager}"

    planned = _plan(out, stem, holder, owner, manager_id)
    existing = [p for x in planned for p in (x.key_path, x.pub_path) if p.exists()]
    if existing:
        raise click.ClickException(
            "refusing to overwrite: " + ", ".join(str(p) for p in existing))
    passphrase = _passphrase()
    try:
        if not passphrase:
            raise click.ClickException("a passphrase is required to seal private keys")
        check_passphrase(passphrase)
        out.mkdir(parents=True, exist_ok=True)
        for x in planned:
            write_private_key(x.key_path, kind=x.kind, owner=owner, private=x.private,
                              public=x.public_file.public, passphrase=passphrase)
            write_public_key_file(x.pub_path, x.public_file)
    except (KeysError, OSError) as e:
        raise click.ClickException(str(e)) from e

    if as_json:
        click.echo(json.dumps({"holder": holder, "owner": owner, "manager": manager_id,
                               "keys": [{"use": x.kind, "key_id": x.public_file.key_id,
                                         "public_file": str(x.pub_path),
                                         "private_file": str(x.key_path)} for x in planned]}))
        return
    click.echo(f"keys for {planned[0].public_file.describe().split(' key of ', 1)[1]}:")
    for x in planned:
        click.echo(f"  {x.kind:<10} key id {x.public_file.key_id}  public file {x.pub_path}")
    click.echo(f"private keys: {', '.join(str(x.key_path) for x in planned)} (mode 0600)")
    click.echo("register the public files with: infoshare registry register-keys")
