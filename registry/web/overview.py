"""The overview page: protocols with their status, and what needs an administrator's attention."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, render_template

from registry.attention import HORIZON, attention
from registry.web.common import page_directory
from registry.web.signin import signed_in

bp = Blueprint("overview", __name__)


@bp.get("/")
@signed_in()
def overview() -> str:
    directory, latest = page_directory()
    now = datetime.now(UTC)
    return render_template("overview.html", directory=directory, latest=latest,
                           attention=attention(directory, now), horizon_days=HORIZON.days)
