"""Keys: register a unit's, a manager's or the broker's keys from their public key files;
revoke a key.

The body carries the public key files as ``infoshare keys generate`` wrote
them, under the use each is offered for; the registry refuses a file for
another holder or use, or whose proof of possession does not verify.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from keys import PublicKeyFile
from registry.api import schemas
from registry.api.answers import answer
from registry.api.auth import ADMINS, actor, require
from registry.api.body import load_json
from registry.api.docs import operation
from registry.changes import KeyOwner
from registry.extension import current_store

bp = Blueprint("api_keys", __name__, url_prefix="/api/v1")


def _register(expected: KeyOwner, body: dict[str, Any]) -> tuple[Response, int]:
    offered: dict[str, PublicKeyFile] = {use: body[use] for use in ("signing", "encryption")
                                         if use in body}
    version = current_store().register_keys(expected, offered, body.get("valid_from"),
                                            body.get("valid_until"), actor=actor())
    keys = [{"key_id": f.key_id, "use": f.use} for f in offered.values()]
    return answer(schemas.KeysRegistered, {"version": version, "keys": keys}, 201)


@bp.post("/organisations/<org>/units/<unit>/keys")
@require(*ADMINS)
@operation("Register a unit's signing and encryption keys from their public key files",
           tag="keys", body=schemas.UnitKeys, answer=schemas.KeysRegistered, status=201,
           errors=(404, 409))
def register_unit_keys(org: str, unit: str) -> tuple[Response, int]:
    return _register(KeyOwner("unit", f"{org}/{unit}"), load_json(schemas.UnitKeys))


@bp.post("/managers/<manager>/keys")
@require(*ADMINS)
@operation("Register a manager's signing key from its public key file", tag="keys",
           body=schemas.SigningKey, answer=schemas.KeysRegistered, status=201,
           errors=(404, 409))
def register_manager_key(manager: str) -> tuple[Response, int]:
    body = load_json(schemas.SigningKey)
    return _register(current_store().manager_keys(manager), body)


@bp.post("/broker/keys")
@require(*ADMINS)
@operation("Register the broker's notice and checkpoint key from its public key file",
           tag="keys", body=schemas.SigningKey, answer=schemas.KeysRegistered, status=201,
           errors=(409,))
def register_broker_key() -> tuple[Response, int]:
    return _register(KeyOwner("broker", "broker"), load_json(schemas.SigningKey))


@bp.post("/keys/<key_id>/revoke")
@require(*ADMINS)
@operation("Revoke a key from a time on (default now); the broker's last valid key only "
           "with last_broker_key", tag="keys", body=schemas.Revocation,
           answer=schemas.VersionResult, errors=(404, 409))
def revoke(key_id: str) -> tuple[Response, int]:
    body = load_json(schemas.Revocation)
    version = current_store().revoke_key(key_id, body["reason"], body.get("at"), actor=actor(),
                                         last_broker_key=bool(body.get("last_broker_key")))
    return answer(schemas.VersionResult, {"version": version})
