"""The overview page: protocols with their status and signatories, the current version."""

from __future__ import annotations

from flask import Blueprint, render_template

from registry.web.common import page_directory
from registry.web.signin import signed_in

bp = Blueprint("overview", __name__)


@bp.get("/")
@signed_in()
def overview() -> str:
    directory, latest = page_directory()
    return render_template("overview.html", directory=directory, latest=latest)
