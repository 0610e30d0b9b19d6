"""``/api/v1/directory``: the signed directory, current or at a version, and the versions."""

from __future__ import annotations

import hashlib

from flask import Blueprint, Response, request

from protocols.directory import format_time
from registry.api import schemas
from registry.api.answers import answer
from registry.api.auth import READERS, require
from registry.api.docs import operation
from registry.extension import current_store

bp = Blueprint("api_directory", __name__, url_prefix="/api/v1/directory")


def _signed(version: int | None) -> Response:
    number, document = current_store().signed_directory_with_version(version)
    # The bytes exactly as signed: clients verify what they receive.
    response = Response(document, mimetype="application/json")
    response.headers["X-Registry-Version"] = str(number)
    # A client that holds this document already (If-None-Match) gets 304 and no body:
    # asking whether the directory changed costs no transfer and no verification.
    response.set_etag(hashlib.sha256(document).hexdigest())
    response.make_conditional(request)
    return response


@bp.get("")
@require(*READERS)
@operation("The current signed directory, bytes as signed", tag="directory",
           answer=schemas.SignedDirectory, headers=("X-Registry-Version",))
def current() -> Response:
    return _signed(None)


@bp.get("/<version:version>")
@require(*READERS)
@operation("The signed directory at a registry version", tag="directory",
           answer=schemas.SignedDirectory, errors=(404,), headers=("X-Registry-Version",))
def at_version(version: int) -> Response:
    return _signed(version)


@bp.get("/versions")
@require(*READERS)
@operation("Every registry version", tag="directory", answer=schemas.VersionInfo, many=True)
def versions() -> tuple[Response, int]:
    return answer(schemas.VersionInfo, [
        {"version": v.version, "created_at": format_time(v.created_at), "actor": v.actor,
         "change": v.action}
        for v in current_store().versions()
    ], many=True)
