"""The session's private RabbitMQ node behaves like a real broker."""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pika
import pytest
from click.testing import CliRunner
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from broker.node import RabbitNode
from broker.node_cli import node as node_cli
from protocols.envelope import MAX_BODY_BYTES

pytestmark = pytest.mark.integration

PERSISTENT = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)


@pytest.fixture
def connection(amqp_url: str) -> Iterator[BlockingConnection]:
    params = pika.URLParameters(amqp_url)
    params.blocked_connection_timeout = 10
    params.socket_timeout = 10
    conn = BlockingConnection(params)
    yield conn
    if conn.is_open:
        conn.close()


@pytest.fixture
def queue(connection: BlockingConnection) -> Iterator[str]:
    """A fresh durable classic queue, deleted afterwards."""
    name = f"test.{uuid.uuid4().hex}"
    channel = connection.channel()
    channel.queue_declare(name, durable=True)
    yield name
    if connection.is_open:
        connection.channel().queue_delete(name)


def _depth(connection: BlockingConnection, queue: str) -> int:
    channel = connection.channel()
    count: int = channel.queue_declare(queue, passive=True).method.message_count
    channel.close()
    return count


def _confirming_channel(connection: BlockingConnection) -> BlockingChannel:
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


def test_the_node_refuses_a_body_over_the_wire_limit(
    connection: BlockingConnection, queue: str, rabbit_node: RabbitNode
) -> None:
    # Wire spec 2: a whole AMQP body is at most 16 MiB. At the limit it passes...
    publisher = _confirming_channel(connection)
    publisher.basic_publish("", queue, b" " * MAX_BODY_BYTES, PERSISTENT, mandatory=True)
    # ...one byte more and the node closes the channel before storing it.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        publisher.basic_publish("", queue, b" " * (MAX_BODY_BYTES + 1), PERSISTENT,
                                mandatory=True)
    assert refused.value.reply_code == 406
    assert f"larger than configured max size {MAX_BODY_BYTES}" in refused.value.reply_text
    assert _depth(connection, queue) == 1
    got = rabbit_node.ctl("eval", "application:get_env(rabbit, max_message_size).")
    assert got.stdout.strip() == f"{{ok,{MAX_BODY_BYTES}}}"


def test_confirmed_persistent_messages_are_consumed_with_manual_acks(
    connection: BlockingConnection, queue: str
) -> None:
    sent = [f"message {i}".encode() for i in range(100)]
    publisher = _confirming_channel(connection)
    for body in sent:
        # With confirms on, this returns only once the broker has the message
        # (and raises UnroutableError / NackError otherwise).
        publisher.basic_publish("", queue, body, PERSISTENT, mandatory=True)
    assert _depth(connection, queue) == len(sent)

    received: list[bytes] = []
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=10)

    def on_message(
        ch: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        props: pika.BasicProperties,
        body: bytes,
    ) -> None:
        assert props.delivery_mode == pika.DeliveryMode.Persistent.value
        assert not method.redelivered
        received.append(body)
        ch.basic_ack(method.delivery_tag)

    consumer.basic_consume(queue, on_message, auto_ack=False)
    deadline = time.monotonic() + 20
    while len(received) < len(sent) and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.2)
    consumer.close()

    assert received == sent
    # Had the acks not reached the broker, closing the channel would requeue.
    assert _depth(connection, queue) == 0


def test_mandatory_publish_that_no_queue_takes_is_returned(
    connection: BlockingConnection,
) -> None:
    publisher = _confirming_channel(connection)
    with pytest.raises(pika.exceptions.UnroutableError):
        publisher.basic_publish("", f"nowhere.{uuid.uuid4().hex}", b"x", PERSISTENT, mandatory=True)


def test_unacked_message_comes_back_redelivered_after_channel_closes(
    connection: BlockingConnection, queue: str
) -> None:
    _confirming_channel(connection).basic_publish("", queue, b"hello", PERSISTENT, mandatory=True)

    first = connection.channel()
    method, _, body = first.basic_get(queue, auto_ack=False)
    assert method is not None and body == b"hello"
    assert not method.redelivered
    first.close()  # without an ack

    second = connection.channel()
    method, _, body = second.basic_get(queue, auto_ack=False)
    assert method is not None, "the unacked message was lost"
    assert body == b"hello"
    assert method.redelivered
    second.basic_ack(method.delivery_tag)
    second.close()
    assert _depth(connection, queue) == 0


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port``, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                local, _, state = line.split()[1:4]
                address, hex_port = local.split(":")
                if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                if len(address) == 8:
                    found.add(str(ipaddress.IPv4Address(bytes.fromhex(address)[::-1])))
                else:
                    found.add(f"IPv6 {address}")
    return found


def _get_json(url: str, auth: bool = True) -> object:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_management_api_answers_for_this_node_on_loopback_only(
    rabbit_node: RabbitNode, management_url: str, queue: str
) -> None:
    overview = _get_json(f"{management_url}/api/overview")
    assert isinstance(overview, dict)
    assert overview["node"] == rabbit_node.nodename
    ports = {(lst["protocol"], lst["port"]) for lst in overview["listeners"]}
    config = rabbit_node.config
    assert ports == {
        ("amqp", config.amqp_port),
        ("http", config.management_port),
        ("clustering", config.dist_port),
    }
    # The API reports the management listener as "::" whatever it is bound
    # to, so ask the kernel what actually listens.
    for port in (config.amqp_port, config.management_port, config.dist_port):
        assert _listening_addresses(port) == {"127.0.0.1"}, port

    info = _get_json(f"{management_url}/api/queues/%2F/{queue}")
    assert isinstance(info, dict) and info["durable"] is True

    with pytest.raises(urllib.error.HTTPError) as refused:
        _get_json(f"{management_url}/api/overview", auth=False)
    assert refused.value.code == 401


def test_state_file_lets_another_process_find_the_node(rabbit_node: RabbitNode) -> None:
    found = RabbitNode.from_state(rabbit_node.data_dir)
    assert found.pid() == rabbit_node.pid() is not None
    assert found.is_running()
    assert found.amqp_url == rabbit_node.amqp_url

    result = CliRunner().invoke(node_cli, ["status", "--home", str(rabbit_node.data_dir)])
    assert result.exit_code == 0, result.output
    # The URL as clients are configured with it: no user, password or vhost.
    assert f"AMQP:       {rabbit_node.url}\n" in result.output
    assert "guest" not in result.output
    assert f"pid {rabbit_node.pid()}" in result.output
