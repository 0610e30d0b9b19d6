"""The keys page: every key with its validity and revocation; revoking one (admin)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from registry.errors import RegistryError
from registry.extension import current_store
from registry.http_errors import status_of
from registry.web.common import page_directory
from registry.web.signin import page_actor, signed_in

bp = Blueprint("keys", __name__, url_prefix="/keys")


def _keys_page(error: RegistryError | None = None, failed_key: str | None = None,
               status: int = 200) -> tuple[str, int]:
    directory, latest = page_directory()
    return render_template("keys.html", directory=directory, latest=latest,
                           now=datetime.now(UTC), error=error, failed_key=failed_key), status


@bp.get("")
@signed_in()
def keys() -> tuple[str, int]:
    return _keys_page()


@bp.post("/<key_id>/revoke")
@signed_in("admin")
def revoke(key_id: str) -> Response | tuple[str, int]:
    try:
        version = current_store().revoke_key(key_id, request.form.get("reason", ""),
                                             actor=page_actor())
    except RegistryError as e:
        return _keys_page(e, key_id, status_of(e))
    flash(f"Key {key_id} revoked; registry version {version}.")
    return redirect(url_for("keys.keys"))
