"""The fault suite catches a broken router: one that acks a message before its entry is
committed (``INFOSHARE_ROUTER_FAULT=ack_before_commit``) loses messages when it is killed,
and the checker counts them as lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import (
    SENDERS,
    Outcome,
    RegistryServer,
    Scenario,
    assert_clean,
    connection,
    scenario,
    wait_for,
)

from broker.node import RabbitNode
from broker.router import FAULT_ENV
from broker.topology import BROKER_USER
from protocols.amqp import ingress_name

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MESSAGES = 900
#: Broken routers killed, at most, until one kill lands between an ack and its commit.
ATTEMPTS = 5


def test_a_router_that_acks_before_its_log_commit_is_caught(
        tmp_path: Path, faults_node: RabbitNode, fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    with scenario("broken-router", tmp_path, fault_registry, [faults_node]) as s:
        s.start_recipients()
        senders = [s.start_sender(unit, MESSAGES // len(SENDERS)) for unit in SENDERS]
        wait_for("a backlog", lambda: not any(p.alive for p in senders), 60)
        for _ in range(ATTEMPTS):
            # Half a second between its batches: what it acks meanwhile is logged only
            # at the next one, so a kill lands between the two.
            broken = s.start_router(env={FAULT_ENV: "ack_before_commit"}, ready=False,
                                    args=("--batch-delay", "0.5"))
            # Killed as it works: it has acked what it took, and logged only some of it.
            s.wait_log_grows(by=1)
            broken.kill()
            # With no router running, a message is logged, waiting, or lost: stop once
            # the kill has landed between an ack and its commit.
            wait_for("its consumers gone", lambda: _waiting(s)[1] == 0, 30)
            logged = sum(1 for e in s.entries() if e["kind"] == "referral")
            if MESSAGES - logged - _waiting(s)[0] > 0:
                break
        s.start_router()
        outcome = s.finish(quiet=3.0)
    outcome.name = "broken-router (acks before commit; must fail)"
    fault_table.append(outcome)
    lost, duplicated, unexpected = outcome.result.counts
    assert lost > 0, outcome.line()
    assert duplicated == 0 and unexpected == 0
    with pytest.raises(AssertionError, match="lost="):
        assert_clean(outcome)  # what every other scenario asserts fails here


def _waiting(s: Scenario) -> tuple[int, int]:
    """Messages waiting in the senders' ingress queues (exact while no router consumes),
    and their consumers."""
    conn = connection(s._urls(BROKER_USER)[0])
    try:
        channel = conn.channel()
        got = [channel.queue_declare(ingress_name(unit), passive=True).method
               for unit in SENDERS]
        return sum(m.message_count for m in got), sum(m.consumer_count for m in got)
    finally:
        conn.close()
