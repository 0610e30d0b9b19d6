"""A message that fails every time it is processed is set aside; the rest flow."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from harness import SENDERS, Outcome, RegistryServer, assert_clean, scenario

from broker.node import RabbitNode
from broker.router import FAULT_ENV, POISON_ATTEMPTS

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MESSAGES = 300


def test_a_poison_message_is_dead_lettered_after_its_attempts_and_the_rest_flow(
        tmp_path: Path, faults_node: RabbitNode, fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    poison = str(uuid.uuid4())
    with scenario("poison", tmp_path, fault_registry, [faults_node]) as s:
        # Deciding this one message raises, every time, in every router.
        env = {FAULT_ENV: f"poison:{poison}"}
        routers = [s.start_router(env=env), s.start_router(env=env)]
        s.start_recipients()
        s.start_sender(SENDERS[0], MESSAGES, rate=100, message_ids={MESSAGES // 3: poison})
        s.start_sender(SENDERS[1], MESSAGES, rate=100)
        outcome = s.finish(set_aside=frozenset({poison}))
        failures = sum(r.text().count("failed (RuntimeError); handed back") for r in routers)
        dead_lettered = sum(r.text().count("dead-lettered") for r in routers)
    fault_table.append(outcome)
    assert_clean(outcome, dead={poison})
    # Tried POISON_ATTEMPTS times by the router that set it aside, fewer by the other.
    assert dead_lettered == 1
    assert POISON_ATTEMPTS - 1 <= failures <= 2 * (POISON_ATTEMPTS - 1)
