"""A real exchange for the auditors' pages: RabbitMQ, a registry, a router, the log server.

The session's RabbitMQ node carries a vhost of this module's own; the router
reads its directories from a registry served over HTTP; ``infoshare log serve``
serves the router's log as an operator runs it, checking tokens with that
registry.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from audited import Audited
from auditing_world import exchange, served_registry, serving
from router_world import ORIGIN, remove_vhost, running_world

from broker.node import RabbitNode
from broker.topology import Credentials, ManagementAPI
from keys import NoteSigner
from protocols.loader import load_protocol_file

VHOST = "infoshare-test-audit-pages"
WY_FILE = Path(__file__).resolve().parents[3] / "protocols" / "definitions" / \
    "west-yorkshire-iisp-2016.yaml"


@pytest.fixture(scope="module")
def audited(rabbit_node: RabbitNode, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Audited]:
    base = tmp_path_factory.mktemp("auditing")
    home = base / "auditor"
    home.mkdir()
    management = ManagementAPI(rabbit_node.management_url, "guest", "guest")
    management.delete(f"/api/vhosts/{VHOST}")  # left over by an interrupted run
    credentials = Credentials(base / "credentials.json")
    log_path = base / "transfer-log.db"
    try:
        with served_registry(base) as registry, running_world(
                management_url=rabbit_node.management_url,
                amqp_base=f"amqp://{rabbit_node.config.host}:{rabbit_node.config.amqp_port}",
                wy_protocol=load_protocol_file(WY_FILE), credentials=credentials,
                vhost=VHOST, log_path=log_path, registry=registry.feed) as world:
            ids = exchange(world)
            # What the auditor was handed: their token, the log key, the registry key.
            (home / "log-key.txt").write_text(
                NoteSigner(ORIGIN, world.broker_key).verifier.line() + "\n")
            shutil.copy(registry.key_file, home / "registry-key.pub")
            for role in ("auditor", "agency"):
                (home / f"{role}.token").write_text(registry.tokens[role] + "\n")
                (home / f"{role}.token").chmod(0o600)
            with serving(["log", "serve", "--log", str(log_path),
                          "--log-key", str(home / "log-key.txt"), "--registry", registry.url,
                          "--registry-key", str(registry.key_file),
                          "--index", str(base / "log-index.sqlite"), "--port", "0"]) as url:
                yield Audited(url, registry, world, ids, home)
    finally:
        remove_vhost(management, VHOST, credentials)
