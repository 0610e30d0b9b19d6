"""The history page: every registry version, who made it, when and what it was."""

from __future__ import annotations

from flask import Blueprint, render_template

from registry.extension import current_store
from registry.store import dump_detail
from registry.web.signin import signed_in

bp = Blueprint("history", __name__, url_prefix="/history")


@bp.get("")
@signed_in()
def history() -> str:
    store = current_store()
    entries = list(reversed(store.history()))
    labels = {f"token:{t.id}": t.label for t in store.list_tokens()}
    return render_template("history.html", entries=entries, labels=labels,
                           dump_detail=dump_detail)
