"""``infoshare send``, ``infoshare receive`` and ``infoshare notices``: the agency client's CLI.

Connection settings come from the organisation's bundle (``HOME/bundle.json``
or ``--bundle``, :mod:`agency.bundle`), the registry token from
``--token-file``, ``INFOSHARE_TOKEN`` or ``HOME/registry.token``; a unit's
keys from ``KEYS/<org>.<unit>.signing.key`` and ``KEYS/<org>.<unit>.encryption.key`` (plus any older
``<org>.<unit>.encryption.*.key`` kept to open messages sealed before a
rotation), unsealed with the passphrase in ``INFOSHARE_PASSPHRASE``. The
client's state and received records live under ``HOME/agencies/<org>.<unit>/``.

Exit status 0 on success, 3 on a refusal (the reason code is printed), 1 on any
other error (a one-line message); never a traceback. Output holds ids and
codes only: records are written to files, never printed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from agency.bundle import BUNDLE_FILE, read_bundle, read_token
from agency.client import AgencyClient
from agency.errors import AgencyError, LocalRefusal
from keys import (
    EncryptionKeyPair,
    KeyFormatError,
    KeysError,
    SigningKeyPair,
    parse_public_key_text,
    read_private_key,
)
from protocols.amqp import amqp_url_for
from protocols.errors import ProtocolsError
from protocols.model import CONSENT_STATUSES, KINDS, Address, Consent, GroundId, amqp_user
from registry.client import RegistryClient
from registry.errors import RegistryError

__all__ = ["notices", "receive", "send"]

PASSPHRASE_ENV = "INFOSHARE_PASSPHRASE"
_NAME = r"[a-z0-9](?:-?[a-z0-9])*"
_ADDRESS = re.compile(f"{_NAME}/{_NAME}")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


@contextmanager
def _errors() -> Iterator[None]:
    """Every error a user can cause becomes one line and exit status 1."""
    try:
        yield
    except LocalRefusal as e:
        click.echo(f"refused: {e.reason}", err=True)
        raise SystemExit(3) from None  # refused by policy
    except (AgencyError, KeysError, RegistryError, ProtocolsError) as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"{e.filename or 'I/O'}: {e.strerror or type(e).__name__}")


def _address(value: str, option: str) -> Address:
    if len(value) > 81 or not _ADDRESS.fullmatch(value):
        raise click.BadParameter("an address is ORG/UNIT in lowercase letters, digits and "
                                 "single hyphens", param_hint=option)
    return Address(value)


def _passphrase() -> bytes:
    value = os.environ.get(PASSPHRASE_ENV)
    if not value:
        _fail(f"set {PASSPHRASE_ENV} to the passphrase of the private keys")
    return value.encode("utf-8")


def _read_public_key(path: Path) -> bytes:
    """A public key file: base64 of the 32 raw bytes (``keys``' form), or 64 hex digits."""
    text = path.read_text(encoding="ascii").strip()
    try:
        return parse_public_key_text(text)
    except KeyFormatError:
        if _HEX_KEY.fullmatch(text):
            return bytes.fromhex(text)
        raise KeyFormatError(f"{path}: not a public key") from None


def _signing_key(path: Path, passphrase: bytes, owner: str | None) -> SigningKeyPair:
    key = read_private_key(path, passphrase)
    if owner is not None and key.owner and key.owner != owner:
        _fail(f"{path} is a key of {key.owner}, not of {owner}")
    return key.signing_pair()


def _encryption_keys(keys_dir: Path, user: str, unit: str,
                     passphrase: bytes) -> list[EncryptionKeyPair]:
    paths = [keys_dir / f"{user}.encryption.key",
             *sorted(keys_dir.glob(f"{user}.encryption.*.key"))]
    pairs = []
    for path in paths:
        key = read_private_key(path, passphrase)
        if key.owner and key.owner != unit:
            _fail(f"{path} is a key of {key.owner}, not of {unit}")
        pairs.append(key.encryption_pair())
    return pairs


def _agency_dir(home: Path, unit: str) -> Path:
    return home / "agencies" / amqp_user(unit)


def default_home() -> Path:
    """``$INFOSHARE_HOME``, else ``./var``."""
    return Path(os.environ.get("INFOSHARE_HOME") or "var")


def _client(home: Path, unit: Address, keys_dir: Path, bundle_file: Path | None,
            token_file: Path | None) -> AgencyClient:
    bundle = read_bundle(bundle_file or home / BUNDLE_FILE)
    user = amqp_user(unit)
    password = bundle.password(unit)
    passphrase = _passphrase()
    registry = RegistryClient(bundle.registry_url, read_token(token_file, home),
                              bundle.registry_public_key())
    return AgencyClient(
        unit=unit,
        amqp_url=[amqp_url_for(node, user, password, bundle.vhost)
                  for node in bundle.amqp_nodes],
        ca_file=bundle.ca_file,
        signing_key=_signing_key(keys_dir / f"{user}.signing.key", passphrase, unit),
        encryption_keys=_encryption_keys(keys_dir, user, unit, passphrase),
        directory=registry.directory,
        broker_key=bundle.broker_public_key(),
        state_dir=_agency_dir(home, unit) / "state",
    )


def _common(f: Any) -> Any:
    f = click.option("--keys", "keys_dir", required=True, metavar="DIR",
                     type=click.Path(file_okay=False, exists=True, path_type=Path),
                     help="Directory of the unit's key files.")(f)
    f = click.option("--unit", required=True, metavar="ORG/UNIT",
                     help="The unit acting, e.g. leeds-cc/front-door.")(f)
    f = click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="The registry token (default $INFOSHARE_TOKEN, "
                     "else HOME/registry.token).")(f)
    f = click.option("--bundle", "bundle_file", default=None, metavar="FILE",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="The organisation's bundle (default HOME/bundle.json).")(f)
    f = click.option("--home", type=click.Path(file_okay=False, path_type=Path),
                     default=default_home, show_default="$INFOSHARE_HOME or ./var",
                     help="The agency's directory: bundle, state and received records.")(f)
    return f


def _load_record(path: Path | None, kind: str) -> dict[str, object]:
    if path is None:
        if kind == "declined":
            return {}
        _fail(f"--record is required for a {kind}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        _fail(f"{path}: not JSON")  # the parser's message would quote the record
    if not isinstance(doc, dict):
        _fail(f"{path}: a record is a JSON object keyed by data category")
    return doc


def _consent(kind: str, status: str | None, ground: str | None) -> Consent | None:
    if kind in ("declined", "receipt"):
        if status is not None or ground is not None:
            _fail(f"a {kind} carries no consent: leave out --consent and --ground")
        return None
    if status is None:
        _fail(f"--consent is required for a {kind}")
    if status == "given":
        if ground is not None:
            _fail("--ground is only for --consent not_sought or refused")
        return Consent("given", None)
    if ground is None:
        _fail(f"--consent {status} needs --ground (a non-consent ground of the purpose)")
    return Consent(status, GroundId(ground))  # type: ignore[arg-type]


@click.command("send")
@_common
@click.option("--kind", required=True, type=click.Choice(KINDS))
@click.option("--protocol", required=True, metavar="ID")
@click.option("--purpose", required=True, metavar="ID")
@click.option("--to", "recipient", required=True, metavar="ORG/UNIT")
@click.option("--record", "record_file", metavar="FILE.json",
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The record: a JSON object keyed by data category.")
@click.option("--reasons", metavar="TEXT", help="Why this is shared (golden rule 7).")
@click.option("--reasons-file", metavar="FILE",
              type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--consent", "consent_status", type=click.Choice(CONSENT_STATUSES))
@click.option("--ground", metavar="ID", help="The non-consent ground relied on.")
@click.option("--subject-informed/--subject-not-informed", default=None,
              help="Whether the person the record is about has been told.")
@click.option("--in-reply-to", metavar="MESSAGE_ID")
@click.option("--approval", "approvals", multiple=True, metavar="MANAGER_KEY_FILE",
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A manager's private key file to countersign with (repeatable).")
def send(home: Path, bundle_file: Path | None, token_file: Path | None, unit: str,
         keys_dir: Path, kind: str, protocol: str, purpose: str,
         recipient: str, record_file: Path | None, reasons: str | None,
         reasons_file: Path | None, consent_status: str | None, ground: str | None,
         subject_informed: bool | None, in_reply_to: str | None,
         approvals: tuple[Path, ...]) -> None:
    """Send a referral, request, response or declined through the broker.

    The message is checked against the protocol first; what the broker would
    refuse is refused here with the same reason code, and nothing is sent.
    Prints the message id and header hash.
    """
    sender = _address(unit, "--unit")
    to = _address(recipient, "--to")
    if (reasons is None) == (reasons_file is None):
        _fail("give exactly one of --reasons and --reasons-file")
    with _errors():
        text = reasons if reasons is not None else (
            reasons_file.read_text(encoding="utf-8") if reasons_file else "")
        record = _load_record(record_file, kind)
        consent = _consent(kind, consent_status, ground)
        if subject_informed is None:
            if kind not in ("declined", "receipt"):
                _fail("say --subject-informed or --subject-not-informed")
            subject_informed = True
        passphrase = _passphrase()
        managers = [_signing_key(p, passphrase, None) for p in approvals]
        with _client(home, sender, keys_dir, bundle_file, token_file) as client:
            sent = client.send(kind=kind, protocol=protocol, purpose=purpose,  # type: ignore[arg-type]
                               recipient=to, record=record, reasons=text, consent=consent,
                               subject_informed=subject_informed, in_reply_to=in_reply_to,
                               approvals=managers)
    click.echo(f"sent {sent.message_id} header_sha256 {sent.header_sha256}")


@click.command("receive")
@_common
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where records are written (default HOME/agencies/ORG.UNIT/inbox).")
@click.option("--max", "max_messages", type=click.IntRange(min=1), default=None,
              help="Stop after this many deliveries.")
@click.option("--idle", "idle_timeout", type=click.FloatRange(min=0.1), default=2.0,
              show_default=True, help="Stop after this many seconds without a delivery.")
def receive(home: Path, bundle_file: Path | None, token_file: Path | None, unit: str,
            keys_dir: Path, out_dir: Path | None,
            max_messages: int | None, idle_timeout: float) -> None:
    """Take the unit's inbox: verify, open and write records, send receipts, store notices."""
    address = _address(unit, "--unit")
    with _errors(), _client(home, address, keys_dir, bundle_file, token_file) as client:
        target = out_dir or _agency_dir(home, address) / "inbox"
        results = client.receive(target, max_messages=max_messages,
                                 idle_timeout=idle_timeout)
    for r in results:
        line = f"{r.status:<9} {r.message_id} {r.kind or '-'} from {r.sender or '-'}"
        if r.purpose:
            line += f" purpose {r.purpose}"
        if r.reason:
            line += f" reason {r.reason}"
        if r.path:
            line += f" -> {r.path}"
        click.echo(line)
    accepted = sum(r.status == "accepted" for r in results)
    click.echo(f"{accepted} accepted, {len(results) - accepted} not written, into {target}")


@click.command("notices")
@_common
@click.option("--message-id", metavar="ID", help="Only the notices about this message.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where records that arrive meanwhile are written "
                   "(default HOME/agencies/ORG.UNIT/inbox).")
def notices(home: Path, bundle_file: Path | None, token_file: Path | None, unit: str,
            keys_dir: Path, message_id: str | None,
            out_dir: Path | None) -> None:
    """The broker's decisions on what this unit sent (the inbox is drained first)."""
    address = _address(unit, "--unit")
    with _errors(), _client(home, address, keys_dir, bundle_file, token_file) as client:
        found = client.notices(message_id,
                               drain_to=out_dir or _agency_dir(home, address) / "inbox")
    for n in found:
        click.echo(f"seq {n.seq} {n.message_id or '-'} {n.decision}"
                   + (f" {n.reason}" if n.reason else ""))
    if not found:
        click.echo("no notices")
