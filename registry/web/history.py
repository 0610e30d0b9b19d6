"""The history page: every change and token event, newest first, in words, with who did it."""

from __future__ import annotations

from flask import Blueprint, render_template

from registry.extension import current_store
from registry.history import events
from registry.web.signin import signed_in

bp = Blueprint("history", __name__, url_prefix="/history")


@bp.get("")
@signed_in()
def history() -> str:
    return render_template("history.html", events=list(reversed(events(current_store()))))
