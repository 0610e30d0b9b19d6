"""AMQP over TLS: a node that speaks only AMQPS, and clients that verify it against a CA file.

A referral goes through a real router over AMQPS: the sender publishes, the
router (connected with TLS) decides, logs and delivers, and the recipient
takes it from its inbox, every connection verified against the session CA.
A client given another CA is refused, with one line saying why.
"""

from __future__ import annotations

import contextlib
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
import trustme
from envelope_factories import FRONT_DOOR, POLICE, T0, referral, world
from pika.adapters.blocking_connection import BlockingConnection

from broker.connection import check_reachable, connection_parameters
from broker.errors import ConnectionFailed, TopologyError
from broker.node import RabbitNode
from broker.router import DirectoryHolder, Router
from broker.topology import (
    BROKER_USER,
    Credentials,
    ManagementAPI,
    amqp_url_for,
    inbox_name,
    provision,
)
from broker.transfer_log import TransferLog
from keys import NoteSigner
from protocols.model import amqp_user

pytestmark = pytest.mark.integration

VHOST = "infoshare-test-tls"


def _admin(node: RabbitNode) -> tuple[str, str]:
    return node.config.admin_user, node.config.admin_password


@pytest.fixture
def other_ca(tmp_path: Path) -> Path:
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def credentials(tls_node: RabbitNode, tls_server_files: object,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Credentials]:
    ca = tls_server_files.ca  # type: ignore[attr-defined]
    creds = Credentials(tmp_path_factory.mktemp("tls-credentials") / "credentials.json")
    provision(tls_node.management_url, *_admin(tls_node), world().directory, creds,
              vhost=VHOST, tls_ca=ca)
    yield creds
    # Users are node-wide: the broker's tests provision the same names.
    api = ManagementAPI(tls_node.management_url, *_admin(tls_node), tls_ca=ca)
    api.delete(f"/api/vhosts/{VHOST}")
    for user in creds.users():
        api.delete(f"/api/users/{user}")


def _connect(node: RabbitNode, creds: Credentials, unit: str, ca: Path) -> BlockingConnection:
    user = amqp_user(unit)
    url = amqp_url_for(node.url, user, creds.password(user), VHOST)
    return BlockingConnection(connection_parameters([url], tls_ca=ca))


def test_a_referral_goes_through_a_router_over_amqps(
        tls_node: RabbitNode, tls_server_files: object, credentials: Credentials,
        tmp_path: Path) -> None:
    ca = tls_server_files.ca  # type: ignore[attr-defined]
    w = world()
    log = TransferLog.open(f"sqlite:///{tmp_path / 'log.db'}",
                           signer=NoteSigner("test.example/tls-log", w.broker), origin="x")
    router = Router(
        amqp_url=[amqp_url_for(tls_node.url, BROKER_USER, credentials.password(BROKER_USER),
                               VHOST)],
        tls_ca=ca, transfer_log=log, directory=DirectoryHolder(lambda: w.directory),
        broker_key=w.broker, clock=lambda: T0)
    thread = threading.Thread(target=router.run, daemon=True)
    thread.start()
    try:
        assert router.ready.wait(30), "the router did not connect over AMQPS"
        body, env = referral(w)
        with contextlib.closing(_connect(tls_node, credentials, POLICE, ca)) as conn:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.basic_publish("infoshare.submit", POLICE, body, pika.BasicProperties(
                user_id=amqp_user(POLICE), delivery_mode=2, content_type="application/json",
                type="envelope", message_id=env.header.message_id), mandatory=True)
        with contextlib.closing(_connect(tls_node, credentials, FRONT_DOOR, ca)) as conn:
            ch = conn.channel()
            deadline = time.monotonic() + 30
            method = None
            while method is None and time.monotonic() < deadline:
                method, props, received = ch.basic_get(inbox_name(FRONT_DOOR), auto_ack=True)
                if method is None:
                    time.sleep(0.05)
        assert method is not None, "nothing arrived in the recipient's inbox"
        assert received == body
        assert props.headers["infoshare-seq"] == 0
    finally:
        router.stop()
        thread.join(timeout=30)
        log.close()
    entries = list(TransferLog.open(f"sqlite:///{tmp_path / 'log.db'}", signer=None,
                                    origin="x").entries())
    assert len(entries) == 1 and b'"decision":"routed"' in entries[0]


def test_a_client_with_another_ca_is_refused_in_one_line(
        tls_node: RabbitNode, credentials: Credentials, other_ca: Path) -> None:
    url = amqp_url_for(tls_node.url, BROKER_USER, credentials.password(BROKER_USER), VHOST)
    with pytest.raises(ConnectionFailed) as refused:
        check_reachable(connection_parameters([url], tls_ca=other_ca))
    message = str(refused.value)
    assert "\n" not in message
    assert message == (f"RabbitMQ unreachable (127.0.0.1:{tls_node.config.amqp_port}: "
                       "its TLS certificate is not signed by the configured CA)")
    assert credentials.password(BROKER_USER) not in message


def test_the_management_api_is_verified_too(tls_node: RabbitNode, other_ca: Path) -> None:
    with pytest.raises(TopologyError, match="not signed by the configured CA"):
        ManagementAPI(tls_node.management_url, *_admin(tls_node), tls_ca=other_ca).get(
            "/api/overview")


def test_the_node_has_no_plain_amqp_listener(tls_node: RabbitNode,
                                             tls_server_files: object) -> None:
    plain = tls_node.url.replace("amqps://", "amqp://") + "/%2F"
    with pytest.raises(ConnectionFailed, match="is this an amqps:// port"):
        check_reachable(connection_parameters([plain]))
    listeners = ManagementAPI(tls_node.management_url, *_admin(tls_node),
                              tls_ca=tls_server_files.ca).get(  # type: ignore[attr-defined]
        "/api/overview")["listeners"]
    assert {entry["protocol"] for entry in listeners} == {"amqp/ssl", "https", "clustering"}


def test_the_node_has_its_own_administrator_and_no_guest(tls_node: RabbitNode,
                                                         tls_server_files: object) -> None:
    ca = tls_server_files.ca  # type: ignore[attr-defined]
    api = ManagementAPI(tls_node.management_url, *_admin(tls_node), tls_ca=ca)
    assert api.get("/api/users/guest") is None
    assert api.get("/api/whoami")["name"] == "infoshare-admin"
    with pytest.raises(TopologyError, match="HTTP 401"):
        ManagementAPI(tls_node.management_url, "guest", "guest", tls_ca=ca).get(
            "/api/overview")
    config = (tls_node.data_dir / "rabbitmq.conf")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls_node.data_dir.stat().st_mode) == 0o700
