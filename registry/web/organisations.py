"""The organisations page: signatories and their units with roles."""

from __future__ import annotations

from flask import Blueprint, render_template

from registry.web.common import page_directory
from registry.web.signin import signed_in

bp = Blueprint("organisations", __name__, url_prefix="/organisations")


@bp.get("")
@signed_in()
def organisations() -> str:
    directory, latest = page_directory()
    return render_template("organisations.html", directory=directory, latest=latest)
