"""Who may read the served log: registry tokens with role auditor, checked with the registry.

The log server keeps no accounts. A bearer token (or a page session signed in
with one) is checked with the registry that issued it (``GET /api/v1/token``
names the role and label of the token presented), and the answer is kept for
``ttl`` seconds so that a busy auditor does not cost the registry a request
each time; a revoked token is refused at most ``ttl`` seconds later. Only an
auditor's token reads the log: who shared with whom is the auditors' to see.

For an export served on this machine (``infoshare audit serve``) the token is
a random one printed when the server starts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from registry.client import PresentedToken, RegistryClient
from registry.errors import NotFound, RegistryError, Throttled, Unauthenticated


@dataclass(frozen=True)
class Reader:
    """Who signed in: a label for the pages (never the secret), a reference for the
    server's log (an id, never a name), and the token, kept to fetch the registry
    directories the pages need on the reader's behalf."""

    label: str
    token: str
    ref: str


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


class LocalToken:
    """One random token, printed once, for an export served to its own auditor."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret or secrets.token_urlsafe(24)

    def check(self, token: str) -> Reader:
        if not hmac.compare_digest(token.encode("utf-8"), self.secret.encode("utf-8")):
            raise Refused(401, "that is not the token this server printed when it started")
        return Reader(label="local auditor", token=token, ref="local")


#: ``ask(token)``: what the registry says of a token.
Ask = Callable[[str], PresentedToken]


class RegistryTokens:
    """Tokens checked with the registry at ``base_url``, answers kept ``ttl`` seconds.

    Over HTTPS the registry's certificate is checked as the registry client
    checks it (``INFOSHARE_REGISTRY_CA_FILE``, else the system's CAs).
    """

    def __init__(self, base_url: str, *, ttl: float = 30.0,
                 timeout: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 ask: Ask | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._ttl = ttl
        self._timeout = timeout
        self._clock = clock
        self._ask_registry = ask or self._presented
        self._cache: dict[str, tuple[float, Reader | Refused]] = {}
        self._lock = threading.Lock()

    def _presented(self, token: str) -> PresentedToken:
        # This client reads no directory, so it has no key to pin.
        client = RegistryClient(self.base_url, token, b"", timeout=self._timeout)
        return client.presented_token()

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
        try:
            presented = self._ask_registry(token)
        except Unauthenticated:
            return Refused(401, "the registry does not know this token (or it was revoked)")
        except Throttled:
            return Refused(503, "the registry is refusing checks for now; try again in a "
                           "minute", retry_after=60)
        except NotFound:
            return Refused(503, f"the registry at {self.base_url} cannot name a token's role "
                           "(no /api/v1/token): it is older than this log server")
        except RegistryError as e:
            return Refused(503, f"the registry, which checks tokens, cannot be asked now "
                           f"({e.code}); try again later")
        if presented.role == "auditor":
            return Reader(label=f"{presented.label} (token {presented.id})", token=token,
                          ref=f"token:{presented.id}")
        whose = {"admin": "an administrator's", "agency": "an agency's"}.get(
            presented.role, f"one of role {presented.role}")
        return Refused(403, "only a registry token with role auditor may read the transfer "
                       f"log; this one is {whose}")
