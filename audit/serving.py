"""Serving a :class:`~audit.web.site.LogSite` with gunicorn, like the registry.

One worker process (the index and the page sessions live in it) with
several threads. The index is built in the master before the worker starts,
so a log that cannot be read or does not verify is known before the first
request, and the worker inherits the verified index.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit.web.app import create_app
from audit.web.site import LogSite
from registry.serve import GunicornApp, listening_address


def serve(site: LogSite, *, host: str, port: int, threads: int, certfile: Path | None = None,
          keyfile: Path | None = None, announce: Callable[[str], None] | None = None) -> None:
    """Run gunicorn in the foreground until it is stopped (SIGTERM or Ctrl-C)."""
    scheme = "https" if certfile is not None else "http"

    def when_ready(server: Any) -> None:
        url = listening_address(server, scheme)
        # The one line a script reads to learn the port it got.
        print(f"serving on {url}", flush=True)
        if announce is not None:
            announce(url)

    def load() -> Any:
        site.index.forget_connections()  # a connection must not cross a fork
        return create_app(site, secure_cookies=certfile is not None)

    sys.stdout.flush()
    GunicornApp(load, {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": 1, "threads": threads, "worker_class": "gthread",
        "accesslog": None, "errorlog": "-", "loglevel": "warning",
        "proc_name": "infoshare-log", "timeout": 120, "graceful_timeout": 10,
        "certfile": None if certfile is None else str(certfile),
        "keyfile": None if keyfile is None else str(keyfile),
        "when_ready": when_ready,
    }).run()
