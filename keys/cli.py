"""The ``keys`` command group: generate a unit's or a manager's key files.

``keys generate --unit ORG/UNIT --out DIR`` writes the unit's signing and
encryption key pairs as ``DIR/<org>.<unit>.{signing,encryption}.{key,pub}``;
``keys generate --manager ID --org ORG --out DIR`` writes a manager's signing
pair as ``DIR/<org>.manager.<id>.signing.{key,pub}`` (ids hold no dots, so the
two never collide). Private keys are sealed with a passphrase taken from
``INFOSHARE_PASSPHRASE`` or a hidden prompt. Nothing is written when any of
the files exists already. What is printed is public: key ids and public keys
for an administrator to register.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import click

from keys._files import KeyKind, write_private_key, write_public_key
from keys._pairs import EncryptionKeyPair, SigningKeyPair, key_id, public_key_text
from keys.errors import KeysError

PASSPHRASE_ENV = "INFOSHARE_PASSPHRASE"
# Wire spec section 1. The same form protocols.loader checks; repeated here
# because keys sits below protocols and imports nothing from it.
_NAME = re.compile(r"[a-z0-9](-?[a-z0-9])*")
_NAME_MAX = 40


@dataclass(frozen=True)
class _Planned:
    kind: KeyKind
    private: bytes
    public: bytes
    key_path: Path
    pub_path: Path


def _name(value: str, what: str) -> str:
    if len(value) > _NAME_MAX or not _NAME.fullmatch(value):
        raise click.BadParameter(
            f"{what} must be lowercase letters and digits with single hyphens, "
            f"at most {_NAME_MAX} characters")
    return value


def _passphrase() -> bytes:
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env is not None:
        return from_env.encode("utf-8")
    entered: str = click.prompt("Passphrase for the private keys", hide_input=True,
                                confirmation_prompt=True)
    return entered.encode("utf-8")


def _plan(out: Path, stem: str, kinds: tuple[KeyKind, ...]) -> list[_Planned]:
    planned = []
    for kind in kinds:
        if kind == "signing":
            s = SigningKeyPair.generate()
            private, public = s.seed, s.public
        else:
            e = EncryptionKeyPair.generate()
            private, public = e.secret, e.public
        planned.append(_Planned(kind, private, public, out / f"{stem}.{kind}.key",
                                out / f"{stem}.{kind}.pub"))
    return planned


@click.group("keys")
def keys() -> None:
    """Key pairs for units and managers."""


@keys.command("generate")
@click.option("--unit", "unit", metavar="ORG/UNIT",
              help="A unit's address, e.g. leeds-cc/front-door.")
@click.option("--manager", "manager", metavar="ID", help="A manager's id (a code, not a name).")
@click.option("--org", "org", metavar="ORG", help="The manager's organisation.")
@click.option("--out", "out", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Directory for the key files.")
def generate(unit: str | None, manager: str | None, org: str | None, out: Path) -> None:
    """Generate key pairs and print their key ids and public keys.

    With --unit: a signing and an encryption pair. With --manager and --org:
    a signing pair only. Refuses to overwrite any existing file.
    """
    kinds: tuple[KeyKind, ...]
    if unit is not None and (manager is not None or org is not None):
        raise click.UsageError("give --unit, or --manager with --org, not both")
    if unit is not None:
        org_id, sep, unit_id = unit.partition("/")
        if not sep:
            raise click.BadParameter("an address is ORG/UNIT", param_hint="--unit")
        owner = f"{_name(org_id, 'ORG')}/{_name(unit_id, 'UNIT')}"
        stem, kinds = f"{org_id}.{unit_id}", ("signing", "encryption")
        registry_owner = f"unit {owner}"
    elif manager is not None and org is not None:
        _name(manager, "the manager id")
        _name(org, "ORG")
        owner = f"{org}/manager/{manager}"
        stem, kinds = f"{org}.manager.{manager}", ("signing",)
        registry_owner = f"manager {manager} of {org}"
    else:
        raise click.UsageError("give --unit ORG/UNIT, or --manager ID with --org ORG")

    planned = _plan(out, stem, kinds)
    existing = [p for x in planned for p in (x.key_path, x.pub_path) if p.exists()]
    if existing:
        raise click.ClickException(
            "refusing to overwrite: " + ", ".join(str(p) for p in existing))
    passphrase = _passphrase()
    if not passphrase:
        raise click.ClickException("a passphrase is required to seal private keys")
    out.mkdir(parents=True, exist_ok=True)
    try:
        for x in planned:
            write_private_key(x.key_path, kind=x.kind, owner=owner, private=x.private,
                              public=x.public, passphrase=passphrase)
            write_public_key(x.pub_path, x.public)
    except (KeysError, OSError) as e:
        raise click.ClickException(str(e)) from e

    click.echo(f"keys for {registry_owner}; register these public keys:")
    for x in planned:
        click.echo(f"  {x.kind:<10} key id {key_id(x.public)}  public {public_key_text(x.public)}")
    click.echo(f"private keys: {', '.join(str(x.key_path) for x in planned)} (mode 0600)")
