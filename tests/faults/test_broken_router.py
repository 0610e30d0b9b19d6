"""The fault suite catches a broken router: one that acks a message before its entry is
committed (``INFOSHARE_ROUTER_FAULT=ack_before_commit``) loses messages when it is killed,
and the checker counts them as lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import SENDERS, Outcome, RegistryServer, assert_clean, scenario, wait_for

from broker.node import RabbitNode
from broker.router import FAULT_ENV

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MESSAGES = 900


def test_a_router_that_acks_before_its_log_commit_is_caught(
        tmp_path: Path, faults_node: RabbitNode, fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    with scenario("broken-router", tmp_path, fault_registry, [faults_node]) as s:
        s.start_recipients()
        senders = [s.start_sender(unit, MESSAGES // len(SENDERS)) for unit in SENDERS]
        wait_for("a backlog", lambda: not any(p.alive for p in senders), 60)
        broken = s.start_router(env={FAULT_ENV: "ack_before_commit"}, ready=False)
        # Killed as it starts to work: it has acked what it took, and logged little of it.
        s.wait_log_grows(by=1)
        broken.kill()
        s.start_router()
        outcome = s.finish(quiet=3.0)
    outcome.name = "broken-router (acks before commit; must fail)"
    fault_table.append(outcome)
    lost, duplicated, unexpected = outcome.result.counts
    assert lost > 0, outcome.line()
    assert duplicated == 0 and unexpected == 0
    with pytest.raises(AssertionError, match="lost="):
        assert_clean(outcome)  # what every other scenario asserts fails here
