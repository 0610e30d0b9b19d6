"""``/api/v1/history``: every change with who made it, when and what it was."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from protocols.directory import format_time
from registry.api.auth import AUDITORS, require
from registry.extension import current_store

bp = Blueprint("api_history", __name__, url_prefix="/api/v1/history")


@bp.get("")
@require(*AUDITORS)
def history() -> Response:
    return jsonify([
        {"version": h.version, "created_at": format_time(h.created_at), "actor": h.actor,
         "action": h.action, "detail": h.detail}
        for h in current_store().history()
    ])
