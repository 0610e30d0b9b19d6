"""``/api/v1/protocols``: load a protocol file, change a protocol's status."""

from __future__ import annotations

from flask import Blueprint, Response

from registry.api import schemas
from registry.api.answers import answer
from registry.api.auth import ADMINS, actor, require
from registry.api.body import load_json
from registry.api.docs import operation
from registry.extension import current_store

bp = Blueprint("api_protocols", __name__, url_prefix="/api/v1/protocols")


@bp.post("")
@require(*ADMINS)
@operation("Load a protocol file (a new protocol or a higher version of one)",
           tag="protocols", body=schemas.LoadProtocol, answer=schemas.ProtocolLoaded,
           status=201, errors=(409,))
def load() -> tuple[Response, int]:
    body = load_json(schemas.LoadProtocol)
    store = current_store()
    version = store.load_protocol(body["yaml"], actor=actor())
    loaded = store.change(version).detail
    return answer(schemas.ProtocolLoaded, {"version": version, "protocol": loaded["protocol"],
                                           "protocol_version": loaded["protocol_version"]}, 201)


@bp.put("/<protocol_id>/status")
@require(*ADMINS)
@operation("Change a protocol's status and in-force dates", tag="protocols",
           body=schemas.ProtocolStatusChange, answer=schemas.VersionResult, errors=(404,))
def set_status(protocol_id: str) -> tuple[Response, int]:
    body = load_json(schemas.ProtocolStatusChange)
    version = current_store().set_protocol_status(
        protocol_id, body["status"], effective_from=body.get("effective_from"),
        ends_at=body.get("ends_at"), actor=actor())
    return answer(schemas.VersionResult, {"version": version})
