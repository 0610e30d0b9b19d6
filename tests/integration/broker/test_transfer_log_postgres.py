"""The transfer log on PostgreSQL: the SQLite unit tests again, plus PostgreSQL's own checks.

The unit module's tests (all but ``test_sqlite_*``) are imported here and run
with ``log_url`` pointing at a fresh PostgreSQL database for each test, so
the two backends are held to the same behaviour: seq continuity, exact bytes,
checkpoints by count and by time, proofs, rollback, find and find_logged,
evidence, and two logs appending from two threads without gaps.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from broker.transfer_log import TransferLog
from protocols import merkle
from protocols.log_format import Entry

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

_UNIT = Path(__file__).resolve().parents[2] / "unit" / "broker" / "test_transfer_log.py"


def _load_unit_module() -> Any:
    spec = importlib.util.spec_from_file_location("transfer_log_unit_tests", _UNIT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_unit = _load_unit_module()
# The shared tests and the fixture they use; log_url is redefined below.
open_log = _unit.open_log
log = _unit.log
for _name, _test in vars(_unit).items():
    # Only the tests that touch a database; the pure ones ran with the unit tests.
    if (_name.startswith("test_") and not _name.startswith("test_sqlite_")
            and {"log", "open_log"} & set(inspect.signature(_test).parameters)):
        globals()[_name] = _test


@pytest.fixture
def log_url(postgres_url: str) -> str:
    return postgres_url


def _psycopg_dsn(url: str) -> str:
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(
        hide_password=False)


def test_postgres_refuses_updates_and_deletes(log: TransferLog, log_url: str) -> None:
    _unit.append(log, 0, 2)
    log.checkpoint(_unit.T0)
    with psycopg.connect(_psycopg_dsn(log_url)) as conn:
        for statement in ("UPDATE entries SET body = '\\x00'::bytea WHERE seq = 0",
                          "DELETE FROM entries WHERE seq = 1",
                          "UPDATE evidence SET publisher = 'x'",
                          "UPDATE evidence SET line = '\\x00'::bytea",
                          "DELETE FROM checkpoints"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
            conn.rollback()
    assert log.size() == 2


def test_postgres_a_plain_postgresql_url_uses_psycopg_3(postgres_url: str) -> None:
    plain = sa.engine.make_url(postgres_url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    opened = TransferLog.open(plain, signer=_unit.SIGNER, origin=_unit.ORIGIN)
    try:
        _unit.append(opened, 0, 1)
        assert opened.size() == 1
    finally:
        opened.close()


@pytest.fixture
def four_logs(postgres_url: str) -> Iterator[list[TransferLog]]:
    opened = [TransferLog.open(postgres_url, signer=_unit.SIGNER, origin=_unit.ORIGIN)
              for _ in range(4)]
    yield opened
    for x in opened:
        x.close()


def test_postgres_four_writers_interleave_without_gaps(four_logs: list[TransferLog]) -> None:
    # More writers than the shared test, with a start barrier so they contend.
    per_thread, batch = 10, 25
    barrier = threading.Barrier(len(four_logs))
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait()
            for k in range(per_thread):
                first = (n * per_thread + k) * batch
                with four_logs[n].batch() as b:
                    for i in range(first, first + batch):
                        b.append(_unit.draft(i), _unit.evidence(i))
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(four_logs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    entries = [Entry.from_bytes(b) for b in four_logs[0].entries()]
    total = len(four_logs) * per_thread * batch
    assert [e.seq for e in entries] == list(range(total))
    # Each batch is contiguous: nobody's appends were interleaved inside another's.
    for k in range(0, total, batch):
        firsts = {int((e.message_id or "").split("-")[0], 16) // batch
                  for e in entries[k:k + batch]}
        assert len(firsts) == 1
    assert four_logs[3].root() == merkle.root([e.leaf_hash for e in entries])
