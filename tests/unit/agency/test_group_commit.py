"""Group commit: writes of many threads share transactions; each caller gets its own outcome
only after its transaction ended."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from agency.gateway.group_commit import GroupCommit


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def record(name: str) -> Callable[[list[str]], str]:
    def write(tx: list[str]) -> str:
        tx.append(name)
        return f"done {name}"
    return write


class Ledger:
    """A transaction log held in memory: a transaction's writes become visible at commit."""

    def __init__(self) -> None:
        self.committed: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_commit = False

    @contextlib.contextmanager
    def begin(self) -> Iterator[list[str]]:
        pending: list[str] = []
        yield pending
        self.gate.wait()
        if self.fail_commit and len(pending) > 1:
            raise OSError("disk full")
        self.committed.append(pending)


def test_concurrent_writes_share_a_commit_and_each_gets_its_result() -> None:
    ledger = Ledger()
    group: GroupCommit[list[str]] = GroupCommit(ledger.begin)
    ledger.gate.clear()  # hold the first commit so that the others queue behind it
    results: dict[int, str] = {}

    def write(i: int) -> None:
        results[i] = group.run(record(f"w{i}"))

    first = threading.Thread(target=write, args=(0,))
    first.start()
    until(lambda: group._busy)  # the first caller leads and waits on the gate
    others = [threading.Thread(target=write, args=(i,)) for i in range(1, 20)]
    for t in others:
        t.start()
    until(lambda: len(group._pending) == 19)
    ledger.gate.set()
    for t in (first, *others):
        t.join(timeout=10)
    assert results == {i: f"done w{i}" for i in range(20)}
    assert ledger.committed[0] == ["w0"]
    # The nineteen that waited went together, in one transaction.
    assert sorted(ledger.committed[1]) == sorted(f"w{i}" for i in range(1, 20))
    assert len(ledger.committed) == 2


def test_a_failing_write_fails_alone() -> None:
    ledger = Ledger()
    group: GroupCommit[list[str]] = GroupCommit(ledger.begin)

    def bad(tx: list[str]) -> None:
        raise ValueError("not this one")

    with pytest.raises(ValueError):
        group.run(bad)
    assert group.run(record("fine")) == "done fine"
    assert ledger.committed == [["fine"]]


def test_when_the_shared_commit_fails_each_write_is_tried_alone() -> None:
    ledger = Ledger()
    ledger.fail_commit = True  # a transaction of more than one write fails
    group: GroupCommit[list[str]] = GroupCommit(ledger.begin)
    ledger.gate.clear()
    done: list[str] = []
    threads = [threading.Thread(target=lambda i=i: done.append(group.run(record(f"w{i}"))))
               for i in range(5)]
    threads[0].start()
    until(lambda: group._busy)
    for t in threads[1:]:
        t.start()
    until(lambda: len(group._pending) == 4)
    ledger.gate.set()
    for t in threads:
        t.join(timeout=10)
    assert sorted(done) == [f"done w{i}" for i in range(5)]
    assert sorted(w for tx in ledger.committed for w in tx) == [f"w{i}" for i in range(5)]
    assert all(len(tx) == 1 for tx in ledger.committed)
