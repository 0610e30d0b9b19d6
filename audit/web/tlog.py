"""The C2SP tlog-tiles read API of the served log: checkpoint, hash tiles, entry bundles.

The checkpoint is the newest one the index verified against the pinned log
key, and every tile is of the tree that checkpoint signs, so a tlog client
or witness sees exactly what verified. The checkpoint and the hash tiles are
open to anyone (they are hashes and a size, and a witness needs them); entry
bundles hold who shared with whom and need an auditor's token.
"""

from __future__ import annotations

import gzip

from flask import Blueprint, Response, abort, request

from audit.web.access import bearer_reader, site
from protocols.tiles import HASH, parse_tile_path

bp = Blueprint("tlog", __name__)

_IMMUTABLE = "max-age=31536000, immutable"


@bp.get("/checkpoint")
def checkpoint() -> Response:
    site().follow()
    note = site().index.state().checkpoint
    if not note:
        abort(404, "the log has no verified checkpoint yet")
    r = Response(note, content_type="text/plain; charset=utf-8")
    r.headers["Cache-Control"] = "public, max-age=2"
    return r


@bp.get("/tile/<path:rest>")
def tile(rest: str) -> Response:
    try:
        t = parse_tile_path(rest)
    except ValueError as e:
        abort(404, f"not a tile path: {e}")
    index = site().index
    if t.needs_size() > index.state().checkpoint_size:
        # Tiles beyond the verified checkpoint do not exist yet (a partial one
        # may become available later, a full one once the log has grown).
        abort(404, "no such tile in the tree of the newest checkpoint")
    if t.level is None:
        bearer_reader()
        start = t.index * 256
        bodies = index.bodies(start, start + t.count)
        data = b"".join(len(b).to_bytes(2, "big") + b for b in bodies)
        r = Response(data, content_type="application/octet-stream")
        r.headers["Cache-Control"] = "private, " + _IMMUTABLE
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            r.set_data(gzip.compress(data, compresslevel=6, mtime=0))
            r.headers["Content-Encoding"] = "gzip"
        r.headers["Vary"] = "Accept-Encoding, Authorization"
        return r
    data = index.tile(t.level, t.index)[: t.count * HASH]
    if len(data) != t.count * HASH:
        abort(404, "no such tile in the index")
    r = Response(data, content_type="application/octet-stream")
    r.headers["Cache-Control"] = "public, " + _IMMUTABLE
    return r
