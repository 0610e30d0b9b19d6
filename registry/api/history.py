"""``/api/v1/history``: every change and token event, who made it, when, and in words."""

from __future__ import annotations

from flask import Blueprint, Response

from protocols.directory import format_time
from registry.api import schemas
from registry.api.answers import answer
from registry.api.auth import AUDITORS, require
from registry.api.docs import operation
from registry.extension import current_store
from registry.history import events

bp = Blueprint("api_history", __name__, url_prefix="/api/v1/history")


@bp.get("")
@require(*AUDITORS)
@operation("Every change and every token granted or revoked, oldest first, in words",
           tag="history", answer=schemas.HistoryEntry, many=True)
def history() -> tuple[Response, int]:
    return answer(schemas.HistoryEntry, [
        {"version": e.version, "created_at": format_time(e.at), "actor": e.actor,
         "actor_label": e.actor_label, "action": e.action, "summary": e.summary,
         "detail": e.detail}
        for e in events(current_store())
    ], many=True)
