"""Token management for administrators: list, create (secret shown once), revoke."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from registry.errors import RegistryError
from registry.extension import current_store
from registry.http_errors import status_of
from registry.store import ROLES
from registry.web.signin import page_actor, signed_in

bp = Blueprint("tokens", __name__, url_prefix="/tokens")


def _tokens_page(error: RegistryError | None = None, created: tuple[str, str] | None = None,
                 status: int = 200) -> tuple[str, int]:
    return render_template("tokens.html", tokens=current_store().list_tokens(), roles=ROLES,
                           error=error, created=created), status


@bp.get("")
@signed_in("admin")
def tokens() -> tuple[str, int]:
    return _tokens_page()


@bp.post("")
@signed_in("admin")
def create() -> tuple[str, int]:
    try:
        created = current_store().create_token(request.form.get("role", ""),
                                               request.form.get("label", ""),
                                               actor=page_actor())
    except RegistryError as e:
        return _tokens_page(e, status=status_of(e))
    # Rendered, not redirected: the secret is shown on this one page and never again.
    return _tokens_page(created=created, status=201)


@bp.post("/<token_id>/revoke")
@signed_in("admin")
def revoke(token_id: str) -> Response | tuple[str, int]:
    try:
        current_store().revoke_token(token_id, actor=page_actor())
    except RegistryError as e:
        return _tokens_page(e, status=status_of(e))
    flash(f"Token {token_id} revoked.")
    return redirect(url_for("tokens.tokens"))
