"""Restart the RabbitMQ node three times while messages flow: once cleanly, twice after
kill -9 (a machine that crashed).

The node comes back on its own ports at once (its connections linger in
TIME_WAIT, which must not keep it from binding them again); the router, the
senders and the SDK recipients reconnect by themselves.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from harness import Fault, Outcome, RegistryServer, assert_clean, scenario

from broker.node import RabbitNode

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MESSAGES = 900
RESTARTS = 3


def _crash(node: RabbitNode) -> None:
    pid = node.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    node.stop()  # what is left of its process group


def test_rabbitmq_restarted_three_times_mid_stream(
        tmp_path: Path, faults_node: RabbitNode, fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    with scenario("rabbitmq-restart", tmp_path, fault_registry, [faults_node]) as s:
        s.start_flow(MESSAGES, rate=40)
        starts = []
        for restart in range(RESTARTS):
            s.wait_log_grows(by=150)
            began = time.time()
            if restart == 0:
                faults_node.stop()
            else:
                _crash(faults_node)
            down = time.monotonic()
            faults_node.start()
            starts.append(time.monotonic() - down)
            s.faults.append(Fault("rabbitmq restart" if restart == 0
                                  else "rabbitmq kill -9 and start", time.time(),
                                  began=began))
        outcome = s.finish()
    outcome.notes["node_start_seconds"] = [round(t, 2) for t in starts]
    print(f"rabbitmq-restart: node serving again after {outcome.notes['node_start_seconds']} s; "
          f"first message routed {[round(f.recovered or -1, 2) for f in outcome.faults]} s "
          "after it was back", flush=True)
    fault_table.append(outcome)
    assert_clean(outcome)
    assert all(f.recovered is not None for f in outcome.faults), "routing did not resume"
