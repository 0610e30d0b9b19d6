"""The fault suite catches a broken router: one that acks a message before its entry is
committed (``INFOSHARE_ROUTER_FAULT=ack_before_commit``) loses messages when it is killed,
and the checker counts them as lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from harness import (
    SENDERS,
    Outcome,
    RegistryServer,
    Scenario,
    assert_clean,
    scenario,
    wait_for,
)

from broker.node import RabbitNode
from broker.router import FAULT_ENV
from protocols.amqp import ingress_name

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MESSAGES = 900


def test_a_router_that_acks_before_its_log_commit_is_caught(
        tmp_path: Path, faults_node: RabbitNode, fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    with scenario("broken-router", tmp_path, fault_registry, [faults_node]) as s:
        s.start_recipients()
        broken = s.start_router(env={FAULT_ENV: "ack_before_commit"})
        # The kill must land between the broken router's acks and its commit: another
        # writer holds the log (SQLite makes the router wait), so nothing it acks is
        # committed meanwhile.
        lock = sqlite3.connect(s.home / "transfer-log.db", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            senders = [s.start_sender(unit, MESSAGES // len(SENDERS)) for unit in SENDERS]
            wait_for("every message confirmed", lambda: not any(p.alive for p in senders), 60)
            # RabbitMQ has its acks for some (neither ready nor unacked); none is logged.
            # (An ack may wait until SQLite gives up on the lock, 60 s, and the router's
            # loop runs again.)
            wait_for("the broken router acking", lambda: _held(s, faults_node) < MESSAGES,
                     150, interval=0.2)
            assert s.log_size() == 0
            broken.kill()
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        s.start_router()
        outcome = s.finish(quiet=3.0)
    outcome.name = "broken-router (acks before commit; must fail)"
    fault_table.append(outcome)
    lost, duplicated, unexpected = outcome.result.counts
    assert lost > 0, outcome.line()
    assert duplicated == 0 and unexpected == 0
    with pytest.raises(AssertionError, match="lost="):
        assert_clean(outcome)  # what every other scenario asserts fails here



def _held(s: Scenario, node: RabbitNode) -> int:
    """Messages the senders' ingress queues hold, ready or delivered and not acked, as
    the queues have them now (the management API's figures can be seconds old)."""
    got = node.ctl("list_queues", "-q", "--no-table-headers", "-p", s.vhost, "name",
                   "messages_ready", "messages_unacknowledged")
    assert got.returncode == 0, got.stderr
    mine = {ingress_name(unit) for unit in SENDERS}
    return sum(int(ready) + int(unacked) for name, ready, unacked in
               (line.split() for line in got.stdout.splitlines() if line.strip())
               if name in mine)
