"""kill -9 the router at random moments while 2,000 messages flow."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from harness import Outcome, RegistryServer, assert_clean, scenario

from broker.node import RabbitNode

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MESSAGES = 2000
KILLS = 5


def test_router_killed_five_times_while_messages_flow(
        tmp_path: Path, faults_node: RabbitNode, fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    rng = random.Random()
    with scenario("router-kill", tmp_path, fault_registry, [faults_node]) as s:
        [router] = s.start_flow(MESSAGES, rate=60)
        for _ in range(KILLS):
            # A random moment while the log grows: mid-batch, mid-publish, mid-ack.
            s.wait_log_grows(by=rng.randint(1, 150))
            router = s.crash_router(router)
        outcome = s.finish()
    fault_table.append(outcome)
    assert_clean(outcome)
    assert len(outcome.faults) == KILLS
