"""Fixtures of the fault scenarios: their own RabbitMQ node, a registry, a results table.

The scenarios restart and kill their node, so it is theirs alone (not the
session's ``rabbit_node``). Every scenario adds its outcome to ``fault_table``,
printed at the end of the run: scenario, messages, faults, lost, duplicated,
unexpected and the time to recover.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Outcome, RegistryServer
from private_nodes import private_node

from broker.node import RabbitNode

_OUTCOMES: list[Outcome] = []


@pytest.fixture(scope="session")
def faults_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    with private_node(tmp_path_factory.mktemp("faults-rabbit"), "infoshare-faults") as node:
        yield node


@pytest.fixture(scope="session")
def fault_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    registry = RegistryServer(tmp_path_factory.mktemp("faults-registry"))
    yield registry
    registry.stop()


@pytest.fixture
def fault_table() -> list[Outcome]:
    return _OUTCOMES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _OUTCOMES:
        return
    lines = _table()
    terminalreporter.section("fault scenarios")
    for line in lines:
        terminalreporter.write_line(line)
    table = Path(tempfile.gettempdir()) / "infoshare-fault-table.md"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    terminalreporter.write_line(f"(also in {table})")


def _table() -> list[str]:
    """The table's rows, then one line of figures per scenario that measured more."""
    lines = ["| scenario | messages | faults injected | lost | duplicated | unexpected "
             "| recovery (s, max) | log |",
             "|---|---|---|---|---|---|---|---|"]
    for o in _OUTCOMES:
        kinds: dict[str, int] = {}
        for f in o.faults:
            kinds[f.what] = kinds.get(f.what, 0) + 1
        faults = ", ".join(f"{n} x {k}" for k, n in kinds.items()) or "-"
        lost, dup, unexpected = o.result.counts
        lines.append(f"| {o.name} | {o.messages} | {faults} | {lost} | {dup} | {unexpected} "
                     f"| {o.recovery} | {'verifies' if o.log.ok else 'FAILS'} |")
    for o in _OUTCOMES:
        figures = {k: v for k, v in o.notes.items() if k != "dead"}
        recoveries = [round(f.recovered, 2) for f in o.faults if f.recovered is not None]
        if len(recoveries) > 1:
            figures["recovery_seconds"] = recoveries
        stalls = [round(f.stalled, 2) for f in o.faults if f.stalled is not None]
        if stalls:
            figures["longest_stall_in_routing_during_the_fault_seconds"] = stalls
        if figures:
            lines.append(f"{o.name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    return lines
