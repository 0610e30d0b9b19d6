"""The registry's Flask application: REST API, web pages and the OpenAPI document.

``create_app(config)`` takes either a ready :class:`~registry.store.Store`
(``REGISTRY_STORE``, with ``SECRET_KEY``) or a data directory
(``REGISTRY_DATA_DIR``; the key's passphrase comes from the environment).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, request

from protocols.directory import format_time
from registry import api, web
from registry.datadir import DataDir, passphrase_from_env
from registry.extension import Registry, init_app
from registry.http_errors import register_error_handlers
from registry.openapi import openapi_document
from registry.store import Store
from registry.throttle import FailureThrottle
from registry.web.csrf import check_csrf, csrf_token
from registry.web.signin import current_user

request_log = logging.getLogger("registry.requests")

DEFAULTS: dict[str, Any] = {
    # A protocol file is at most 1 MiB; JSON quoting can nearly double it.
    "MAX_CONTENT_LENGTH": 3 * 1024 * 1024,
    "MAX_FORM_MEMORY_SIZE": 3 * 1024 * 1024,
    "SESSION_COOKIE_NAME": "registry_session",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    # Behind TLS set SESSION_COOKIE_SECURE = True; the default serves loopback HTTP.
    "SESSION_COOKIE_SECURE": False,
    "PERMANENT_SESSION_LIFETIME": 8 * 3600,
    "REGISTRY_AUTH_FAILURE_LIMIT": 5,
    "REGISTRY_AUTH_FAILURE_WINDOW": 60.0,
    "REGISTRY_THROTTLE_CLOCK": time.monotonic,
}


def _store_from(config: Mapping[str, Any]) -> tuple[Store, str | None]:
    store = config.get("REGISTRY_STORE")
    if isinstance(store, Store):
        return store, None
    data_dir = config.get("REGISTRY_DATA_DIR")
    if data_dir is None:
        raise ValueError("give REGISTRY_STORE or REGISTRY_DATA_DIR")
    dd = DataDir(Path(data_dir))
    store = Store(dd.database_url, signing_key=dd.signing_key(passphrase_from_env()))
    return store, dd.session_secret()


def _wire_time(t: datetime | None) -> str:
    return "—" if t is None else format_time(t)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the registry app.

    Raises:
        RegistryError: the data directory cannot be opened (missing, wrong passphrase).
    """
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    store, secret = _store_from(app.config)
    if secret is not None and not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret
    if not app.config.get("SECRET_KEY"):
        raise ValueError("a SECRET_KEY is needed for the web pages' sessions")
    throttle = FailureThrottle(limit=int(app.config["REGISTRY_AUTH_FAILURE_LIMIT"]),
                               window=float(app.config["REGISTRY_AUTH_FAILURE_WINDOW"]),
                               clock=app.config["REGISTRY_THROTTLE_CLOCK"])
    init_app(app, Registry(store=store, throttle=throttle))

    for bp in api.blueprints():
        app.register_blueprint(bp)
    for bp in web.blueprints():
        app.register_blueprint(bp)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_document())

    @app.before_request
    def guard_forms() -> None:
        # Every POST to a page carries the session's CSRF token; the API uses
        # bearer tokens and no cookies, so it is not exposed to CSRF.
        if request.method == "POST" and not request.path.startswith("/api/"):
            check_csrf()

    @app.after_request
    def log_request(response: Response) -> Response:
        # Method, path (ids only), status and the token's id: never a secret or a body.
        request_log.info("%s %s %s token=%s", request.method, request.path,
                         response.status_code, g.get("token_id", "-"))
        if not request.path.startswith("/api/") and request.path != "/openapi.json":
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Content-Security-Policy",
                                        "default-src 'self'; frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    app.jinja_env.globals.update(csrf_token=csrf_token, current_user=current_user)
    app.jinja_env.filters["wire_time"] = _wire_time
    register_error_handlers(app)
    return app
