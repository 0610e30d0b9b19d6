"""Serving the registry with gunicorn, over HTTP or HTTPS, through gunicorn's Python API.

Each worker builds its own app (and opens the registry key with the
passphrase from the environment); the authentication throttle therefore
counts per worker. Once gunicorn listens, one line says where, so a script
that asked for port 0 can read the port it got::

    registry listening on https://127.0.0.1:40123
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from registry.datadir import DataDir


class GunicornApp(BaseApplication):  # type: ignore[misc]
    """A WSGI app from ``app_factory`` run by gunicorn with ``options`` (its settings);
    the log server runs the same way."""

    def __init__(self, app_factory: Callable[[], Any], options: dict[str, Any]) -> None:
        self._factory = app_factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key.lower(), value)

    def load(self) -> Any:
        return self._factory()


def listening_address(server: Any, scheme: str) -> str:
    """The address a started gunicorn listens on, port and all."""
    host, port = server.LISTENERS[0].sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def serve(data_dir: DataDir, *, host: str, port: int, workers: int, threads: int = 4,
          certfile: Path | None = None, keyfile: Path | None = None) -> None:
    """Run gunicorn in the foreground until it is stopped."""
    from registry.app import create_app

    config: dict[str, Any] = {"REGISTRY_DATA_DIR": str(data_dir.path),
                              "REGISTRY_DATABASE_URL": data_dir.url_override}
    if certfile is not None:
        config["SESSION_COOKIE_SECURE"] = True

    def factory() -> Any:
        return create_app(config)

    scheme = "https" if certfile is not None else "http"

    def when_ready(server: Any) -> None:
        # The one line a script reads to learn the port it got.
        print(f"registry listening on {listening_address(server, scheme)}", flush=True)

    # Build once up front so a wrong passphrase or a missing directory fails
    # here with a message, not in every worker.
    factory()
    GunicornApp(factory, {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers, "threads": threads,
        "worker_class": "gthread", "accesslog": None, "errorlog": "-",
        "proc_name": "infoshare-registry", "timeout": 30, "graceful_timeout": 10,
        "certfile": None if certfile is None else str(certfile),
        "keyfile": None if keyfile is None else str(keyfile),
        "when_ready": when_ready,
    }).run()
    sys.stdout.flush()
