"""``/api/v1/managers``: register a manager who may countersign for an organisation."""

from __future__ import annotations

from flask import Blueprint, Response

from registry.api import schemas
from registry.api.answers import answer
from registry.api.auth import ADMINS, actor, require
from registry.api.body import load_json
from registry.api.docs import operation
from registry.extension import current_store

bp = Blueprint("api_managers", __name__, url_prefix="/api/v1/managers")


@bp.post("")
@require(*ADMINS)
@operation("Register a manager (known by a code, not a name) who may countersign",
           tag="managers", body=schemas.NewManager, answer=schemas.ManagerAdded, status=201,
           errors=(404, 409))
def register() -> tuple[Response, int]:
    body = load_json(schemas.NewManager)
    version = current_store().register_manager(body["id"], body["org"], body["title"],
                                               actor=actor())
    return answer(schemas.ManagerAdded, {"version": version, "manager": body["id"]}, 201)
