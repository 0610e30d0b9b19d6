"""The log's disk fills while a router is killed again and again.

While the log cannot be written the router holds what it took, unacked, and
acks nothing. RabbitMQ counts one more delivery for every message a router
held when it died: here 21 crashes, more than the delivery limit of 20 that
would once have dead-lettered every waiting message as poison. None is; once
the disk has room again, everything is routed, once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import SENDERS, Fault, Outcome, RegistryServer, assert_clean, scenario, wait_for

from broker.node import RabbitNode
from broker.topology import INGRESS_DELIVERY_LIMIT

pytestmark = [pytest.mark.integration, pytest.mark.faults]

CRASHES = 21
OLD_DELIVERY_LIMIT = 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A filesystem of its own (tmpfs, 16 MiB) that a test can fill."""
    mount = tmp_path / "log-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "infoshare-faults",
                    str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as f:  # until ENOSPC
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


def test_messages_held_through_crashes_while_the_disk_is_full_are_not_dead_lettered(
        tmp_path: Path, small_disk: Path, faults_node: RabbitNode,
        fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    assert CRASHES > OLD_DELIVERY_LIMIT and CRASHES < INGRESS_DELIVERY_LIMIT
    with scenario("disk-full", tmp_path, fault_registry, [faults_node],
                  log_url=f"sqlite:///{small_disk / 'transfer-log.db'}") as s:
        router = s.start_router()
        s.start_recipients()
        filler = _fill(small_disk)
        s.start_sender(SENDERS[0], 150)

        def holding() -> bool:
            return "transfer log unavailable" in router.text()

        wait_for("the router holding messages", holding, 60)
        for _ in range(CRASHES):
            router.kill()
            router = s.start_router()
            wait_for("the new router holding them", holding, 60)
        router.kill()  # the messages wait in the queue: look at their delivery count
        counts = s.delivery_counts(SENDERS[0])
        os.unlink(filler)
        s.start_router(ready=False)
        s.faults.append(Fault(f"disk full, {CRASHES} router kills", time.time()))
        outcome = s.finish()
    outcome.notes["x_delivery_count"] = max(counts)
    print(f"disk-full: x-delivery-count {min(counts)}..{max(counts)} after {CRASHES} crashes",
          flush=True)
    fault_table.append(outcome)
    assert min(counts) > OLD_DELIVERY_LIMIT, counts
    assert_clean(outcome)
