"""``/api/v1/organisations/<org>/units``: add a unit, set its roles, remove it."""

from __future__ import annotations

from flask import Blueprint, Response

from registry.api import schemas
from registry.api.answers import answer
from registry.api.auth import ADMINS, actor, require
from registry.api.body import load_json
from registry.api.docs import operation
from registry.extension import current_store

bp = Blueprint("api_units", __name__, url_prefix="/api/v1/organisations")


@bp.post("/<org>/units")
@require(*ADMINS)
@operation("Add a unit to an organisation", tag="units", body=schemas.NewUnit,
           answer=schemas.UnitAdded, status=201, errors=(404, 409))
def add(org: str) -> tuple[Response, int]:
    body = load_json(schemas.NewUnit)
    version = current_store().add_unit(org, body["id"], body["name"], body["roles"],
                                       actor=actor())
    return answer(schemas.UnitAdded, {"version": version, "address": f"{org}/{body['id']}"},
                  201)


@bp.put("/<org>/units/<unit>")
@require(*ADMINS)
@operation("Replace a unit's roles", tag="units", body=schemas.UnitRoles,
           answer=schemas.VersionResult, errors=(404,))
def set_roles(org: str, unit: str) -> tuple[Response, int]:
    body = load_json(schemas.UnitRoles)
    version = current_store().set_unit_roles(org, unit, body["roles"], actor=actor())
    return answer(schemas.VersionResult, {"version": version})


@bp.delete("/<org>/units/<unit>")
@require(*ADMINS)
@operation("Remove a unit that holds no valid key", tag="units",
           answer=schemas.VersionResult, errors=(404, 409))
def remove(org: str, unit: str) -> tuple[Response, int]:
    version = current_store().remove_unit(org, unit, actor=actor())
    return answer(schemas.VersionResult, {"version": version})
