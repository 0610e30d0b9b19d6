"""The gateway's Flask application: API for case systems, pages for people, OpenAPI.

``create_app(gateway, secret_key)`` takes a ready :class:`Gateway`; the
command ``infoshare agency serve`` builds one from the gateway's home.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, jsonify, request
from flask_wtf.csrf import CSRFProtect

from agency.gateway.api import api
from agency.gateway.auth import Authenticator, LocalAccounts
from agency.gateway.http import register_error_handlers
from agency.gateway.openapi import openapi_document
from agency.gateway.pages import account, pages
from agency.gateway.service import STATUS_WORDS, Gateway
from protocols.directory import format_time

__all__ = ["create_app"]

request_log = logging.getLogger("infoshare.gateway.requests")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def create_app(gateway: Gateway, secret_key: str, *,
               authenticator: Authenticator | None = None,
               config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        SESSION_COOKIE_NAME="gateway_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=8 * 3600,
        WTF_CSRF_TIME_LIMIT=8 * 3600,
    )
    app.config.update(config or {})
    app.extensions["gateway"] = gateway
    app.extensions["gateway_auth"] = authenticator or LocalAccounts(gateway.store)
    csrf = CSRFProtect()
    csrf.exempt(api)  # bearer tokens, no cookies: not exposed to CSRF
    csrf.init_app(app)
    app.register_blueprint(api)
    app.register_blueprint(pages)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_document())

    @app.after_request
    def headers(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule else "-"
        request_log.info("%s %s %s system=%s", request.method, rule, response.status_code,
                         getattr(g.get("case_system"), "id", "-"))
        if not request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    app.jinja_env.globals.update(current_account=account, org=gateway.org)
    app.jinja_env.filters["wire_time"] = format_time
    app.jinja_env.filters["status_words"] = lambda s: STATUS_WORDS.get(s, s)
    register_error_handlers(app)
    return app
