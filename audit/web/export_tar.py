"""The served log's export as a tar stream: the files of ``docs/export-format.md``.

Written as it is read, never whole in memory: each member's size is known
before its bytes (the index knows the lengths of the entries and evidence
lines it verified), so tarfile's headers can go first and the lines follow
in pages. The registry directories the entries name are fetched with the
reader's own token and verified against the pinned registry key first; an
export that would lack one is refused before anything is sent.
"""

from __future__ import annotations

import tarfile
import time
from collections.abc import Iterator

from flask import abort

from audit.export_dir import (
    CHECKPOINTS,
    ENTRIES,
    EVIDENCE,
    LOG_KEY,
    README,
    REGISTRY,
    REGISTRY_KEY,
    checkpoint_line,
    directory_file,
)
from audit.exporting import README_TEXT
from audit.web.auth import Reader
from audit.web.site import LogSite
from keys import public_key_text

_PAGE = 2_000
_BLOCK = tarfile.BLOCKSIZE


def _header(name: str, size: int, mtime: int, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mtime = mtime
    info.mode = 0o700 if directory else 0o600
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def export_tar(site: LogSite, reader: Reader, *, evidence: bool = True
               ) -> tuple[Iterator[bytes], str, int]:
    """The tar stream, a file name for it and its length in bytes; without ``evidence``,
    without evidence.jsonl (wire spec 6.4 makes it optional).

    Raises (as HTTP answers, before the stream starts):
        404: no verified checkpoint yet. 503: a registry directory cannot be had.
    """
    index = site.index
    state = index.state()
    if not state.checkpoint or site.live is None:
        abort(404, "the log has no verified checkpoint yet")
    size = state.checkpoint_size
    key = site.registry_key_in_use()
    if key is None:
        abort(503, "the log server was started without the registry's key")
    directories = site.directories(reader)
    assert directories is not None
    documents: dict[int, bytes] = {}
    for v in index.registry_versions():
        if site.directory(v, reader) is None:
            abort(503, f"registry directory version {v} cannot be had from the registry "
                  "now; try again later")
        documents[v] = index.directory(v) or b""
    notes = [n for n in site.live.checkpoints(upto=size)]
    checkpoints = b"".join(checkpoint_line(n) + b"\n" for n in notes)
    entries_size, evidence_size = index.db().execute(
        "SELECT COALESCE(SUM(LENGTH(body) + 1), 0), COALESCE(SUM(LENGTH(evidence) + 1), 0) "
        "FROM raw WHERE seq < ?", (size,)).fetchone()
    mtime = int(time.time())
    root = f"export-{size}"
    small = {
        README: README_TEXT.encode("utf-8"),
        LOG_KEY: (state.key + "\n").encode("ascii"),
        CHECKPOINTS: checkpoints,
        f"{REGISTRY}/{REGISTRY_KEY}": (public_key_text(key) + "\n").encode("ascii"),
        **{f"{REGISTRY}/{directory_file(v)}": d for v, d in sorted(documents.items())},
    }

    def lines(column: str) -> Iterator[bytes]:
        pos = 0
        while pos < size:
            rows = index.db().execute(
                f"SELECT {column} FROM raw WHERE seq >= ? AND seq < ? ORDER BY seq",
                (pos, min(size, pos + _PAGE))).fetchall()
            yield b"".join(bytes(r[0]) + b"\n" for r in rows)
            pos += _PAGE

    entries_size, evidence_size = int(entries_size), int(evidence_size)
    head = [_header(root, 0, mtime, directory=True),
            _header(f"{root}/{ENTRIES}", entries_size, mtime)]
    evidence_head = _header(f"{root}/{EVIDENCE}", evidence_size, mtime)
    tail = [_header(f"{root}/{REGISTRY}", 0, mtime, directory=True)]
    for name, data in small.items():
        tail.append(_header(f"{root}/{name}", len(data), mtime) + data + _padding(len(data)))
    tail.append(b"\0" * (2 * _BLOCK))
    # Known before the first byte, so a client can show how far it has come.
    length = (sum(map(len, head)) + entries_size + len(_padding(entries_size))
              + sum(map(len, tail)))
    with_evidence = evidence and state.evidence
    if with_evidence:
        length += len(evidence_head) + evidence_size + len(_padding(evidence_size))

    def stream() -> Iterator[bytes]:
        yield from head
        yield from lines("body")
        yield _padding(entries_size)
        if with_evidence:
            yield evidence_head
            yield from lines("evidence")
            yield _padding(evidence_size)
        yield from tail

    return stream(), f"{root}.tar", length
