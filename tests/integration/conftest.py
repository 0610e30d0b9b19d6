"""Fixtures for the broker's integration tests: the management API, vhosts, AMQP connections.

Each test module provisions its own vhost on the session's node and removes it
(and the users only it used) at the end. RabbitMQ users are node-wide, so
modules that provision the same unit users run one after the other, each
re-setting the passwords from its own credentials file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingConnection
from router_world import remove_vhost

from broker.node import RabbitNode
from broker.topology import Credentials, ManagementAPI, amqp_url_for
from protocols.loader import ProtocolFile, load_protocol_file

WY_PROTOCOL = (Path(__file__).resolve().parents[2] / "protocols" / "definitions"
               / "west-yorkshire-iisp-2016.yaml")

Connect = Callable[[str, str, str], BlockingConnection]


@pytest.fixture(scope="session")
def management(rabbit_node: RabbitNode) -> ManagementAPI:
    """The management API as the node's administrator (guest, loopback only)."""
    return ManagementAPI(rabbit_node.management_url, "guest", "guest")


@pytest.fixture(scope="session")
def amqp_base(rabbit_node: RabbitNode) -> str:
    """The node's AMQP URL without credentials or vhost, as a deployment file holds it."""
    return f"amqp://{rabbit_node.config.host}:{rabbit_node.config.amqp_port}"


@pytest.fixture(scope="session")
def wy_protocol() -> ProtocolFile:
    return load_protocol_file(WY_PROTOCOL)


@pytest.fixture
def connect(amqp_base: str) -> Iterator[Connect]:
    """``connect(user, password, vhost)``: a blocking connection, closed after the test."""
    opened: list[BlockingConnection] = []

    def _connect(user: str, password: str, vhost: str) -> BlockingConnection:
        params = pika.URLParameters(amqp_url_for(amqp_base, user, password, vhost))
        params.socket_timeout = 10
        params.blocked_connection_timeout = 10
        params.connection_attempts = 1
        conn = BlockingConnection(params)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        if conn.is_open:
            # Some were closed by the server meanwhile (a deleted user, vhost).
            with contextlib.suppress(pika.exceptions.AMQPError):
                conn.close()


@pytest.fixture(scope="module")
def vhost_factory(management: ManagementAPI,
                  tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Callable[[str], Credentials]]:
    """``vhost_factory(name)``: a credentials file for a vhost removed after the module."""
    made: list[tuple[str, Credentials]] = []

    def _make(vhost: str) -> Credentials:
        management.delete(f"/api/vhosts/{vhost}")  # left over by an interrupted run
        credentials = Credentials(tmp_path_factory.mktemp(vhost) / "credentials.json")
        made.append((vhost, credentials))
        return credentials

    yield _make
    # All vhosts first: a user shared by two of them is then free to go.
    for vhost, credentials in made:
        remove_vhost(management, vhost, credentials)
    for _, credentials in made:
        remove_vhost(management, "", credentials)
