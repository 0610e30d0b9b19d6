"""``/api/v1/protocols``: load a protocol file, change a protocol's status."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from registry.api import schemas
from registry.api.auth import ADMINS, actor, require
from registry.api.body import load_json
from registry.extension import current_store

bp = Blueprint("api_protocols", __name__, url_prefix="/api/v1/protocols")


@bp.post("")
@require(*ADMINS)
def load() -> tuple[Response, int]:
    body = load_json(schemas.LoadProtocol)
    store = current_store()
    version = store.load_protocol(body["yaml"], actor=actor())
    loaded = store.change(version).detail
    return jsonify({"version": version, "protocol": loaded["protocol"],
                    "protocol_version": loaded["protocol_version"]}), 201


@bp.put("/<protocol_id>/status")
@require(*ADMINS)
def set_status(protocol_id: str) -> Response:
    body = load_json(schemas.ProtocolStatusChange)
    version = current_store().set_protocol_status(
        protocol_id, body["status"], effective_from=body["effective_from"],
        ends_at=body["ends_at"], actor=actor())
    return jsonify({"version": version})
