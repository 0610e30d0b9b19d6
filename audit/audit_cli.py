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
from audit.directories import Directories, Known
from audit.exporting import ExportSummary
from audit.fetching import fetch_export
from audit.log_sources import ExportLog
from audit.progress import byte_bar, count_bar
from keys import KeysError, NoteSigner, NoteVerifier, parse_public_key_text, read_private_key
from protocols.errors import ProtocolsError
from registry.client import RegistryClient
from registry.errors import RegistryError

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


def _token(token_file: Path | None) -> str:
    """The auditor's registry token: from ``--token-file``, else ``$INFOSHARE_TOKEN``."""
    if token_file is not None:
        token = _run(lambda: token_file.read_text(encoding="utf-8").strip())
    else:
        token = os.environ.get("INFOSHARE_TOKEN", "").strip()
    if not token:
        raise click.UsageError("give --token-file FILE or set INFOSHARE_TOKEN to an auditor's "
                               "registry token")
    return token


token_file_option = click.option(
    "--token-file", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
    help="A file holding a registry token with role auditor (else $INFOSHARE_TOKEN).")
quiet_option = click.option("--quiet", is_flag=True,
                            help="No progress bar (there is none unless stderr is a terminal).")


def _echo_warnings(warnings: tuple[str, ...] | list[str]) -> None:
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
@click.option("--from", "served", default=None, metavar="URL",
              help="A served log (infoshare log serve): fetch its export with the token.")
@click.option("--log", "log_url", default=None,
              help="Or the transfer log's database URL or file, on the broker host.")
@click.option("--registry", "registry_url", default=None,
              help="The registry's base URL (with --log): directories are fetched there.")
@token_file_option
@click.option("--registry-key", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="The registry's public key file (pinned).")
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="With --log: the broker's signing key, to sign a checkpoint covering "
              "every entry (passphrase from INFOSHARE_PASSPHRASE).")
@click.option("--origin", default=None, metavar="NAME",
              help="With --key-file: the log's name in its checkpoints, as the router signs "
              "them (`infoshare broker config` shows it as origin).")
@log_key_option
@click.option("--without-evidence", is_flag=True,
              help="Leave out evidence.jsonl: the export verifies in full at about 40 % of "
              "the size, but cannot be replayed.")
@quiet_option
def export_command(out_dir: Path, served: str | None, log_url: str | None,
                   registry_url: str | None, token_file: Path | None, registry_key: Path,
                   key_file: Path | None, origin: str | None, log_key: str | None,
                   without_evidence: bool, quiet: bool) -> None:
    """Write an export of the log to OUT_DIR (wire spec 6.4).

    From a served log (--from URL, with --log-key): no database and no private key
    are needed; the export is checked against both pinned keys before it is kept.
    From the database (--log, on the broker host): with --key-file a fresh checkpoint
    is signed so the export holds every entry; with only --log-key it holds the
    entries the newest checkpoint covers.
    """
    if (served is None) == (log_url is None):
        raise click.UsageError("give either --from URL (a served log) or --log (its database)")
    pinned = _registry_key(registry_key)
    token = _token(token_file)
    if served is not None:
        trusted = _log_key(log_key)
        if trusted is None or key_file is not None:
            raise click.UsageError("--from needs --log-key (the log's verifier key you trust) "
                                   "and no --key-file")
        with count_bar("fetch", "B", scale=True, enabled=not quiet) as bar:
            summary = _run(lambda: fetch_export(served, token, out_dir, log_key=trusted,
                                                registry_key=pinned, progress=bar,
                                                evidence=not without_evidence))
        _echo_export(summary)
        return
    if registry_url is None:
        raise click.UsageError("--log needs --registry (where the directories come from)")
    if (key_file is None) == (log_key is None):
        raise click.UsageError("give either --key-file (to sign) or --log-key (to read only)")
    signer: NoteSigner | None = None
    verifier = _log_key(log_key)
    if verifier is not None:
        origin = verifier.name
    if key_file is not None:
        if origin is None:
            raise click.UsageError("--key-file needs --origin, the log's name as the router "
                                   "signs it (`infoshare broker config` shows it as origin)")
        passphrase = os.environ.get("INFOSHARE_PASSPHRASE", "").encode("utf-8")
        pair = _run(lambda: read_private_key(key_file, passphrase).signing_pair())
        signer = NoteSigner(origin, pair)
    client = RegistryClient(registry_url, token, pinned)
    assert log_url is not None and origin is not None
    log = _open_log(log_url, signer, origin)
    try:
        with count_bar("export", enabled=not quiet) as bar:
            summary = _run(lambda: export(log, out_dir, directories=client.signed_directory,
                                          registry_key=pinned, log_key=verifier, progress=bar,
                                          evidence=not without_evidence))
    finally:
        log.close()
    _echo_export(summary)


def _echo_export(summary: ExportSummary) -> None:
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
@quiet_option
def verify_command(directory: Path, log_key: str | None, checkpoints: tuple[Path, ...],
                   quiet: bool) -> None:
    """Verify an export: tree, checkpoints, seq and evidence. Exit 1 on the first problem."""
    pinned = _log_key(log_key)
    held: list[str] = []
    for path in checkpoints:
        held += _run(partial(load_checkpoint_notes, path))
    with byte_bar("verify", enabled=not quiet) as bar:
        result = _run(lambda: verify(directory, bar, log_key=pinned, held=held))
    _echo_warnings(result.warnings)
    if not result.ok:
        raise click.ClickException(result.summary())
    click.echo(result.summary())


@audit.command("replay")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--registry-key", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The registry's public key you trust (default: the export's own).")
@quiet_option
def replay_command(directory: Path, registry_key: Path | None, quiet: bool) -> None:
    """Re-run every decision with the policy; exit 1 if any differs from the log."""
    pinned = None if registry_key is None else _registry_key(registry_key)
    if pinned is None:
        click.echo("warning: directories checked against the export's own registry key; "
                   "give the key you trust with --registry-key", err=True)
    with byte_bar("replay", enabled=not quiet) as bar:
        mismatches = _run(lambda: replay(directory, registry_key=pinned, progress=bar))
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
@click.option("--kind", type=click.Choice(["referral", "request", "response", "declined",
                                           "receipt"]))
@click.option("--reason", help="Only refusals with this reason code.")
@click.option("--consent", type=click.Choice(["given", "not_sought", "refused"]))
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--summary", is_flag=True, help="The counts only, no rows (for a large log).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write to this file instead of stdout.")
@quiet_option
def report_command(directory: Path, date_from: date | None, date_to: date | None,
                   organisation: str | None, unit: str | None, purpose: str | None,
                   decision: str | None, ground: str | None, publisher: str | None,
                   kind: str | None, reason: str | None, consent: str | None, fmt: str,
                   summary: bool, out: Path | None, quiet: bool) -> None:
    """Who shared what with whom, counts by purpose and month, refusals, consent grounds.

    Each row names the AMQP user that published the message, which for a
    refused message may differ from the sender it claims.
    """
    filters = ReportFilters(date_from=date_from, date_to=date_to, organisation=organisation,
                            unit=unit, purpose=purpose, decision=decision, ground=ground,
                            publisher=publisher, kind=kind, reason=reason, consent=consent)
    if summary and fmt == "csv":
        raise click.UsageError("--summary holds no rows: use --format table or json")
    _echo_warnings(_unknown(directory, filters))
    with byte_bar("report", enabled=not quiet) as bar:
        r = _run(lambda: report(directory, filters, progress=bar, rows=not summary))
    if summary:
        text = (r.to_json() if fmt == "json" else "\n".join(r.summary_lines()) + "\n")
    else:
        text = {"table": r.to_table, "csv": r.to_csv, "json": r.to_json}[fmt]()
    if out is None:
        click.echo(text, nl=False)
    else:
        _run(lambda: out.write_text(text, encoding="utf-8"))
        click.echo(f"{r.entries} entries written to {out}", err=True)


def _unknown(directory: Path, f: ReportFilters) -> list[str]:
    """Warnings for filters that name no organisation, unit or purpose of the export's
    registry directories (a misspelling would otherwise just show nothing)."""
    export = ExportLog(directory)
    key = export.registry_key()
    known = Known()
    if key is not None:
        dirs = Directories(export.directory_document, key)
        for p in sorted((directory / "registry").glob("directory-*.json")):
            version = p.stem.removeprefix("directory-")
            d = dirs.get(int(version)) if version.isdigit() else None
            if d is not None and not isinstance(d, str):
                known.add(d)
    return known.warnings(organisation=f.organisation, unit=f.unit, purpose=f.purpose)


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
