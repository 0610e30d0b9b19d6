"""``infoshare audit``: export, verify, replay, report, prove and check-proof.

An adapter only: every command calls :mod:`audit` and turns its
results and errors into output and an exit status. Failures end as one
clear message (exit 1), never a traceback. Progress goes to stderr, results
to stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

from audit import (
    AuditError,
    LogSource,
    ReportFilters,
    check_proof,
    export,
    load_checkpoint_notes,
    parse_log_key,
    prove,
    replay,
    report,
    verify,
)
from keys import KeysError, NoteSigner, NoteVerifier, parse_public_key_text, read_private_key
from protocols.errors import ProtocolsError
from registry.client import RegistryClient
from registry.errors import RegistryError

DEFAULT_ORIGIN = "wy-iisp.example/transfer-log"
_ERRORS: tuple[type[Exception], ...] = (
    AuditError, KeysError, ProtocolsError, RegistryError, OSError)

T = TypeVar("T")


class ClosableLog(LogSource, Protocol):
    def close(self) -> None: ...


@dataclass(frozen=True)
class LogOpener:
    """How to open a transfer log database, handed in by the composition root.

    The audit never imports the broker: ``infoshare`` puts one of these in the
    click context, built on the broker's storage.
    """

    open: Callable[[str, NoteSigner | None, str], ClosableLog]
    errors: tuple[type[Exception], ...] = ()


def _open_log(url: str, signer: NoteSigner | None, origin: str) -> ClosableLog:
    opener = click.get_current_context().find_object(LogOpener)
    if opener is None:
        raise click.UsageError("reading a log database needs the infoshare command; "
                               "give an export directory instead")
    try:
        return opener.open(url, signer, origin)
    except opener.errors as e:
        raise click.ClickException(str(e) or type(e).__name__) from e


def _run(action: Callable[[], T]) -> T:
    """Call ``action``; the project's errors become a message and exit status 1.

    Errors of the log storage the composition root handed in count too.
    """
    ctx = click.get_current_context(silent=True)
    opener = ctx.find_object(LogOpener) if ctx is not None else None
    errors: tuple[type[Exception], ...] = _ERRORS + (opener.errors if opener else ())
    try:
        return action()
    except errors as e:
        raise click.ClickException(str(e) or type(e).__name__) from e


def _log_key(value: str | None) -> NoteVerifier | None:
    return None if value is None else _run(lambda: parse_log_key(value))


def _registry_key(path: Path) -> bytes:
    try:
        return parse_public_key_text(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError, KeysError) as e:
        raise click.ClickException(f"{path}: not a readable public key file") from e


def _progress(label: str) -> Callable[[int, int, int], None]:
    def report_progress(entries: int, done: int, total: int) -> None:
        share = f" ({100 * done // total}%)" if total else ""
        click.echo(f"{label}: {entries:,} entries{share}", err=True)

    return report_progress


def _echo_warnings(warnings: tuple[str, ...]) -> None:
    for w in warnings:
        click.echo(f"warning: {w}", err=True)


log_key_option = click.option(
    "--log-key", "log_key", default=None, metavar="KEY",
    help="The log's verifier key you trust (name+hash+key), or a file holding it.")


@click.group()
def audit() -> None:
    """Export the transfer log, verify and replay an export, report, prove inclusion."""


@audit.command("export")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--log", "log_url", required=True, help="Transfer log database URL or file.")
@click.option("--registry", "registry_url", required=True, help="Registry base URL.")
@click.option("--token", envvar="INFOSHARE_REGISTRY_TOKEN", required=True,
              help="Registry token with role auditor (or $INFOSHARE_REGISTRY_TOKEN).")
@click.option("--registry-key", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="The registry's public key file (pinned).")
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The broker's signing key, to sign a checkpoint covering every entry "
              "(passphrase from INFOSHARE_PASSPHRASE).")
@click.option("--origin", default=DEFAULT_ORIGIN, show_default=True,
              help="The log's name in its checkpoints (with --key-file).")
@log_key_option
def export_command(out_dir: Path, log_url: str, registry_url: str, token: str,
                   registry_key: Path, key_file: Path | None, origin: str,
                   log_key: str | None) -> None:
    """Write an export of the log to OUT_DIR (wire spec 6.4).

    With --key-file a fresh checkpoint is signed so the export holds every
    entry; with only --log-key it holds the entries the newest checkpoint
    covers. The registry directories the entries name are fetched with the
    token and verified against the pinned registry key.
    """
    if (key_file is None) == (log_key is None):
        raise click.UsageError("give either --key-file (to sign) or --log-key (to read only)")
    pinned = _registry_key(registry_key)
    signer: NoteSigner | None = None
    if key_file is not None:
        passphrase = os.environ.get("INFOSHARE_PASSPHRASE", "").encode("utf-8")
        pair = _run(lambda: read_private_key(key_file, passphrase).signing_pair())
        signer = NoteSigner(origin, pair)
    verifier = _log_key(log_key)
    client = RegistryClient(registry_url, token, pinned)
    log = _open_log(log_url, signer, origin)
    try:
        summary = _run(lambda: export(log, out_dir, directories=client.signed_directory,
                                      registry_key=pinned, log_key=verifier))
    finally:
        log.close()
    versions = ", ".join(str(v) for v in summary.registry_versions) or "none"
    click.echo(f"exported {summary.size} entries and {summary.checkpoints} checkpoints to "
               f"{summary.path} (registry versions {versions})")


@audit.command("verify")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@log_key_option
@click.option("--checkpoint", "checkpoints", multiple=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A checkpoint you obtained earlier (a note, or {\"note\"} lines); the "
              "export must contain its tree. Repeatable.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def verify_command(directory: Path, log_key: str | None, checkpoints: tuple[Path, ...],
                   quiet: bool) -> None:
    """Verify an export: tree, checkpoints, seq and evidence. Exit 1 on the first problem."""
    pinned = _log_key(log_key)
    held: list[str] = []
    for path in checkpoints:
        held += _run(partial(load_checkpoint_notes, path))
    result = _run(lambda: verify(directory, None if quiet else _progress("verify"),
                                 log_key=pinned, held=held))
    _echo_warnings(result.warnings)
    if not result.ok:
        raise click.ClickException(result.summary())
    click.echo(result.summary())


@audit.command("replay")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--registry-key", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The registry's public key you trust (default: the export's own).")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def replay_command(directory: Path, registry_key: Path | None, quiet: bool) -> None:
    """Re-run every decision with the policy; exit 1 if any differs from the log."""
    pinned = None if registry_key is None else _registry_key(registry_key)
    if pinned is None:
        click.echo("warning: directories checked against the export's own registry key; "
                   "give the key you trust with --registry-key", err=True)
    mismatches = _run(lambda: replay(directory, registry_key=pinned,
                                     progress=None if quiet else _progress("replay")))
    for m in mismatches:
        click.echo(str(m))
    if mismatches:
        raise click.ClickException(f"{len(mismatches)} decisions differ from a re-run of the "
                                   "policy")
    click.echo("ok: every decision re-runs to the same result")


def _date(_ctx: Any, _param: Any, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as e:
        raise click.BadParameter("a date is YYYY-MM-DD") from e


@audit.command("report")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--from", "date_from", callback=_date, help="First day (YYYY-MM-DD).")
@click.option("--to", "date_to", callback=_date, help="Last day (YYYY-MM-DD), inclusive.")
@click.option("--organisation", help="Entries where this organisation sent or received.")
@click.option("--unit", help="Entries where this unit (org/unit) sent or received.")
@click.option("--purpose", help="Only this purpose.")
@click.option("--decision", type=click.Choice(["routed", "refused"]))
@click.option("--ground", help="Only shares on this non-consent ground.")
@click.option("--publisher", help="Only messages this AMQP user (org.unit) published; "
              "a unit's address (org/unit) names its user.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write to this file instead of stdout.")
def report_command(directory: Path, date_from: date | None, date_to: date | None,
                   organisation: str | None, unit: str | None, purpose: str | None,
                   decision: str | None, ground: str | None, publisher: str | None, fmt: str,
                   out: Path | None) -> None:
    """Who shared what with whom, counts by purpose and month, refusals, consent grounds.

    Each row names the AMQP user that published the message, which for a
    refused message may differ from the sender it claims.
    """
    filters = ReportFilters(date_from=date_from, date_to=date_to, organisation=organisation,
                            unit=unit, purpose=purpose, decision=decision, ground=ground,
                            publisher=publisher)
    r = _run(lambda: report(directory, filters))
    text = {"table": r.to_table, "csv": r.to_csv, "json": r.to_json}[fmt]()
    if out is None:
        click.echo(text, nl=False)
    else:
        _run(lambda: out.write_text(text, encoding="utf-8"))
        click.echo(f"{len(r.rows)} rows written to {out}", err=True)


@audit.command("prove")
@click.argument("message_id")
@click.option("--log", "source", required=True,
              help="The transfer log's database URL or file, or an export directory.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@log_key_option
def prove_command(message_id: str, source: str, out: Path, log_key: str | None) -> None:
    """Write a proof that MESSAGE_ID's entries are in the signed log, to check offline."""
    pinned = _log_key(log_key)
    if Path(source).is_dir():
        doc = _run(lambda: prove(Path(source), message_id, log_key=pinned))
    else:
        if pinned is None:
            raise click.UsageError("proving from a log database needs --log-key")
        log = _open_log(source, None, "")
        try:
            doc = _run(lambda: prove(log, message_id, log_key=pinned, now=datetime.now(UTC)))
        finally:
            log.close()
    _run(lambda: out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
                                encoding="utf-8"))
    seqs = ", ".join(str(e["seq"]) for e in doc["entries"])
    click.echo(f"proof of seq {seqs} in the log of size {doc['tree_size']} written to {out}")


@audit.command("check-proof")
@click.argument("proof_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@log_key_option
def check_proof_command(proof_file: Path, log_key: str | None) -> None:
    """Check a proof from `audit prove` offline; exit 1 if it does not hold."""
    result = _run(lambda: check_proof(proof_file, _log_key(log_key)))
    _echo_warnings(result.warnings)
    if not result.ok:
        raise click.ClickException(result.summary())
    click.echo(result.summary())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(audit())
