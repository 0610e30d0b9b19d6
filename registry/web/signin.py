"""Signing in to the web pages with an API token, and who is signed in.

A session lives on the server (``web_sessions``): the cookie carries only a
random session id, and every request looks the session and its token up
again. Signing out ends the session on the server, so a copy of the cookie
no longer works; revoking the token ends its sessions at once. Only admin
and auditor tokens may use the pages.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from registry.extension import current_store
from registry.store import TokenInfo
from registry.throttle import presented_token

P = ParamSpec("P")
R = TypeVar("R")

PAGE_ROLES = ("admin", "auditor")
_SESSION_ID = "sid"

bp = Blueprint("signin", __name__)


def current_user() -> TokenInfo | None:
    """The signed-in token, checked against the store on every request."""
    if "user" in g:
        user: TokenInfo | None = g.user
        return user
    session_id = session.get(_SESSION_ID)
    user = None
    if isinstance(session_id, str):
        found = current_store().session_token(session_id)
        if found is not None and found.role in PAGE_ROLES:
            user = found
        else:
            session.pop(_SESSION_ID, None)
    g.user = user
    if user is not None:
        g.token_id = user.id
    return user


def signed_in(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """Let the page show only to a signed-in token with one of ``roles``."""
    allowed = roles or PAGE_ROLES

    def decorate(view: Callable[P, R]) -> Callable[P, R | Response]:
        @wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            user = current_user()
            if user is None:
                return redirect(url_for("signin.sign_in", next=request.full_path.rstrip("?")))
            if user.role not in allowed:
                abort(403, "this page is for administrators")
            return view(*args, **kwargs)

        return guarded

    return decorate


def page_actor() -> str:
    user = current_user()
    assert user is not None
    return f"token:{user.id}"


# What a browser's URL parser (WHATWG) does before it follows a Location:
# strip leading and trailing C0 controls and spaces, drop every tab and
# newline, read a backslash as a slash. "/\t/evil.example" becomes
# "//evil.example", another site; so the check runs on what the browser will see.
_C0_AND_SPACE = "".join(chr(c) for c in range(0x21))
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
#: Characters a path and query on this site are written with (RFC 3986 pchar and query).
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")


def safe_next(target: str | None) -> str:
    """``target`` as a browser would read it, if it is a path on this site; else the overview."""
    fallback = url_for("overview.overview")
    if not target:
        return fallback
    seen = _TAB_OR_NEWLINE.sub("", target.strip(_C0_AND_SPACE)).replace("\\", "/")
    if not seen.startswith("/") or seen.startswith("//") or not _PATH_CHARS.fullmatch(seen):
        return fallback
    parts = urllib.parse.urlsplit(seen)
    if parts.scheme or parts.netloc:
        return fallback
    return seen


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> str | Response | tuple[str, int]:
    if request.method == "GET":
        return render_template("sign_in.html", next=request.args.get("next", ""))
    next_path = request.form.get("next", "")
    presented = presented_token()
    token = presented.token
    if token is None:
        return render_template("sign_in.html", next=next_path,
                               error="That token is not valid."), 401
    if token.role not in PAGE_ROLES:
        return render_template("sign_in.html", next=next_path,
                               error="Agency tokens cannot use these pages."), 403
    # A fresh session on sign-in, so nothing from before carries over.
    old = session.get(_SESSION_ID)
    if isinstance(old, str):
        current_store().end_session(old)
    session.clear()
    lifetime = current_app.permanent_session_lifetime
    session[_SESSION_ID] = current_store().open_session(
        token.id, lifetime if isinstance(lifetime, timedelta) else timedelta(seconds=lifetime))
    flash(f"Signed in as {token.role} ({token.label}).")
    return redirect(safe_next(next_path))


@bp.post("/sign-out")
def sign_out() -> Response:
    session_id = session.get(_SESSION_ID)
    if isinstance(session_id, str):
        current_store().end_session(session_id)
    session.clear()
    flash("Signed out.")
    return redirect(url_for("signin.sign_in"))
