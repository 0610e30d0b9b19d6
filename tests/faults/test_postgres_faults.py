"""Two routers on one PostgreSQL transfer log: one killed again and again; PostgreSQL away."""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    Fault,
    Outcome,
    RegistryServer,
    assert_clean,
    scenario,
    wait_for,
)

from broker.node import RabbitNode
from broker.postgres import PostgresInstance

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.postgres]

MESSAGES = 900
KILLS = 5
OUTAGE = 20.0


@pytest.fixture(scope="module")
def fault_postgres() -> Iterator[PostgresInstance]:
    # Its own server: the scenario stops it, which must not disturb other tests.
    data_dir = Path(tempfile.mkdtemp(prefix="infoshare-faults-pg-"))
    instance = PostgresInstance(data_dir)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_two_routers_share_a_postgres_log_while_one_is_killed_repeatedly(
        tmp_path: Path, faults_node: RabbitNode, fault_registry: RegistryServer,
        fault_postgres: PostgresInstance,
        fault_table: list[Outcome]) -> None:
    rng = random.Random()
    url = fault_postgres.create_database(f"faults_two_{int(time.time())}")
    with scenario("two-routers-postgres", tmp_path, fault_registry, [faults_node],
                  log_url=url) as s:
        # Slow enough that the flow outlasts five kills and restarts (a few seconds each).
        steady, victim = s.start_flow(MESSAGES, rate=8, routers=2)
        for _ in range(KILLS):
            # A random moment while the victim itself is routing: mid-batch, mid-publish.
            busy = rng.randint(1, 30)
            wait_for(f"{victim.name} routing", lambda r=victim, n=busy: len(r.decisions()) >= n,
                     60, interval=0.01)
            victim = s.crash_router(victim)
        assert steady.alive, "the router that was left alone must still run"
        outcome = s.finish()
    fault_table.append(outcome)
    assert_clean(outcome)  # includes: seq 0..n-1 without gaps, verify and replay


def test_postgres_stopped_for_twenty_seconds_then_everything_resumes(
        tmp_path: Path, faults_node: RabbitNode, fault_registry: RegistryServer,
        fault_postgres: PostgresInstance,
        fault_table: list[Outcome]) -> None:
    url = fault_postgres.create_database(f"faults_outage_{int(time.time())}")
    with scenario("postgres-outage", tmp_path, fault_registry, [faults_node], log_url=url) as s:
        routers = s.start_flow(MESSAGES, rate=40, routers=2)
        s.wait_log_grows(by=200)
        began = time.time()
        fault_postgres.stop()
        stopped = time.monotonic()
        # While it is away: nothing is logged, and what arrives waits in the queue.
        waiting = s.ingress_depth
        wait_for("messages waiting in the queue", lambda: waiting() > 0, OUTAGE)
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
        assert all(r.alive for r in routers), "a router gave up while the log was away"
        held = waiting()
        fault_postgres.start()
        s.faults.append(Fault("postgres stopped 20 s", time.time(), began=began))
        outcome = s.finish()
    outcome.notes["waiting_at_end_of_outage"] = held
    fault_table.append(outcome)
    assert held > 0
    assert_clean(outcome)

