"""The registry's Flask application: REST API, web pages and the OpenAPI document.

``create_app(config)`` takes either a ready :class:`~registry.store.Store`
(``REGISTRY_STORE``, with ``SECRET_KEY``) or a data directory
(``REGISTRY_DATA_DIR``; the key's passphrase comes from the environment).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, request
from flask_wtf.csrf import CSRFProtect

from protocols.directory import format_time
from registry import api, web
from registry.datadir import DataDir, passphrase_from_env
from registry.extension import Registry, init_app
from registry.http_errors import register_error_handlers
from registry.openapi import openapi_document
from registry.routing import VersionConverter
from registry.store import Store
from registry.throttle import install_throttle
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
    # A form's CSRF token lasts as long as the session it belongs to.
    "WTF_CSRF_TIME_LIMIT": 8 * 3600,
    "REGISTRY_AUTH_FAILURE_LIMIT": 10,
    "REGISTRY_AUTH_FAILURE_WINDOW": 60,
}

#: Pages use nothing of the browser's but forms, links and one style sheet.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=(), "
                          "serial=(), bluetooth=(), clipboard-read=(), interest-cohort=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _store_from(config: Mapping[str, Any]) -> tuple[Store, str | None]:
    store = config.get("REGISTRY_STORE")
    if isinstance(store, Store):
        return store, None
    data_dir = config.get("REGISTRY_DATA_DIR")
    if data_dir is None:
        raise ValueError("give REGISTRY_STORE or REGISTRY_DATA_DIR")
    dd = DataDir(Path(data_dir), config.get("REGISTRY_DATABASE_URL"))
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
    store.ensure_session_table()
    init_app(app, Registry(store=store))
    app.url_map.converters["version"] = VersionConverter

    api_blueprints = api.blueprints()
    web_blueprints = web.blueprints()
    for bp in [*api_blueprints, *web_blueprints]:
        app.register_blueprint(bp)
    # Every page form carries a CSRF token (Flask-WTF); the API takes bearer
    # tokens and no cookies, so it is not exposed to CSRF.
    csrf = CSRFProtect(app)
    for bp in api_blueprints:
        csrf.exempt(bp)
    install_throttle(app, [*api_blueprints, *web_blueprints],
                     limit=int(app.config["REGISTRY_AUTH_FAILURE_LIMIT"]),
                     window=int(app.config["REGISTRY_AUTH_FAILURE_WINDOW"]))

    document = openapi_document(app)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(document)

    @app.after_request
    def log_request(response: Response) -> Response:
        # Method, path (ids only), status and the token's id: never a secret or a body.
        request_log.info("%s %s %s token=%s", request.method, request.path,
                         response.status_code, g.get("token_id", "-"))
        # Nothing the registry answers is for a cache: API answers may carry a
        # token's secret, pages show who is signed in.
        response.headers["Cache-Control"] = "no-store"
        if not request.path.startswith("/api/") and request.path != "/openapi.json":
            for name, value in PAGE_HEADERS.items():
                response.headers.setdefault(name, value)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    app.jinja_env.globals.update(current_user=current_user)
    app.jinja_env.filters["wire_time"] = _wire_time
    register_error_handlers(app)
    return app
