"""Where gateway errors become HTTP statuses and JSON bodies (the pages render their own).

``{"error": code, "message": sentence, "reason": reason code or null,
"message_id": id or null, "fields": {...}}``, for unknown paths and wrong
methods too. Never a traceback, never a 500 for bad input; log lines carry
codes and the route, never a path that could hold a case reference.
"""

from __future__ import annotations

import logging
import traceback

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from agency.gateway.errors import (
    Conflict,
    Forbidden,
    GatewayError,
    Invalid,
    NotFound,
    Refused,
    StoreUnavailable,
    Unauthenticated,
    WrongPassphrase,
)
from agency.gateway.service import RegistryDown

log = logging.getLogger("infoshare.gateway.http")

STATUS: dict[type[GatewayError], int] = {
    Invalid: 422, Refused: 422, NotFound: 404, Conflict: 409, Unauthenticated: 401,
    Forbidden: 403, WrongPassphrase: 403, StoreUnavailable: 503, RegistryDown: 503,
}


def status_of(e: GatewayError) -> int:
    for cls in type(e).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _json(status: int, code: str, message: str, *, reason: str | None = None,
          message_id: str | None = None, fields: dict[str, list[str]] | None = None) -> Response:
    response = jsonify({"error": code, "message": message, "reason": reason,
                        "message_id": message_id, "fields": fields or {}})
    response.status_code = status
    return response


def _is_api() -> bool:
    return request.path.startswith("/api/") or request.path == "/openapi.json"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        base = e.get_response()
        code = (e.name or "error").lower().replace(" ", "_")
        if _is_api():
            response = _json(base.status_code, code, e.description or e.name)
        else:
            from flask import render_template
            response = Response(render_template("error.html", code=code,
                                                message=e.description or e.name),
                                status=base.status_code, mimetype="text/html")
        for name, value in base.headers.items():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response

    @app.errorhandler(GatewayError)
    def gateway_error(e: GatewayError) -> Response:
        status = status_of(e)
        if status >= 500:
            log.error("gateway error %s on %s %s", e.code, request.method,
                      request.url_rule.rule if request.url_rule else "-")
        response = _json(status, e.code, str(e),
                         reason=e.reason if isinstance(e, Refused) else None,
                         message_id=e.message_id if isinstance(e, Refused) else None,
                         fields=e.fields if isinstance(e, Invalid) else None)
        if isinstance(e, Unauthenticated):
            response.headers["WWW-Authenticate"] = 'Bearer realm="infoshare-gateway"'
        return response

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Response:
        where = "".join(traceback.format_tb(e.__traceback__))
        log.error("unexpected %s on %s %s\n%s", type(e).__name__, request.method,
                  request.url_rule.rule if request.url_rule else "-", where)
        return _json(500, "internal", "the gateway failed; see its log")
