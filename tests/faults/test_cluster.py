"""A 3-node cluster with quorum queues: a node killed, a node paused, a node cut off.

The cluster is started with the project's own node scripts (``start_cluster``)
once for the module; each test leaves it with all three nodes running. Where
the machine allows it (root, ``ip netns``), each node lives in a network
namespace of its own behind a bridge, so that one can be cut off from the
others and from every client. Where the machine forbids it (``ip netns add``
answers "Operation not permitted": not root, or a container without
CAP_SYS_ADMIN) the nodes share loopback and the partition test is skipped,
which with ``CI=true`` (CI runs as root) counts as a failure; any other reason
namespaces cannot be made (no ``ip``, a broken bridge) fails it. Routers,
senders and recipients are given every node and carry on with the others when
the one they use goes away.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from harness import (
    Fault,
    Outcome,
    RegistryServer,
    assert_clean,
    scenario,
    wait_for,
)
from netns import Namespaces, available, forbidden
from pika.adapters.blocking_connection import BlockingConnection

from broker.node import NodeError, RabbitNode, start_cluster, stop_all
from broker.topology import ManagementAPI
from protocols.envelope import MAX_BODY_BYTES

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MESSAGES = 300
SCENARIO_MESSAGES = 600
PAUSE = 30.0
CUT = 20.0


_NO_NAMESPACES: list[str] = []  # why, when the cluster runs on loopback


@pytest.fixture(scope="module")
def network() -> Iterator[Namespaces | None]:
    ok, why = available()
    if not ok:
        print(f"no network namespaces here ({why}): the cluster runs on loopback")
        _NO_NAMESPACES[:] = [why]
        yield None
        return
    namespaces = Namespaces(3)
    try:
        yield namespaces
    finally:
        namespaces.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory,
            network: Namespaces | None) -> Iterator[list[RabbitNode]]:
    base = tmp_path_factory.mktemp("cluster")
    try:
        nodes = start_cluster(base, 3, name=f"infoshare-cluster-{os.getpid()}",
                              places=None if network is None else network.places)
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
    _restore(leader)


def _assert_replicated(api: ManagementAPI, vhost: str, cluster: list[RabbitNode]) -> None:
    """Every quorum queue of the vhost has a member on each node: losing one leaves a majority."""
    queues = api.get(f"/api/queues/{vhost}", query="columns=name,members,leader") or []
    everywhere = {n.nodename for n in cluster}
    partial = {q["name"]: q.get("members") for q in queues
               if set(q.get("members") or []) != everywhere}
    assert queues and not partial, partial


def _kill_9(node: RabbitNode) -> None:
    pid = node.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(f"{node.nodename} gone", lambda: node.pid() is None, 15)


def _restore(node: RabbitNode) -> None:
    """Start a killed node again: it rejoins the cluster from its own data directory."""
    node.stop()  # what is left of its process group
    node.start()


def test_a_node_killed_while_messages_flow(
        tmp_path: Path, cluster: list[RabbitNode], fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    victim = cluster[0]  # where provisioning put every quorum queue's leader
    with scenario("cluster-node-kill", tmp_path, fault_registry, cluster) as s:
        s.start_flow(SCENARIO_MESSAGES, rate=25, routers=2)
        s.wait_log_grows(by=150)
        _assert_replicated(s.management, s.vhost, cluster)
        _kill_9(victim)
        s.faults.append(Fault("cluster node kill -9", time.time()))
        s.wait_log_grows(by=300)  # on two nodes, with new leaders
        # The node comes back (and rejoins) while the others finish.
        restore = threading.Thread(target=_restore, args=(victim,))
        restore.start()
        try:
            outcome = s.finish()
        finally:
            restore.join()
    fault_table.append(outcome)
    assert_clean(outcome)


def test_a_node_paused_for_thirty_seconds(
        tmp_path: Path, cluster: list[RabbitNode], fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    victim = cluster[1]
    with scenario("cluster-node-pause", tmp_path, fault_registry, cluster) as s:
        s.start_flow(SCENARIO_MESSAGES, rate=20, routers=2)
        s.wait_log_grows(by=150)
        pid = victim.pid()
        assert pid is not None
        began = time.time()
        os.kill(pid, signal.SIGSTOP)
        try:
            paused = time.monotonic()
            # The others go on without it: clients on it move to another node once
            # their heartbeat or a missing confirm gives it up (10 to 15 s), quorum
            # queues led from it elect new leaders. 50 entries is 2.5 s of the flow:
            # routing resumed while the node is still stopped.
            s.wait_log_grows(by=50, timeout=PAUSE)
            routed_while_paused = True
            time.sleep(max(0.0, PAUSE - (time.monotonic() - paused)))  # the fault lasts 30 s
        finally:
            os.kill(pid, signal.SIGCONT)
        s.faults.append(Fault("cluster node SIGSTOP 30 s", time.time(), began=began))
        outcome = s.finish()
    fault_table.append(outcome)
    assert routed_while_paused
    assert_clean(outcome)


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


def test_a_node_cut_off_from_the_others_and_its_clients(
        tmp_path: Path, cluster: list[RabbitNode], network: Namespaces | None,
        fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    if network is None:
        why = _NO_NAMESPACES[0] if _NO_NAMESPACES else "unknown"
        if forbidden(why):
            pytest.skip(f"this machine forbids network namespaces (ip netns add: {why})")
        pytest.fail(f"cutting a node off needs network namespaces, which could not be "
                    f"made here: {why}", pytrace=False)
    victim = 2
    with scenario("cluster-partition", tmp_path, fault_registry, cluster) as s:
        s.start_flow(SCENARIO_MESSAGES, rate=20, routers=2)
        s.wait_log_grows(by=150)
        began = time.time()
        network.cut(victim)
        try:
            cut = time.monotonic()
            # The majority goes on: clients on the lost node move to the others.
            s.wait_log_grows(by=150, timeout=CUT)
            time.sleep(max(0.0, CUT - (time.monotonic() - cut)))  # the fault lasts 20 s
        finally:
            network.heal(victim)
        s.faults.append(Fault("cluster node cut off 20 s (netns)", time.time(),
                              began=began))
        outcome = s.finish()
    fault_table.append(outcome)
    assert_clean(outcome)
