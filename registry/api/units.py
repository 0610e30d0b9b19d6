"""``/api/v1/organisations/<org>/units``: add a unit, set its roles, remove it."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from registry.api import schemas
from registry.api.auth import ADMINS, actor, require
from registry.api.body import load_json
from registry.extension import current_store

bp = Blueprint("api_units", __name__, url_prefix="/api/v1/organisations")


@bp.post("/<org>/units")
@require(*ADMINS)
def add(org: str) -> tuple[Response, int]:
    body = load_json(schemas.NewUnit)
    version = current_store().add_unit(org, body["id"], body["name"], body["roles"],
                                       actor=actor())
    return jsonify({"version": version, "address": f"{org}/{body['id']}"}), 201


@bp.put("/<org>/units/<unit>")
@require(*ADMINS)
def set_roles(org: str, unit: str) -> Response:
    body = load_json(schemas.UnitRoles)
    version = current_store().set_unit_roles(org, unit, body["roles"], actor=actor())
    return jsonify({"version": version})


@bp.delete("/<org>/units/<unit>")
@require(*ADMINS)
def remove(org: str, unit: str) -> Response:
    version = current_store().remove_unit(org, unit, actor=actor())
    return jsonify({"version": version})
