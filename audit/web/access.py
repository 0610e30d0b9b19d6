"""Who is asking: a bearer token (the API, entry bundles) or a signed-in page session.

A page session is a random id in a signed cookie; the token it was opened
with stays on the server, in memory, and is checked again (through the
authenticator's short cache) on every page, so a revoked token signs its
pages out within the cache's lifetime. The log server runs one process, so
memory is where every request finds it.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Final

from flask import current_app, g, request, session

from audit.web.auth import Reader, Refused
from audit.web.site import LogSite

#: How long a page session lasts without use.
SESSION_SECONDS: Final = 8 * 3600


class Sessions:
    def __init__(self) -> None:
        self._by_id: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def open(self, token: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            for k in [k for k, (_, exp) in self._by_id.items() if exp < now]:
                del self._by_id[k]
            self._by_id[sid] = (token, now + SESSION_SECONDS)
        return sid

    def token(self, sid: str) -> str | None:
        with self._lock:
            found = self._by_id.get(sid)
            if found is None or found[1] < time.monotonic():
                self._by_id.pop(sid, None)
                return None
            self._by_id[sid] = (found[0], time.monotonic() + SESSION_SECONDS)
            return found[0]

    def close(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)


def site() -> LogSite:
    s: LogSite = current_app.extensions["infoshare_log_site"]
    return s


def sessions() -> Sessions:
    s: Sessions = current_app.extensions["infoshare_log_sessions"]
    return s


def bearer_reader() -> Reader:
    """The reader of an API request.

    Raises:
        Refused: no bearer token, or one that may not read the log.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(401, "send Authorization: Bearer <an auditor's registry token>")
    reader = site().auth.check(token.strip())
    g.reader = reader
    return reader


def page_reader() -> Reader | None:
    """The signed-in reader of a page, or None (signed out, expired or revoked).

    Raises:
        Refused: the registry cannot be asked right now (503).
    """
    if "reader" in g:
        found: Reader | None = g.reader
        return found
    sid = session.get("sid")
    token = sessions().token(sid) if isinstance(sid, str) else None
    reader = None
    if token is not None:
        try:
            reader = site().auth.check(token)
        except Refused as e:
            if e.status >= 500:
                raise
            sessions().close(str(sid))
            session.clear()
    g.reader = reader
    return reader


def sign_in(token: str) -> Reader:
    """Raises: Refused: the token may not read the log."""
    reader = site().auth.check(token)
    old = session.get("sid")
    if isinstance(old, str):
        sessions().close(old)
    session.clear()
    session["sid"] = sessions().open(token)
    g.reader = reader
    return reader


def sign_out() -> None:
    sid = session.get("sid")
    if isinstance(sid, str):
        sessions().close(sid)
    session.clear()
