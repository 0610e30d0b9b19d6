"""Organisations and their units: add a unit, set its roles, register its keys, remove it."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from registry.changes import KeyOwner
from registry.errors import RegistryError
from registry.extension import current_store
from registry.http_errors import status_of
from registry.web.common import form_time, page_directory
from registry.web.forms import roles_field, uploaded_key_files
from registry.web.signin import page_actor, signed_in

bp = Blueprint("organisations", __name__, url_prefix="/organisations")


def _organisations_page(error: RegistryError | None = None, status: int = 200,
                        failed_org: str | None = None) -> tuple[str, int]:
    directory, latest = page_directory()
    return render_template("organisations.html", directory=directory, latest=latest,
                           error=error, failed_org=failed_org, form=request.form), status


@bp.get("")
@signed_in()
def organisations() -> tuple[str, int]:
    return _organisations_page()


@bp.post("/<org>/units")
@signed_in("admin")
def add_unit(org: str) -> Response | tuple[str, int]:
    unit = request.form.get("id", "").strip()
    try:
        version = current_store().add_unit(org, unit, request.form.get("name", "").strip(),
                                           roles_field(), actor=page_actor())
    except RegistryError as e:
        return _organisations_page(e, status_of(e), org)
    flash(f"Added unit {org}/{unit}; registry version {version}. Register its keys next.")
    return redirect(url_for("organisations.unit", org=org, unit=unit))


def _unit_page(org: str, unit: str, error: RegistryError | None = None,
               status: int = 200) -> tuple[str, int]:
    directory, latest = page_directory()
    found = directory.unit(f"{org}/{unit}")
    if found is None:
        abort(404, f"unit {org}/{unit} is not registered at this version")
    keys = [k for k in directory.keys if k.holder == "unit" and k.owner == found.address]
    return render_template("unit.html", directory=directory, latest=latest, unit=found,
                           keys=keys, now=datetime.now(UTC), error=error), status


@bp.get("/<org>/units/<unit>")
@signed_in()
def unit(org: str, unit: str) -> tuple[str, int]:
    return _unit_page(org, unit)


@bp.post("/<org>/units/<unit>/roles")
@signed_in("admin")
def set_roles(org: str, unit: str) -> Response | tuple[str, int]:
    try:
        version = current_store().set_unit_roles(org, unit, roles_field(), actor=page_actor())
    except RegistryError as e:
        return _unit_page(org, unit, e, status_of(e))
    flash(f"Roles of {org}/{unit} changed; registry version {version}.")
    return redirect(url_for("organisations.unit", org=org, unit=unit))


@bp.post("/<org>/units/<unit>/keys")
@signed_in("admin")
def register_keys(org: str, unit: str) -> Response | tuple[str, int]:
    address = f"{org}/{unit}"
    try:
        offered = uploaded_key_files("signing", "encryption")
        version = current_store().register_keys(
            KeyOwner("unit", address), offered, form_time("valid_from"),
            form_time("valid_until"), actor=page_actor())
    except RegistryError as e:
        return _unit_page(org, unit, e, status_of(e))
    ids = ", ".join(f"{f.use} {f.key_id}" for f in offered.values())
    flash(f"Registered the keys of {address} ({ids}); registry version {version}.")
    return redirect(url_for("organisations.unit", org=org, unit=unit))


@bp.route("/<org>/units/<unit>/remove", methods=["GET", "POST"])
@signed_in("admin")
def remove(org: str, unit: str) -> Response | tuple[str, int]:
    if request.method == "GET":
        directory, _ = page_directory()
        found = directory.unit(f"{org}/{unit}")
        if found is None:
            abort(404, f"unit {org}/{unit} is not registered")
        return render_template("confirm_remove_unit.html", unit=found), 200
    try:
        version = current_store().remove_unit(org, unit, actor=page_actor())
    except RegistryError as e:
        return _unit_page(org, unit, e, status_of(e))
    flash(f"Removed unit {org}/{unit}; registry version {version}.")
    return redirect(url_for("organisations.organisations"))
