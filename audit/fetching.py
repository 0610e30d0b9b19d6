"""``audit export --from URL``: an export fetched from a served log, checked, then kept.

The auditor needs no database and no private key: the log server streams the
export as a tar to an auditor's registry token. Nothing it sends is trusted:
the tar may hold only the files of an export, every registry directory must
verify against the registry key the auditor pinned, and the whole must pass
``verify`` with the log key the auditor pinned, before the directory is put
in place (written beside it, then renamed, so a failure leaves nothing).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Final

from audit.errors import AuditError
from audit.export_dir import FIXED_FILES, REGISTRY, REGISTRY_KEY
from audit.exporting import ExportSummary
from audit.verifying import verify
from keys import KeysError, NoteVerifier, parse_public_key_text
from protocols.directory import verify_directory
from protocols.errors import DirectoryError

_DIRECTORY: Final = re.compile(rf"{REGISTRY}/directory-(0|[1-9][0-9]{{0,9}})\.json")
_CHUNK: Final = 1 << 20


def fetch_export(base_url: str, token: str, out_dir: Path | str, *, log_key: NoteVerifier,
                 registry_key: bytes, timeout: float = 60.0,
                 progress: Callable[[int, int], None] | None = None,
                 evidence: bool = True) -> ExportSummary:
    """Fetch ``base_url``'s export into ``out_dir`` (absent or empty), checked; without
    ``evidence``, an export without evidence.jsonl (it verifies but cannot be replayed).

    Raises:
        AuditError: the server refuses or cannot be reached, the tar holds anything but
            an export, a directory does not verify against ``registry_key``, or the
            export does not verify against ``log_key`` (the failure is named).
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AuditError(f"{out}: exists and is not an empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tar_path = work / "export.tar"
        query = "" if evidence else "?evidence=no"
        _download(base_url.rstrip("/") + "/api/v1/export.tar" + query, token, tar_path,
                  timeout, progress)
        root = _unpack(tar_path, work / "x")
        tar_path.unlink()
        _check_registry(root, registry_key)
        result = verify(root, log_key=log_key)
        if not result.ok:
            raise AuditError(f"the served export does not verify: {result.summary()}")
        if out.exists():
            out.rmdir()
        os.replace(root, out)
    except OSError as e:
        raise AuditError(f"{out}: cannot write the export ({e.strerror})") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    versions = tuple(sorted(int(m.group(1)) for p in (out / REGISTRY).iterdir()
                            if (m := _DIRECTORY.fullmatch(f"{REGISTRY}/{p.name}"))))
    return ExportSummary(path=out, size=result.entries, checkpoints=result.checkpoints,
                         registry_versions=versions)


def _download(url: str, token: str, path: Path, timeout: float,
              progress: Callable[[int, int], None] | None) -> None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}",
                                                   "Accept": "application/x-tar"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r, open(path, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0)
            done = 0
            while chunk := r.read(_CHUNK):
                f.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except urllib.error.HTTPError as e:
        raise AuditError(f"the log server refused: {_message(e)} (HTTP {e.code})") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise AuditError(f"the log server at {url} cannot be reached: "
                         f"{getattr(e, 'reason', type(e).__name__)}") from e


def _message(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read(64 * 1024))
        return str(body["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return e.reason if isinstance(e.reason, str) else "no reason given"


def _unpack(tar_path: Path, into: Path) -> Path:
    """The tar's one top directory, holding only the files of an export."""
    try:
        with tarfile.open(tar_path, "r:") as tar:
            members = tar.getmembers()
            tops = {m.name.split("/")[0] for m in members}
            if len(tops) != 1:
                raise AuditError("the served tar is not one export directory")
            top = tops.pop()
            for m in members:
                rel = m.name[len(top) + 1:]
                if m.isdir() and rel in ("", REGISTRY):
                    continue
                if not m.isfile() or not (rel in FIXED_FILES or _DIRECTORY.fullmatch(rel)):
                    raise AuditError(f"the served tar holds {m.name!r}, which is not a file "
                                     "of an export")
            tar.extractall(into, filter="data")
    except tarfile.TarError as e:
        raise AuditError(f"the served export is not a readable tar ({e})") from e
    return into / top


def _check_registry(root: Path, pinned: bytes) -> None:
    try:
        theirs = parse_public_key_text((root / REGISTRY / REGISTRY_KEY).read_text("ascii"))
    except (OSError, UnicodeDecodeError, KeysError) as e:
        raise AuditError("the served export has no usable registry key") from e
    if theirs != pinned:
        raise AuditError("the served export names another registry key than the one given "
                         "with --registry-key")
    for p in sorted((root / REGISTRY).iterdir()):
        m = _DIRECTORY.fullmatch(f"{REGISTRY}/{p.name}")
        if m is None:
            continue
        try:
            d = verify_directory(p.read_bytes(), pinned)
        except DirectoryError as e:
            raise AuditError(f"registry/{p.name} in the served export: {e}") from e
        if d.version != int(m.group(1)):
            raise AuditError(f"registry/{p.name} in the served export holds version "
                             f"{d.version}")
