"""The registry goes away mid-stream: routing goes on with the last verified directory."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import Fault, Outcome, RegistryServer, assert_clean, scenario, wait_for

from broker.node import RabbitNode

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MESSAGES = 900


def test_routing_goes_on_while_the_registry_is_down(
        tmp_path: Path, faults_node: RabbitNode, fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    with scenario("registry-down", tmp_path, fault_registry, [faults_node]) as s:
        routers = s.start_flow(MESSAGES, rate=30, routers=2)
        s.wait_log_grows(by=100)
        began = time.time()
        fault_registry.stop()
        try:
            # Every router has failed to fetch the directory at least once ...
            wait_for("directory refreshes failing", lambda: all(
                "directory refresh failed" in r.text() for r in routers), 30)
            # ... and routes on regardless, until every sender is done. (The recipients
            # wait meanwhile: the SDK takes nothing it cannot verify and open.)
            before = s.log_size()
            wait_for("the senders done", lambda: not any(
                p.alive for p in s.senders.values()), 60)

            def referrals() -> int:
                return sum(1 for e in s.entries() if e["kind"] == "referral")

            wait_for("every referral routed", lambda: referrals() == MESSAGES, 60)
            routed_while_down = s.log_size() - before
        finally:
            fault_registry.start()
        s.faults.append(Fault("registry down", time.time(), began=began))
        outcome = s.finish()
    outcome.notes["routed_while_registry_down"] = routed_while_down
    fault_table.append(outcome)
    assert routed_while_down >= 300
    assert_clean(outcome)
