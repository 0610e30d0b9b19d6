"""``/api/v1/keys``: register a public key, revoke one."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from keys import key_id
from registry.api import schemas
from registry.api.auth import ADMINS, actor, require
from registry.api.body import load_json
from registry.extension import current_store

bp = Blueprint("api_keys", __name__, url_prefix="/api/v1/keys")


@bp.post("")
@require(*ADMINS)
def register() -> tuple[Response, int]:
    body = load_json(schemas.NewKey)
    version = current_store().register_key(
        body["holder"], body["owner"], body["use"], body["public"], body["valid_from"],
        body["valid_until"], body["manager"], actor=actor())
    return jsonify({"version": version, "key_id": key_id(body["public"])}), 201


@bp.post("/<key_id_>/revoke")
@require(*ADMINS)
def revoke(key_id_: str) -> Response:
    body = load_json(schemas.Revocation)
    version = current_store().revoke_key(key_id_, body["reason"], body["at"], actor=actor())
    return jsonify({"version": version})
