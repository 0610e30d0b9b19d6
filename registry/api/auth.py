"""Bearer-token authentication and roles for the API.

``admin`` may read and write everything, ``auditor`` may read everything
with history, ``agency`` may read the directory only. A request with wrong
credentials counts as a failure for its client address; once the throttle
refuses an address, its requests are answered 429 before any token is
looked at, so guessing gets no faster by sending valid-looking tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import g, request

from registry.errors import Forbidden, Throttled, Unauthenticated
from registry.extension import current_registry
from registry.store import TokenInfo

P = ParamSpec("P")
R = TypeVar("R")

READERS = ("admin", "auditor", "agency")
AUDITORS = ("admin", "auditor")
ADMINS = ("admin",)


def client_address() -> str:
    return request.remote_addr or "unknown"


def check_throttle(address: str) -> None:
    wait = current_registry().throttle.retry_after(address)
    if wait is not None:
        raise Throttled("too many failed sign-ins from this address; try again later", wait)


def bearer_token() -> TokenInfo:
    """The token of this request.

    Raises:
        Unauthenticated: no bearer token, or not an active one.
        Throttled: this address failed too often recently.
    """
    header = request.headers.get("Authorization", "")
    if not header:
        raise Unauthenticated("send Authorization: Bearer <token>")
    address = client_address()
    check_throttle(address)
    scheme, _, secret = header.partition(" ")
    token = None
    if scheme.lower() == "bearer":
        token = current_registry().store.authenticate(secret.strip())
    if token is None:
        current_registry().throttle.record_failure(address)
        raise Unauthenticated("the bearer token is not valid")
    g.token_id = token.id
    return token


def require(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let the view run only for an active token with one of ``roles``."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            token = bearer_token()
            if token.role not in roles:
                raise Forbidden(f"a {token.role} token may not do this")
            g.token = token
            return view(*args, **kwargs)

        return guarded

    return decorate


def actor() -> str:
    """Who the history records for this request: the token's id, never its secret."""
    token: TokenInfo = g.token
    return f"token:{token.id}"
