"""``/api/v1/tokens``: list, create (the secret is shown once) and revoke API tokens;
``/api/v1/token``: the role and label of the token presented, for any holder.

A service that accepts registry tokens from its own users (the log server
lets auditors in) asks ``/api/v1/token`` with the token it was given: one
answer names the role, where probing other paths would only hint at it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g

from protocols.directory import format_time
from registry.api import schemas
from registry.api.answers import answer
from registry.api.auth import ADMINS, READERS, actor, require
from registry.api.body import load_json
from registry.api.docs import operation
from registry.extension import current_store
from registry.store import TokenInfo

bp = Blueprint("api_tokens", __name__, url_prefix="/api/v1/tokens")
presented_bp = Blueprint("api_token", __name__, url_prefix="/api/v1/token")


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


@presented_bp.get("")
@require(*READERS)
@operation("The role and label of the token presented (never its secret)", tag="tokens",
           answer=schemas.TokenPresented)
def presented() -> tuple[Response, int]:
    t: TokenInfo = g.token
    return answer(schemas.TokenPresented, {"id": t.id, "role": t.role, "label": t.label})
