"""Recipients (the agency SDK) killed with -9 while they open messages.

Each kill lands just after a record was written, the moment a careless client
would write it again on redelivery. Every record must be written once, and
every receipt logged once.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from harness import (
    RECIPIENTS,
    SENDERS,
    Fault,
    Outcome,
    RegistryServer,
    assert_clean,
    scenario,
    wait_for,
)

from broker.node import RabbitNode

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MESSAGES = 600
KILLS = 6


def _writes(journal: Path) -> int:
    return journal.read_bytes().count(b"W ") if journal.exists() else 0


def test_recipients_killed_while_opening_write_each_record_once(
        tmp_path: Path, faults_node: RabbitNode, fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    rng = random.Random()
    with scenario("recipient-kill", tmp_path, fault_registry, [faults_node]) as s:
        s.start_router()
        recipients = {unit: s.start_recipient(unit) for unit in RECIPIENTS}
        for unit in SENDERS:
            s.start_sender(unit, MESSAGES // len(SENDERS), rate=25)
        for i in range(KILLS):
            unit = RECIPIENTS[i % len(RECIPIENTS)]
            journal = s.recipient_journals[unit]
            seen = _writes(journal) + rng.randint(1, 20)
            # Right after a record is written: before or while it is accepted and acked.
            wait_for(f"{unit} writes", lambda j=journal, n=seen: _writes(j) >= n, 60,
                     interval=0.002)
            recipients[unit].kill()
            recipients[unit] = s.start_recipient(unit)
            s.faults.append(Fault("recipient kill -9", time.time()))
        outcome = s.finish()
    fault_table.append(outcome)
    assert_clean(outcome)
