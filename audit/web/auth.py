"""Who may read the served log: registry tokens with role auditor, checked with the registry.

The log server keeps no accounts. A bearer token (or a page session signed in
with one) is checked with the registry that issued it, and the answer is
kept for ``ttl`` seconds so that a busy auditor does not cost the registry a
request each time; a revoked token is refused at most ``ttl`` seconds later.
The registry has no call that names a token's role, so two reads answer it:
``/api/v1/history`` is for auditors and administrators, ``/api/v1/tokens``
for administrators alone. Only an auditor's token reads the log: who shared
with whom is the auditors' to see.

For an export served on this machine (``infoshare audit serve``) the token is
a random one printed when the server starts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Reader:
    """Who signed in: a label safe to show and log (never the secret), and the token,
    kept to fetch the registry directories the pages need on the reader's behalf."""

    label: str
    token: str


class Refused(Exception):
    """A token that may not read the log; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Authenticator(Protocol):
    def check(self, token: str) -> Reader:
        """Raises: Refused: not a token that may read the log (401, 403, 503)."""
        ...


def token_label(token: str) -> str:
    """A short name of a token for pages and logs: a hash prefix, not the secret."""
    return "token " + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


class LocalToken:
    """One random token, printed once, for an export served to its own auditor."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret or secrets.token_urlsafe(24)

    def check(self, token: str) -> Reader:
        if not hmac.compare_digest(token.encode("utf-8"), self.secret.encode("utf-8")):
            raise Refused(401, "that is not the token this server printed when it started")
        return Reader(label="local auditor", token=token)


#: ``status(path, token)``: the HTTP status the registry answers a HEAD of ``path``.
Probe = Callable[[str, str], int]


class RegistryTokens:
    """Tokens checked with the registry at ``base_url``, answers kept ``ttl`` seconds."""

    def __init__(self, base_url: str, *, ttl: float = 30.0,
                 timeout: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 probe: Probe | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._ttl = ttl
        self._timeout = timeout
        self._clock = clock
        self._probe = probe or self._head
        self._cache: dict[str, tuple[float, Reader | Refused]] = {}
        self._lock = threading.Lock()

    def _head(self, path: str, token: str) -> int:
        request = urllib.request.Request(self.base_url + path, method="HEAD",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            # HTTPS is checked against the system's CAs, or SSL_CERT_FILE's.
            with urllib.request.urlopen(request, timeout=self._timeout) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise Refused(503, "the registry, which checks tokens, cannot be reached; try "
                          "again later") from e

    def check(self, token: str) -> Reader:
        if not token or len(token) > 512 or not token.isprintable():
            raise Refused(401, "send Authorization: Bearer <an auditor's registry token>")
        key = hashlib.sha256(token.encode("utf-8")).hexdigest()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            answer = cached[1]
        else:
            answer = self._ask(token)
            if not (isinstance(answer, Refused) and answer.status >= 500):
                with self._lock:
                    if len(self._cache) > 10_000:  # a flood of wrong tokens: start again
                        self._cache.clear()
                    self._cache[key] = (now + self._ttl, answer)
        if isinstance(answer, Refused):
            raise answer
        return answer

    def _ask(self, token: str) -> Reader | Refused:
        history = self._probe("/api/v1/history", token)
        if history == 401:
            return Refused(401, "the registry does not know this token (or it was revoked)")
        if history == 429:
            return Refused(503, "the registry is refusing checks for now; try again in a "
                           "minute", retry_after=60)
        if history == 403:
            return Refused(403, "only a registry token with role auditor may read the "
                           "transfer log; this one is an agency's")
        if history != 200:
            return Refused(503, f"the registry answered {history} when asked about the token")
        tokens = self._probe("/api/v1/tokens", token)
        if tokens == 200:
            return Refused(403, "only a registry token with role auditor may read the "
                           "transfer log; an administrator's token may not")
        if tokens != 403:
            return Refused(503, f"the registry answered {tokens} when asked about the token")
        return Reader(label=token_label(token), token=token)
