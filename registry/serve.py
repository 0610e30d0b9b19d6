"""Serving the registry with gunicorn, through its Python API.

Each worker builds its own app (and opens the registry key with the
passphrase from the environment); the failed-authentication throttle is
therefore per worker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication


class RegistryServer(BaseApplication):  # type: ignore[misc]
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


def serve(data_dir: Path, *, host: str, port: int, workers: int, threads: int = 4) -> None:
    """Run gunicorn in the foreground until it is stopped."""
    from registry.app import create_app

    def factory() -> Any:
        return create_app({"REGISTRY_DATA_DIR": str(data_dir)})

    # Build once up front so a wrong passphrase or a missing directory fails
    # here with a message, not in every worker.
    factory()
    RegistryServer(factory, {
        "bind": f"{host}:{port}", "workers": workers, "threads": threads,
        "worker_class": "gthread", "accesslog": None, "errorlog": "-",
        "proc_name": "infoshare-registry", "timeout": 30, "graceful_timeout": 10,
    }).run()
