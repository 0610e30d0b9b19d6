"""Fixtures for the broker host's tests: a RabbitMQ node speaking only TLS, a served registry.

* ``tls_node``: a private node of its own (AMQPS and HTTPS management only),
  with the session CA's certificate for 127.0.0.1 and an administrator of its
  own (``node.config.admin_user``, ``admin_password``) instead of guest.
* ``served_registry``: a registry on SQLite with the West Yorkshire protocol,
  served over real HTTP from a thread, with an agency token and its public
  key file, for the broker's commands to read.
* ``infoshare``: runs the ``infoshare`` command in a child process, as an
  operator would, and returns what it printed and its exit status.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from operator_tools import INFOSHARE, Run, ServedRegistry
from private_nodes import private_node
from werkzeug.serving import make_server

from broker.node import NodeTls, RabbitNode
from keys import SigningKeyPair, write_public_key
from registry.app import create_app
from registry.store import Store

WY_PROTOCOL = (Path(__file__).resolve().parents[3] / "protocols" / "definitions"
               / "west-yorkshire-iisp-2016.yaml")



@pytest.fixture(scope="session")
def tls_node(tls_server_files: object,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    files = tls_server_files
    tls = NodeTls(cert=files.cert, key=files.key, ca=files.ca)  # type: ignore[attr-defined]
    with private_node(tmp_path_factory.mktemp("rabbit-tls"), "infoshare-tls", tls=tls,
                      admin_user="infoshare-admin") as node:
        yield node


@pytest.fixture(scope="module")
def served_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedRegistry]:
    directory = tmp_path_factory.mktemp("registry")
    key = SigningKeyPair.generate()
    store = Store(f"sqlite:///{directory / 'registry.sqlite3'}", signing_key=key)
    store.initialise(actor="test:setup")
    store.load_protocol(WY_PROTOCOL.read_text(encoding="utf-8"), actor="test:setup")
    _, token = store.create_token("agency", "broker", actor="test:setup")
    write_public_key(directory / "registry-key.pub", key.public)
    app = create_app({"REGISTRY_STORE": store, "SECRET_KEY": "test-session-secret"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ServedRegistry(f"http://127.0.0.1:{server.server_port}", store,
                             directory / "registry-key.pub", token)
    finally:
        server.shutdown()
        thread.join(timeout=5)
        store.close()


@pytest.fixture
def infoshare(tmp_path: Path) -> Run:
    """``infoshare(*args, env={...})``: the command in a child process, in ``tmp_path``."""

    def run(*args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([INFOSHARE, *args], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)

    return run
