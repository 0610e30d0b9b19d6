"""Serving a gateway with gunicorn (one worker process, threads), HTTPS with a cert and key.

The one worker also runs the courier (publishing, receiving, folders): one
process owns the AMQP connections and the folder moves, so nothing is sent
twice by two processes. Threads serve requests concurrently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.serve import GunicornApp


def serve(home: Path, secret: bytes, url: str | None, *, host: str, port: int, threads: int,
          certfile: Path | None = None, keyfile: Path | None = None) -> None:
    """Run the gateway in the foreground until SIGTERM or SIGINT."""
    from agency.gateway.app import create_app
    from agency.gateway.home import GatewayHome
    from agency.gateway.runtime import open_gateway

    # Opened once here so a wrong passphrase or a missing home fails with a message.
    gateway, _ = open_gateway(home, secret, url)
    gateway.close()
    couriers: list[Any] = []

    def factory() -> Any:
        gw, courier = open_gateway(home, secret, url)
        courier.start()
        couriers.append(courier)
        return create_app(gw, GatewayHome(home).session_secret(),
                          config={"SESSION_COOKIE_SECURE": certfile is not None})

    def worker_exit(_server: Any, _worker: Any) -> None:
        for c in couriers:
            c.stop()

    GunicornApp(factory, {
        "bind": f"{host}:{port}", "workers": 1, "threads": threads,
        "worker_class": "gthread", "accesslog": None, "errorlog": "-",
        "proc_name": "infoshare-gateway", "timeout": 60, "graceful_timeout": 10,
        "certfile": str(certfile) if certfile else None,
        "keyfile": str(keyfile) if keyfile else None, "worker_exit": worker_exit,
    }).run()
