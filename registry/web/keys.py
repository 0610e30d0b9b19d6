"""The keys page: every key with its validity; revoking one after a confirmation (admin);
registering the broker's key from its public key file.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from registry.changes import KeyOwner
from registry.errors import RegistryError
from registry.extension import current_store
from registry.http_errors import status_of
from registry.web.common import form_time, page_directory
from registry.web.forms import uploaded_key_files
from registry.web.signin import page_actor, signed_in

bp = Blueprint("keys", __name__, url_prefix="/keys")


def _keys_page(error: RegistryError | None = None, status: int = 200) -> tuple[str, int]:
    directory, latest = page_directory()
    return render_template("keys.html", directory=directory, latest=latest,
                           now=datetime.now(UTC), error=error), status


@bp.get("")
@signed_in()
def keys() -> tuple[str, int]:
    return _keys_page()


def _confirm_page(key_id: str, error: RegistryError | None = None,
                  status: int = 200) -> tuple[str, int]:
    directory, _ = page_directory()
    key = directory.key(key_id)
    if key is None or key.revoked_at is not None:
        abort(404, f"key {key_id} is not registered, or was revoked already")
    now = datetime.now(UTC)
    last_broker = key.holder == "broker" and key.valid_at(now) and not any(
        k.holder == "broker" and k.key_id != key.key_id and k.valid_at(now)
        for k in directory.keys)
    return render_template("confirm_revoke.html", key=key, last_broker=last_broker,
                           reason=request.form.get("reason", ""), error=error), status


@bp.route("/<key_id>/revoke", methods=["GET", "POST"])
@signed_in("admin")
def revoke(key_id: str) -> Response | tuple[str, int]:
    if request.method == "GET":
        return _confirm_page(key_id)
    confirmed = request.form.get("last_broker_key") == "yes"
    try:
        version = current_store().revoke_key(key_id, request.form.get("reason", ""),
                                             form_time("at"), actor=page_actor(),
                                             last_broker_key=confirmed)
    except RegistryError as e:
        return _confirm_page(key_id, e, status_of(e))
    flash(f"Key {key_id} revoked; registry version {version}.")
    return redirect(url_for("keys.keys"))


@bp.post("/broker")
@signed_in("admin")
def register_broker_key() -> Response | tuple[str, int]:
    try:
        offered = uploaded_key_files("signing")
        version = current_store().register_keys(KeyOwner("broker", "broker"), offered,
                                                form_time("valid_from"),
                                                form_time("valid_until"), actor=page_actor())
    except RegistryError as e:
        return _keys_page(e, status_of(e))
    flash(f"Registered the broker's key {offered['signing'].key_id}; "
          f"registry version {version}.")
    return redirect(url_for("keys.keys"))
