"""``/api/v1/tokens``: list, create (the secret is shown once) and revoke API tokens."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from protocols.directory import format_time
from registry.api import schemas
from registry.api.answers import answer
from registry.api.auth import ADMINS, actor, require
from registry.api.body import load_json
from registry.api.docs import operation
from registry.extension import current_store
from registry.store import TokenInfo

bp = Blueprint("api_tokens", __name__, url_prefix="/api/v1/tokens")


def token_to_dict(t: TokenInfo) -> dict[str, Any]:
    return {"id": t.id, "role": t.role, "label": t.label,
            "created_at": format_time(t.created_at), "created_by": t.created_by,
            "revoked_at": None if t.revoked_at is None else format_time(t.revoked_at),
            "revoked_by": t.revoked_by}


@bp.get("")
@require(*ADMINS)
@operation("Every API token (never a secret)", tag="tokens", answer=schemas.Token, many=True)
def list_tokens() -> tuple[Response, int]:
    return answer(schemas.Token, [token_to_dict(t) for t in current_store().list_tokens()],
                  many=True)


@bp.post("")
@require(*ADMINS)
@operation("Create an API token; the secret is in this answer only", tag="tokens",
           body=schemas.NewToken, answer=schemas.TokenCreated, status=201)
def create() -> tuple[Response, int]:
    body = load_json(schemas.NewToken)
    token_id, secret = current_store().create_token(body["role"], body["label"], actor=actor())
    return answer(schemas.TokenCreated, {"id": token_id, "role": body["role"],
                                         "label": body["label"], "secret": secret}, 201)


@bp.post("/<token_id>/revoke")
@require(*ADMINS)
@operation("Revoke an API token (not the last active admin token)", tag="tokens",
           answer=schemas.TokenRevoked, errors=(404, 409))
def revoke(token_id: str) -> tuple[Response, int]:
    current_store().revoke_token(token_id, actor=actor())
    return answer(schemas.TokenRevoked, {"id": token_id, "revoked": True})
