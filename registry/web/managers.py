"""The managers page: who may countersign for each organisation (codes, not names)."""

from __future__ import annotations

from flask import Blueprint, render_template

from registry.web.common import page_directory
from registry.web.signin import signed_in

bp = Blueprint("managers", __name__, url_prefix="/managers")


@bp.get("")
@signed_in()
def managers() -> str:
    directory, latest = page_directory()
    return render_template("managers.html", directory=directory, latest=latest)
