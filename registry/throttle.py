"""Slowing down token guessing without locking out the holders of valid tokens (Flask-Limiter).

Every authentication attempt (a bearer token on the API, a token typed into
the sign-in form) is judged by what it presents, not only by where it comes
from:

* a presented token that is valid and active is never refused by the
  throttle: a flood of wrong tokens from the same address (a shared proxy, a
  council's NAT, an attacker) cannot lock an administrator out;
* a wrong token counts as a failure of its client address; after ``limit``
  failures within ``window`` seconds every further wrong token from that
  address is answered 429 with ``Retry-After`` (a moving window), so guessing
  from one address runs at ``limit`` tries a window;
* a request that presents nothing is not a guess and is not counted.

Telling a valid token from a wrong one takes one SHA-256 and one indexed
lookup, so checking every attempt costs no more than refusing it. The
counters live in each process's memory (each gunicorn worker counts on its
own): enough for the purpose, with nothing to deploy beside the registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from flask import Blueprint, Flask, Response, g, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from registry.extension import current_store
from registry.store import TokenInfo

__all__ = ["Presented", "install_throttle", "presented_token"]

SCOPE = "authentication"


class Presented:
    """What one request presents as a credential, looked up once."""

    def __init__(self, secret: str | None, token: TokenInfo | None) -> None:
        self.secret = secret
        self.token = token


def _presented_secret() -> str | None:
    if request.path.startswith("/api/"):
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, secret = header.partition(" ")
        return secret.strip() if scheme.lower() == "bearer" else header
    if request.method == "POST" and request.endpoint == "signin.sign_in":
        return request.form.get("token", "").strip() or None
    return None


def presented_token() -> Presented:
    """The credential of this request and the active token it is, if any (cached per request)."""
    found = g.get("presented")
    if isinstance(found, Presented):
        return found
    secret = _presented_secret()
    token = current_store().authenticate(secret) if secret else None
    g.presented = Presented(secret, token)
    return g.presented  # type: ignore[no-any-return]


def _not_a_guess() -> bool:
    presented = presented_token()
    return presented.secret is None or presented.token is not None


def _failed(response: Response) -> bool:
    return response.status_code == 401


def install_throttle(app: Flask, blueprints: Iterable[Blueprint], *, limit: int,
                     window: int) -> Limiter:
    """Attach a limiter to ``app`` whose one shared limit covers every blueprint given."""
    limiter = Limiter(get_remote_address, app=app, storage_uri="memory://",
                      strategy="moving-window", default_limits=[], headers_enabled=False)
    shared = limiter.shared_limit(f"{limit} per {window} second", scope=SCOPE,
                                  exempt_when=_not_a_guess, deduct_when=_failed)
    for bp in blueprints:
        shared(bp)
    app.register_error_handler(RateLimitExceeded, _refusal(limiter))
    return limiter


def _refusal(limiter: Limiter) -> Callable[[RateLimitExceeded], Response]:
    def refuse(_: RateLimitExceeded) -> Response:
        from registry.http_errors import error_response

        current = limiter.current_limit
        wait = 1 if current is None else max(1, int(current.reset_at - time.time()))
        return error_response(429, "throttled", "too many wrong tokens from this address; "
                              f"try again in {wait} s", headers={"Retry-After": str(wait)})

    return refuse
