"""The log server's Flask application: tlog-tiles, the JSON API, the auditors' pages.

``create_app(site)`` serves one :class:`~audit.web.site.LogSite`. Pages carry
a strict Content-Security-Policy (no script at all, styles and images from
this server only) and every POST is checked by Flask-WTF's CSRF protection.
Errors are JSON under ``/api/`` and for tiles, a page elsewhere; never a
traceback.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from audit.web import api, pages, tlog
from audit.web.access import Sessions
from audit.web.auth import Refused
from audit.web.site import LogSite

request_log = logging.getLogger("audit.requests")

_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 422: "invalid", 503: "unavailable"}


def create_app(site: LogSite, *, secret_key: str | None = None,
               secure_cookies: bool = False) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_urlsafe(32),
        SESSION_COOKIE_NAME="log_session", SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=secure_cookies,
        WTF_CSRF_TIME_LIMIT=None, MAX_CONTENT_LENGTH=64 * 1024)
    app.extensions["infoshare_log_site"] = site
    app.extensions["infoshare_log_sessions"] = Sessions()
    CSRFProtect(app)
    for bp in (tlog.bp, api.bp, pages.bp):
        app.register_blueprint(bp)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(api.openapi_document())

    @app.after_request
    def headers(response: Response) -> Response:
        # Method, path, status and the token's id: seq numbers and ids at most, never a
        # token or a name.
        request_log.info("%s %s %s %s", request.method, request.path, response.status_code,
                         getattr(g.get("reader"), "ref", "-"))
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if not _machine_path():
            response.headers.setdefault("Content-Security-Policy", _CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(Refused)
    def refused(e: Refused) -> Response | tuple[str, int]:
        return _error(e.status, str(e), e.retry_after)

    @app.errorhandler(CSRFError)
    def csrf(e: CSRFError) -> Response | tuple[str, int]:
        return _error(400, "the form was not sent from these pages; reload the page and "
                      "try again")

    @app.errorhandler(HTTPException)
    def http(e: HTTPException) -> Response | tuple[str, int]:
        status = e.code or 500
        message = e.description or e.name
        r = _error(status, message)
        if status == 405 and isinstance(r, Response):
            r.headers["Allow"] = e.get_response().headers.get("Allow", "GET")
        return r

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Response | tuple[str, int]:
        logging.getLogger("audit.web").exception("unexpected error on %s", request.path)
        return _error(500, "the log server failed on this request; its log says where")

    return app


def _machine_path() -> bool:
    p = request.path
    return p.startswith(("/api/", "/tile/")) or p in ("/checkpoint", "/openapi.json")


def _error(status: int, message: str, retry_after: int | None = None
           ) -> Response | tuple[str, int]:
    if _machine_path():
        r = jsonify({"code": _CODES.get(status, "error"), "message": message})
        r.status_code = status
        if status == 401:
            r.headers["WWW-Authenticate"] = 'Bearer realm="infoshare transfer log"'
        if retry_after is not None:
            r.headers["Retry-After"] = str(retry_after)
        return r
    page: Any = render_template("error.html", status=status, message=message)
    return page, status
