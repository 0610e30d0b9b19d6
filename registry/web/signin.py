"""Signing in to the web pages with an API token, and who is signed in.

The session (a signed cookie) keeps the token's id and the SHA-256 of its
secret, never the secret itself; every request looks the token up again, so
a revoked token signs its pages out at once. Only admin and auditor tokens
may use the pages.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from registry.api.auth import check_throttle, client_address
from registry.extension import current_registry
from registry.store import TokenInfo, hash_secret

P = ParamSpec("P")
R = TypeVar("R")

PAGE_ROLES = ("admin", "auditor")

bp = Blueprint("signin", __name__)


def current_user() -> TokenInfo | None:
    """The signed-in token, checked against the store on every request."""
    if "user" in g:
        user: TokenInfo | None = g.user
        return user
    token_hash = session.get("token_sha256")
    user = None
    if isinstance(token_hash, str):
        found = current_registry().store.token_by_hash(token_hash)
        if found is not None and found.id == session.get("token_id") \
                and found.role in PAGE_ROLES:
            user = found
        else:
            session.pop("token_sha256", None)
            session.pop("token_id", None)
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
                return redirect(url_for("signin.sign_in", next=request.path))
            if user.role not in allowed:
                abort(403, "this page is for administrators")
            return view(*args, **kwargs)

        return guarded

    return decorate


def page_actor() -> str:
    user = current_user()
    assert user is not None
    return f"token:{user.id}"


def _safe_next(target: str | None) -> str:
    # Only paths on this site: never redirect a signed-in browser elsewhere.
    if target and target.startswith("/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return url_for("overview.overview")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> str | Response | tuple[str, int]:
    if request.method == "GET":
        return render_template("sign_in.html", next=request.args.get("next", ""))
    address = client_address()
    check_throttle(address)
    secret = request.form.get("token", "").strip()
    token = current_registry().store.authenticate(secret)
    if token is None:
        current_registry().throttle.record_failure(address)
        return render_template("sign_in.html", next=request.form.get("next", ""),
                               error="That token is not valid."), 401
    if token.role not in PAGE_ROLES:
        return render_template("sign_in.html", next=request.form.get("next", ""),
                               error="Agency tokens cannot use these pages."), 403
    # A fresh session on sign-in, so nothing from before carries over.
    session.clear()
    session["token_id"] = token.id
    session["token_sha256"] = hash_secret(secret)
    flash(f"Signed in as {token.role} (token {token.id}).")
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/sign-out")
def sign_out() -> Response:
    session.clear()
    flash("Signed out.")
    return redirect(url_for("signin.sign_in"))
