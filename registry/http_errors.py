"""The one place where registry errors become HTTP statuses and error bodies.

Every error answers ``{"error": code, "message": text, "fields": {...}}`` as
JSON, for unknown paths and wrong methods too (the ``Allow`` header of a 405
is kept), unless a browser asked for a web page, which gets an HTML page with
the same status. Bad input is a 4xx, never a 500; messages hold ids and
codes only.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flask import Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException

from registry.errors import (
    Conflict,
    Forbidden,
    Invalid,
    LastBrokerKey,
    NotFound,
    NotInitialised,
    RegistryError,
    RegistryUnavailable,
    Throttled,
    Unauthenticated,
    UntrustedDirectory,
)

log = logging.getLogger("registry.errors")

STATUS: dict[type[RegistryError], int] = {
    Invalid: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    LastBrokerKey: 409,
    Throttled: 429,
    NotInitialised: 503,
    RegistryUnavailable: 503,
    UntrustedDirectory: 502,
}


def status_of(e: RegistryError) -> int:
    for cls in type(e).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _wants_html() -> bool:
    if request.path.startswith("/api/") or request.path == "/openapi.json":
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict[
        str, Any]:
    return {"error": code, "message": message, "fields": fields or {}}


def error_response(status: int, code: str, message: str,
                   fields: dict[str, list[str]] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    if _wants_html():
        html = render_template("error.html", status=status, code=code, message=message,
                               fields=fields or {})
        response = Response(html, status=status, mimetype="text/html")
    else:
        from flask import json

        response = Response(json.dumps(error_body(code, message, fields)), status=status,
                            mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _http_code(e: HTTPException) -> str:
    return (e.name or "error").lower().replace(" ", "_").replace("-", "_")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        # Start from werkzeug's own response so headers such as Allow survive.
        base = e.get_response()
        response = error_response(base.status_code, getattr(e, "registry_code", _http_code(e)),
                                  e.description or e.name, getattr(e, "fields", None))
        for name, value in base.headers.items():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response

    @app.errorhandler(RegistryError)
    def registry_error(e: RegistryError) -> Response:
        status = status_of(e)
        headers: dict[str, str] = {}
        if isinstance(e, Throttled):
            headers["Retry-After"] = str(e.retry_after)
        if isinstance(e, Unauthenticated):
            headers["WWW-Authenticate"] = 'Bearer realm="infoshare-registry"'
        fields = e.fields if isinstance(e, Invalid) else None
        if status >= 500:
            log.error("registry error %s on %s %s", e.code, request.method, request.path)
        return error_response(status, e.code, str(e), fields, headers)

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Response:
        # The type and where it happened, not its text: that may quote input.
        where = "".join(traceback.format_tb(e.__traceback__))
        log.error("unexpected %s on %s %s\n%s", type(e).__name__, request.method,
                  request.path, where)
        return error_response(500, "internal", "the registry failed; see its log")
