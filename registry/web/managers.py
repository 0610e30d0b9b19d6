"""The managers page: who may countersign for each organisation (codes, not names);
registering a manager and their signing key (admin).
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from registry.errors import RegistryError
from registry.extension import current_store
from registry.http_errors import status_of
from registry.web.common import form_time, page_directory
from registry.web.forms import uploaded_key_files
from registry.web.signin import page_actor, signed_in

bp = Blueprint("managers", __name__, url_prefix="/managers")


def _managers_page(error: RegistryError | None = None, status: int = 200) -> tuple[str, int]:
    directory, latest = page_directory()
    return render_template("managers.html", directory=directory, latest=latest, error=error,
                           form=request.form), status


@bp.get("")
@signed_in()
def managers() -> tuple[str, int]:
    return _managers_page()


@bp.post("")
@signed_in("admin")
def register() -> Response | tuple[str, int]:
    manager_id = request.form.get("id", "").strip()
    try:
        version = current_store().register_manager(
            manager_id, request.form.get("org", ""), request.form.get("title", "").strip(),
            actor=page_actor())
    except RegistryError as e:
        return _managers_page(e, status_of(e))
    flash(f"Registered manager {manager_id}; registry version {version}. "
          "Register their signing key next.")
    return redirect(url_for("managers.managers"))


@bp.post("/<manager_id>/keys")
@signed_in("admin")
def register_key(manager_id: str) -> Response | tuple[str, int]:
    store = current_store()
    try:
        offered = uploaded_key_files("signing")
        version = store.register_keys(store.manager_keys(manager_id), offered,
                                      form_time("valid_from"), form_time("valid_until"),
                                      actor=page_actor())
    except RegistryError as e:
        return _managers_page(e, status_of(e))
    flash(f"Registered the signing key {offered['signing'].key_id} of manager {manager_id}; "
          f"registry version {version}.")
    return redirect(url_for("managers.managers"))
