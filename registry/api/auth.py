"""Bearer-token authentication and roles for the API.

``admin`` may read and write everything, ``auditor`` may read everything
with history, ``agency`` may read the directory only. Wrong tokens are
throttled by :mod:`registry.throttle`, which never refuses a valid one.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import g

from registry.errors import Forbidden, Unauthenticated
from registry.store import TokenInfo
from registry.throttle import presented_token

P = ParamSpec("P")
R = TypeVar("R")

READERS = ("admin", "auditor", "agency")
AUDITORS = ("admin", "auditor")
ADMINS = ("admin",)


def bearer_token() -> TokenInfo:
    """The token of this request.

    Raises:
        Unauthenticated: no bearer token, or not an active one.
    """
    presented = presented_token()
    if presented.secret is None:
        raise Unauthenticated("send Authorization: Bearer <token>")
    if presented.token is None:
        raise Unauthenticated("the bearer token is not valid")
    g.token_id = presented.token.id
    return presented.token


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

        guarded.roles = roles  # type: ignore[attr-defined]  # read by registry.openapi
        return guarded

    return decorate


def actor() -> str:
    """Who the history records for this request: the token's id, never its secret."""
    token: TokenInfo = g.token
    return f"token:{token.id}"
