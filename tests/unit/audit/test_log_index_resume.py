"""The log server's index kept across restarts: a start verifies only what is new, and a
log that no longer holds what was verified is named, not trusted."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from log_factories import draft, evidence, sha

from audit.log_index import LogIndex
from audit.log_queries import counts
from audit.log_sources import ReadableLog
from audit.reporting import ReportFilters
from audit.web.auth import LocalToken
from audit.web.building import build, rebuild
from audit.web.site import LogSite
from broker.transfer_log import TransferLog
from keys import NoteSigner, SigningKeyPair

ORIGIN = "restart.example/transfer-log"
KEY = NoteSigner(ORIGIN, SigningKeyPair.generate())
NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)


def grow(log: TransferLog, n: int) -> None:
    """``n`` more entries and a checkpoint over them."""
    start = log.size()
    with log.batch() as lb:
        for i in range(start, start + n):
            ev = evidence(i)
            assert ev.header is not None
            lb.append(draft(i, header_sha256=sha(ev.header)), ev)
    log.checkpoint(NOW)


class Counting:
    """A log that counts the entries read from it."""

    def __init__(self, log: TransferLog) -> None:
        self.log = log
        self.read = 0

    def latest_checkpoint(self) -> str | None:
        return self.log.latest_checkpoint()

    def checkpoints(self, upto: int | None = None) -> list[str]:
        return self.log.checkpoints(upto=upto)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        for raw in self.log.entries(start, end):
            self.read += 1
            yield raw

    def evidence_lines(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self.log.evidence_lines(start, end)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[TransferLog]:
    opened = TransferLog.open(f"sqlite:///{tmp_path / 'log.db'}", signer=KEY, origin=ORIGIN)
    grow(opened, 300)
    grow(opened, 300)
    yield opened
    opened.close()


def start(index: Path, log: ReadableLog, *, force: bool = False) -> LogSite:
    """What ``infoshare log serve`` does at start: a new site on the index file."""
    site = LogSite(index=LogIndex(index, KEY.verifier), auth=LocalToken("t"), live=log,
                   follow_every=0)
    build(site, force=force)
    return site


def test_a_restart_reads_only_the_entries_added_since(log: TransferLog, tmp_path: Path) -> None:
    first = Counting(log)
    before = start(tmp_path / "i.sqlite", first).index.state()
    assert first.read == 600 and before.ok and before.checkpoint_size == 600
    assert (tmp_path / "i.sqlite").stat().st_mode & 0o777 == 0o600  # who shared with whom

    again = Counting(log)
    site = start(tmp_path / "i.sqlite", again)
    assert again.read == 1  # the last entry, to see it is the one verified
    assert site.index.state().checkpoint_size == 600 and site.index.state().ok

    grow(log, 130)  # the tiles' partial edges must go on growing where they stopped
    site.follow()
    after = site.index.state()
    assert again.read == 1 + 130 and after.ok and after.checkpoint_size == 730
    assert after.root == log.root(730)
    tree = site.index.tree()
    assert tree.root() == log.root(730)
    assert tree.consistency_proof(600, 730) and tree.inclusion_proof(650, 730)

    # The same index built from seq 0 holds the same tiles.
    fresh = start(tmp_path / "fresh.sqlite", log).index
    for level in (0, 1):
        for idx in range(3):
            assert fresh.tile(level, idx) == site.index.tile(level, idx)


def test_reindex_reads_everything_again(log: TransferLog, tmp_path: Path) -> None:
    start(tmp_path / "i.sqlite", log)
    again = Counting(log)
    start(tmp_path / "i.sqlite", again, force=True)
    assert again.read == 600
    rebuilt = Counting(log)
    site = start(tmp_path / "i.sqlite", rebuilt)
    rebuild(site)  # "Verify again" on the pages
    assert rebuilt.read == 1 + 600 and site.index.state().ok


def test_a_log_rolled_back_while_stopped_is_named(log: TransferLog, tmp_path: Path) -> None:
    older = tmp_path / "older.db"
    log.close()
    shutil.copy(tmp_path / "log.db", older)
    reopened = TransferLog.open(f"sqlite:///{tmp_path / 'log.db'}", signer=KEY, origin=ORIGIN)
    grow(reopened, 50)
    start(tmp_path / "i.sqlite", reopened)
    reopened.close()
    backup = TransferLog.open(f"sqlite:///{older}", signer=None, origin=ORIGIN)
    try:
        state = start(tmp_path / "i.sqlite", backup).index.state()
    finally:
        backup.close()
    assert not state.ok
    assert state.failure is not None and "checkpoints up to size 650" in state.failure


def test_a_log_whose_last_entry_changed_is_named(log: TransferLog, tmp_path: Path) -> None:
    start(tmp_path / "i.sqlite", log)
    log.close()
    with sqlite3.connect(tmp_path / "log.db") as db:
        # Whoever rewrites the log's database can drop its append-only triggers too.
        for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                     ).fetchall():
            db.execute(f"DROP TRIGGER {trigger}")
        changed = db.execute("UPDATE entries SET body = CAST(replace(CAST(body AS TEXT), "
                             "'referral', 'response') AS BLOB) WHERE seq = 599").rowcount
    assert changed == 1
    reopened = TransferLog.open(f"sqlite:///{tmp_path / 'log.db'}", signer=None, origin=ORIGIN)
    try:
        state = start(tmp_path / "i.sqlite", reopened).index.state()
    finally:
        reopened.close()
    assert not state.ok and state.failure is not None
    assert "entry 599 is not the one this server verified before" in state.failure
    assert state.failure_where == "entry line 600, seq 599"


def test_an_index_whose_tiles_do_not_give_the_signed_root_is_read_again(
        log: TransferLog, tmp_path: Path) -> None:
    start(tmp_path / "i.sqlite", log)
    with sqlite3.connect(tmp_path / "i.sqlite") as db:
        db.execute("UPDATE tiles SET data = zeroblob(length(data)) WHERE level = 0 AND idx = 1")
    again = Counting(log)
    state = start(tmp_path / "i.sqlite", again).index.state()
    assert again.read == 600 and state.ok and state.root == log.root(600)


def test_an_index_under_another_log_key_is_read_again(log: TransferLog, tmp_path: Path) -> None:
    start(tmp_path / "i.sqlite", log)
    other = NoteSigner(ORIGIN, SigningKeyPair.generate())
    again = Counting(log)
    site = LogSite(index=LogIndex(tmp_path / "i.sqlite", other.verifier), auth=LocalToken("t"),
                   live=again)
    build(site)
    state = site.index.state()
    assert again.read == 0  # the first checkpoint already fails with this key
    assert not state.ok and state.key == other.verifier.line()
    assert state.failure is not None and "does not verify with the log key" in state.failure


def test_counts_kept_between_pages_follow_the_log_as_it_grows(
        log: TransferLog, tmp_path: Path) -> None:
    site = start(tmp_path / "i.sqlite", log)
    everything = ReportFilters()
    first = counts(site.index, everything)
    assert first.entries == 600
    assert counts(site.index, everything) is first  # the same answer, not a second scan
    grow(log, 50)
    assert site.index.follow(log)
    assert counts(site.index, everything).entries == 650
    assert counts(site.index, ReportFilters(decision="refused")).entries < 650
