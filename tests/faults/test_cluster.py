"""A quorum queue on a 3-node cluster keeps every confirmed message when a node is killed."""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator

import pika
import pytest
from pika.adapters.blocking_connection import BlockingConnection

from broker.node import NodeError, RabbitNode, start_cluster, stop_all
from protocols.envelope import MAX_BODY_BYTES

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MESSAGES = 300


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RabbitNode]]:
    base = tmp_path_factory.mktemp("cluster")
    try:
        nodes = start_cluster(base, 3, name=f"infoshare-cluster-{os.getpid()}")
    except NodeError as e:
        pytest.fail(f"could not start a 3-node RabbitMQ cluster:\n{e}", pytrace=False)
    try:
        yield nodes
    finally:
        stop_all(nodes)
        shutil.rmtree(base, ignore_errors=True)


def _connect(node: RabbitNode) -> BlockingConnection:
    params = pika.URLParameters(node.amqp_url)
    params.socket_timeout = 5
    params.blocked_connection_timeout = 10
    params.connection_attempts = 1
    return BlockingConnection(params)


def _members(node: RabbitNode, queue: str) -> set[str]:
    info = node.management_get(f"/api/queues/%2F/{queue}")
    return set(info.get("members", []))


def test_quorum_queue_survives_kill_9_of_its_leader(cluster: list[RabbitNode]) -> None:
    leader, *survivors = cluster
    assert len({n.config.amqp_port for n in cluster}) == 3
    # Every node of the cluster enforces the wire limit on a body (16 MiB).
    for node in cluster:
        got = node.ctl("eval", "application:get_env(rabbit, max_message_size).")
        assert got.stdout.strip() == f"{{ok,{MAX_BODY_BYTES}}}", got.stdout + got.stderr
    queue = f"faults.{uuid.uuid4().hex}"
    sent = {f"message {i}".encode() for i in range(MESSAGES)}

    conn = _connect(leader)
    channel = conn.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.confirm_delivery()
    for body in sorted(sent):
        channel.basic_publish(
            "",
            queue,
            body,
            pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
            mandatory=True,
        )
    conn.close()

    # The queue is declared through node 1, so its leader is there; check it
    # is replicated on all three nodes before killing that node.
    assert _members(leader, queue) == {n.nodename for n in cluster}
    pid = leader.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while leader.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leader.pid() is None, "the node survived kill -9"

    received = _drain(survivors[0], queue, deadline=time.monotonic() + 60)
    assert received == sent


def _drain(node: RabbitNode, queue: str, *, deadline: float) -> set[bytes]:
    """Consume (with manual acks) until the queue is empty, retrying while a
    new leader is elected; raises AssertionError on the deadline."""
    received: set[bytes] = set()
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            conn = _connect(node)
        except pika.exceptions.AMQPError as e:
            last_error = e
            time.sleep(0.5)
            continue
        try:
            channel = conn.channel()
            channel.basic_qos(prefetch_count=50)
            for method, _, body in channel.consume(queue, inactivity_timeout=2.0):
                if method is None:  # nothing for 2 s
                    if len(received) >= MESSAGES:
                        return received
                    if time.monotonic() > deadline:
                        break
                    continue
                received.add(body)
                channel.basic_ack(method.delivery_tag)
        except pika.exceptions.AMQPError as e:
            last_error = e  # e.g. the queue had no leader yet
            time.sleep(0.5)
        finally:
            if conn.is_open:
                conn.close()
    raise AssertionError(
        f"got {len(received)} of {MESSAGES} messages before the deadline; "
        f"last error: {last_error!r}"
    )
