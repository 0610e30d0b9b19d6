"""``infoshare log serve`` and ``infoshare audit serve``: the log and the auditors' pages.

``log serve`` runs beside the router on the broker host and reads the log's
database read-only (opened by the composition root, handed in as a
``LogOpener``); tokens are checked with the registry. ``audit serve`` serves
an export on this machine to the auditor who has it, with a token it prints.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from audit.audit_cli import (
    _log_key,
    _open_log,
    _registry_key,
    _run,
    log_key_option,
)
from audit.log_index import LogIndex
from audit.log_sources import ExportLog
from audit.progress import count_bar
from audit.serving import serve
from audit.web.auth import LocalToken, RegistryTokens
from audit.web.building import build
from audit.web.site import LogSite
from registry.client import RegistryClient

HOME_ENV = "INFOSHARE_HOME"


def _home(value: Path | None) -> Path | None:
    if value is not None:
        return value
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else None


def _default(home: Path | None, name: str) -> Path | None:
    if home is None:
        return None
    p = home / name
    return p if p.exists() else None


def _serve_options(f: click.decorators.FC) -> click.decorators.FC:
    for option in reversed([
        click.option("--host", default="127.0.0.1", show_default=True),
        click.option("--port", default=8090, show_default=True, type=click.IntRange(0, 65535),
                     help="0 picks a free port (printed)."),
        click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64)),
        click.option("--certfile", type=click.Path(path_type=Path, dir_okay=False,
                                                   exists=True), default=None,
                     help="Serve HTTPS with this certificate (PEM, with its chain)."),
        click.option("--keyfile", type=click.Path(path_type=Path, dir_okay=False,
                                                  exists=True), default=None,
                     help="The certificate's private key (PEM)."),
    ]):
        f = option(f)
    return f


def _check_tls(certfile: Path | None, keyfile: Path | None) -> None:
    if (certfile is None) != (keyfile is None):
        raise click.UsageError("give --certfile and --keyfile together")


def _indexing(site: LogSite, *, force: bool = False) -> None:
    with count_bar("index and verify") as bar:
        _run(lambda: build(site, bar, force=force))
    state = site.index.state()
    if state.ok:
        click.echo(f"verified {state.checkpoint_size} entries against the newest checkpoint "
                   f"with the log key {state.key.split('+')[0]}", err=True)
    else:
        click.echo(f"warning: the log does not verify: at {state.failure_where}: "
                   f"{state.failure}", err=True)


@click.group("log")
def log_group() -> None:
    """Serve the transfer log read-only (C2SP tlog-tiles, proofs, exports, auditors' pages)."""


@log_group.command("serve")
@click.option("--home", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The broker host's directory (default $INFOSHARE_HOME): the log, its key "
              "and the registry key are found there unless given.")
@click.option("--log", "log_url", default=None,
              help="The transfer log's database URL or SQLite file (default "
              "HOME/transfer-log.db).")
@log_key_option
@click.option("--registry", "registry_url", required=True,
              help="The registry's base URL: tokens are checked there, and directories "
              "fetched from it with the reader's token.")
@click.option("--registry-key", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The registry's public key file, pinned (default HOME/registry-key.pub).")
@click.option("--index", "index_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="The server's index file (default HOME/log-index.sqlite), "
              "kept across restarts: a start verifies only the entries added since.")
@click.option("--reindex", is_flag=True,
              help="Read and verify the whole log again from seq 0 at start.")
@click.option("--token-ttl", default=30.0, show_default=True, type=click.FloatRange(1, 3600),
              help="Seconds a token's check with the registry is kept.")
@_serve_options
def log_serve(home: Path | None, log_url: str | None, log_key: str | None, registry_url: str,
              registry_key: Path | None, index_path: Path | None, reindex: bool,
              token_ttl: float, host: str, port: int, threads: int, certfile: Path | None,
              keyfile: Path | None) -> None:
    """Serve the transfer log read-only to auditors and tlog clients.

    Every entry is verified against the pinned log key before it is served.
    """
    _check_tls(certfile, keyfile)
    home = _home(home)
    log_url = log_url or (str(home / "transfer-log.db") if home is not None else None)
    if log_url is None:
        raise click.UsageError("give --log (or --home, or set INFOSHARE_HOME)")
    key_text = log_key or (str(p) if (p := _default(home, "log-key.txt")) else None)
    if key_text is None:
        raise click.UsageError("give --log-key: the log's verifier key (or HOME/log-key.txt)")
    verifier = _log_key(key_text)
    assert verifier is not None
    registry_key = registry_key or _default(home, "registry-key.pub")
    if registry_key is None:
        raise click.UsageError("give --registry-key (or HOME/registry-key.pub)")
    pinned = _registry_key(registry_key)
    if index_path is None:
        if home is None:
            raise click.UsageError("give --index FILE (or --home)")
        index_path = home / "log-index.sqlite"
    log = _open_log(log_url, None, "")

    def fetch(version: int, reader: object) -> bytes:
        token = getattr(reader, "token", "")
        return RegistryClient(registry_url, token, pinned).signed_directory(version)

    site = LogSite(index=LogIndex(index_path, verifier),
                   auth=RegistryTokens(registry_url, ttl=token_ttl), live=log,
                   registry_key=pinned, fetch_directory=fetch)
    try:
        _indexing(site, force=reindex)
        serve(site, host=host, port=port, threads=threads, certfile=certfile, keyfile=keyfile)
    finally:
        log.close()


@click.command("serve")
@click.argument("export_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@log_key_option
@click.option("--registry-key", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The registry's public key you trust (default: the export's own).")
@click.option("--index", "index_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Where to keep the index (default: beside the export, "
              "EXPORT.index.sqlite); reused while the export is unchanged.")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Sign in with the token in this file instead of a random one.")
@_serve_options
def audit_serve(export_dir: Path, log_key: str | None, registry_key: Path | None,
                index_path: Path | None, token_file: Path | None, host: str, port: int,
                threads: int, certfile: Path | None, keyfile: Path | None) -> None:
    """Serve the auditors' pages over an export on this machine.

    Prints the address and a one-off token to sign in with.
    """
    _check_tls(certfile, keyfile)
    if log_key is None:
        raise click.UsageError("give --log-key: the log's verifier key you trust")
    verifier = _log_key(log_key)
    assert verifier is not None
    export = _run(lambda: ExportLog(export_dir))
    pinned = None if registry_key is None else _registry_key(registry_key)
    if pinned is None:
        click.echo("warning: directories checked against the export's own registry key; "
                   "give the key you trust with --registry-key", err=True)
    secret = None
    if token_file is not None:
        secret = _run(lambda: token_file.read_text(encoding="utf-8").strip())
    token = LocalToken(secret)
    index_path = index_path or export_dir.resolve().with_name(export_dir.resolve().name
                                                              + ".index.sqlite")
    site = LogSite(index=LogIndex(index_path, verifier), auth=token, export=export,
                   registry_key=pinned)
    _indexing(site)

    def announce(url: str) -> None:
        if token_file is None:
            click.echo(f"sign in with the token {token.secret}", err=True)
        click.echo(f"open {url}/sign-in", err=True)

    serve(site, host=host, port=port, threads=threads, certfile=certfile, keyfile=keyfile,
          announce=announce)
