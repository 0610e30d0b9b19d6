"""The transfer log on SQLite: entries, evidence, seq, checkpoints, proofs, batches.

Every test here but those named ``test_sqlite_*`` runs on PostgreSQL too:
tests/integration/broker/test_transfer_log_postgres.py imports them and
gives ``log_url`` another meaning. Times are injected; nothing waits.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from log_factories import UNREADABLE, draft, evidence, mid, sha

from broker.transfer_log import ANY_PUBLISHER, TransferLog, TransferLogError
from keys import Checkpoint, NoteSigner, SigningKeyPair, open_checkpoint, verify_note
from protocols import merkle
from protocols.log_format import Entry, EntryFormatError, Evidence

ORIGIN = "test.example/transfer-log"
T0 = datetime(2026, 11, 24, 13, 50, 41, tzinfo=UTC)
KEY = SigningKeyPair.generate()
SIGNER = NoteSigner(ORIGIN, KEY)

OpenLog = Callable[..., TransferLog]


def append(log: TransferLog, first: int, count: int) -> list[Entry]:
    with log.batch() as b:
        return [b.append(draft(i), evidence(i)) for i in range(first, first + count)]


@pytest.fixture
def log_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'log.db'}"


@pytest.fixture
def open_log(log_url: str) -> Iterator[OpenLog]:
    opened: list[TransferLog] = []

    def _open(*, signer: NoteSigner | None = SIGNER) -> TransferLog:
        log = TransferLog.open(log_url, signer=signer, origin=ORIGIN)
        opened.append(log)
        return log

    yield _open
    for log in opened:
        log.close()


@pytest.fixture
def log(open_log: OpenLog) -> TransferLog:
    return open_log()


# --- appending -------------------------------------------------------------------------


def test_seq_runs_without_gaps_across_batches_and_bytes_are_kept_exactly(
        log: TransferLog) -> None:
    with log.batch():
        pass  # an empty batch changes nothing
    made = append(log, 0, 5) + append(log, 5, 1) + append(log, 6, 7)
    assert [e.seq for e in made] == list(range(13))
    assert log.size() == 13
    stored = list(log.entries())
    assert stored == [e.to_bytes() for e in made]
    assert list(log.entries(4, 9)) == stored[4:9]
    assert list(log.entries(10, 99)) == stored[10:]
    assert list(log.entries(13)) == []
    assert log.entry(12) == made[12]
    assert [json.loads(b)["seq"] for b in stored] == list(range(13))
    with pytest.raises(TransferLogError):
        log.entry(13)


def test_the_root_is_the_tree_over_the_leaf_hashes(log: TransferLog) -> None:
    assert log.root() == merkle.EMPTY_ROOT
    made = append(log, 0, 11)
    leaves = [merkle.leaf_hash(e.to_bytes()) for e in made]
    assert log.leaf_hashes() == leaves
    assert log.root() == merkle.root(leaves)
    for size in (0, 1, 6, 11):
        assert log.root(size) == merkle.root(leaves[:size])
    with pytest.raises(TransferLogError):
        log.root(12)


def test_a_batch_that_raises_leaves_nothing(log: TransferLog) -> None:
    append(log, 0, 3)
    root = log.root()
    with pytest.raises(RuntimeError), log.batch() as b:
        b.append(draft(3), evidence(3))
        b.append(draft(4), evidence(4))
        raise RuntimeError("the router died mid-batch")
    assert log.size() == 3 and log.root() == root
    assert log.find(mid(3)) == []
    with pytest.raises(TransferLogError):
        log.evidence(3)
    assert [e.seq for e in append(log, 3, 2)] == [3, 4]


def test_an_invalid_draft_is_refused_and_its_batch_rolled_back(log: TransferLog) -> None:
    with pytest.raises(EntryFormatError), log.batch() as b:
        b.append(draft(0), evidence(0))
        b.append(draft(1, sender="Jane Example"), evidence(1))
    assert log.size() == 0


def test_entries_are_visible_only_after_commit(open_log: OpenLog) -> None:
    writer, reader = open_log(), open_log()
    with writer.batch() as b:
        b.append(draft(0), evidence(0))
        assert b.size == 1
        assert reader.size() == 0 and reader.find(mid(0)) == []
        assert list(reader.entries()) == []
    assert reader.size() == 1 and len(reader.find(mid(0))) == 1


def test_the_log_survives_reopening(open_log: OpenLog) -> None:
    first = open_log()
    append(first, 0, 4)
    root = first.root()
    first.close()
    again = open_log()
    assert again.size() == 4 and again.root() == root
    assert append(again, 4, 1)[0].seq == 4


def test_evidence_lines_are_kept_exactly_and_bound_to_their_entries(log: TransferLog) -> None:
    unreadable = Evidence(header=None, signatures=None, publisher=None, body_sha256=sha("x"))
    with log.batch() as b:
        routed = b.append(draft(0), evidence(0))
        refused = b.append(draft(1, **{**UNREADABLE, "reason": "too_large"},
                                 header_sha256=sha("x")), unreadable)
    assert log.evidence(0) == evidence(0)
    assert log.evidence(1) == unreadable
    lines = list(log.evidence_lines())
    assert lines == [evidence(0).line(0), unreadable.line(1)]
    assert [sha(x) for x in lines] == [routed.evidence_sha256, refused.evidence_sha256]
    assert (routed.publisher, refused.publisher) == (evidence(0).publisher, None)
    assert list(log.evidence_lines(1)) == lines[1:]


def test_evidence_that_does_not_fit_its_draft_is_refused(log: TransferLog) -> None:
    # A parsed header must come with its evidence; a check-1 refusal without.
    no_header = Evidence(header=None, signatures=None, publisher=None, body_sha256=sha("x"))
    with pytest.raises(EntryFormatError), log.batch() as b:
        b.append(draft(0), no_header)
    with pytest.raises(EntryFormatError), log.batch() as b:
        b.append(draft(0, **UNREADABLE, header_sha256=sha("x")), evidence(0))
    assert log.size() == 0


# --- finding earlier entries -----------------------------------------------------------


def test_find_sees_committed_entries_and_the_batch_its_own(log: TransferLog) -> None:
    append(log, 0, 2)
    found = log.find(mid(1))
    assert [(m.message_id, m.decision, m.sender) for m in found] == [
        (mid(1), "routed", "west-yorkshire-police/police-safeguarding")]
    with log.batch() as b:
        b.append(draft(5, decision="refused", reason="sender_mismatch"), evidence(5))
        b.append(draft(5, header_sha256=sha("other")), evidence(6))
        seen = b.find(mid(5))
        assert [(m.decision, m.reason, m.authenticated) for m in seen] == [
            ("refused", "sender_mismatch", False), ("routed", None, True)]
        assert [m.decision for m in b.find(mid(1))] == ["routed"]
    assert len(log.find(mid(5))) == 2
    assert [e.seq for e in log.find_entries(mid(5))] == [2, 3]
    assert log.find(mid(99)) == []


def test_find_logged_needs_the_same_id_header_and_body(log: TransferLog) -> None:
    append(log, 0, 1)
    e = log.entry(0)
    body = sha("body 0")
    user = "west-yorkshire-police.police-safeguarding"
    assert log.find_logged(mid(0), e.header_sha256, body) == e
    assert log.find_logged(mid(0), e.header_sha256, body, user) == e
    assert log.find_logged(mid(0), e.header_sha256, body, ANY_PUBLISHER) == e
    assert log.find_logged(mid(0), e.header_sha256, sha("another body")) is None
    assert log.find_logged(mid(0), sha("another header"), body) is None
    assert log.find_logged(mid(1), e.header_sha256, body) is None
    # The same bytes published by another unit are not a redelivery of this one.
    assert log.find_logged(mid(0), e.header_sha256, body, "leeds-cc.front-door") is None
    assert log.find_logged(mid(0), e.header_sha256, body, None) is None


def test_find_logged_finds_unreadable_bodies_and_the_batch_its_own(log: TransferLog) -> None:
    body = sha(b"\xff not an envelope")
    unreadable = draft(0, **UNREADABLE, header_sha256=body)
    with log.batch() as b:
        assert b.find_logged(None, body, body, None) is None
        first = b.append(unreadable, Evidence(None, None, None, body))
        assert b.find_logged(None, body, body, None) == first
        assert b.find_logged(None, body, body, "someone.else") is None
        routed = b.append(draft(1), evidence(1))
        assert b.find_logged(mid(1), routed.header_sha256, sha("body 1")) == routed
    assert log.find_logged(None, body, body) == first


# --- checkpoints -----------------------------------------------------------------------


def test_no_more_than_1000_entries_ever_follow_a_checkpoint(log: TransferLog) -> None:
    assert log.checkpoint_if_due(T0) is None  # nothing logged, nothing to sign
    append(log, 0, 1)
    first = log.checkpoint_if_due(T0)
    assert first is not None and open_checkpoint(first, log.verifier).size == 1
    assert log.checkpoint_if_due(T0) is None
    append(log, 1, 999)
    assert log.checkpoint_if_due(T0 + timedelta(seconds=5)) is None  # 999 new, 5 s
    assert len(log.checkpoints()) == 1
    # The batch that brings the 1,000th entry since the last checkpoint signs
    # at exactly that size, wherever in the batch it falls.
    append(log, 1000, 2500)
    sizes = [open_checkpoint(n, log.verifier).size for n in log.checkpoints()]
    assert sizes == [1, 1001, 2001, 3001]
    for note in log.checkpoints():
        cp = open_checkpoint(note, log.verifier)
        assert (cp.origin, cp.root) == (ORIGIN, log.root(cp.size))
    assert log.checkpoint_if_due(T0 + timedelta(seconds=5)) is None  # 499 since, 5 s
    assert log.checkpoint_if_due(T0 + timedelta(seconds=10)) is not None


def test_a_batch_that_signs_and_then_fails_leaves_no_checkpoint(log: TransferLog) -> None:
    append(log, 0, 1)
    log.checkpoint(T0)
    with pytest.raises(RuntimeError), log.batch() as b:
        for i in range(1, 1200):
            b.append(draft(i), evidence(i))
        raise RuntimeError("gone")
    assert len(log.checkpoints()) == 1 and log.size() == 1


def test_checkpoints_fall_due_by_time_only_when_entries_arrived(log: TransferLog) -> None:
    append(log, 0, 1)
    assert log.checkpoint_if_due(T0) is not None
    assert log.checkpoint_if_due(T0 + timedelta(minutes=5)) is None  # no new entries
    append(log, 1, 3)
    assert log.checkpoint_if_due(T0 + timedelta(seconds=9)) is None
    note = log.checkpoint_if_due(T0 + timedelta(seconds=10))
    assert note is not None and open_checkpoint(note, log.verifier).size == 4
    assert log.checkpoint_if_due(T0 + timedelta(seconds=30)) is None


def test_checkpoint_signs_the_current_size_once(log: TransferLog) -> None:
    empty = log.checkpoint(T0)
    assert open_checkpoint(empty, log.verifier).root == merkle.EMPTY_ROOT
    append(log, 0, 3)
    note = log.checkpoint(T0)
    assert log.checkpoint(T0 + timedelta(seconds=1)) == note
    append(log, 3, 2)
    later = log.checkpoint(T0 + timedelta(seconds=2))
    assert log.checkpoints() == [empty, note, later]
    assert log.checkpoints(upto=3) == [empty, note]
    assert log.latest_checkpoint() == later
    assert log.checkpoint_at(3) == note and log.checkpoint_at(4) is None
    text = verify_note(later, log.verifier)
    assert text == Checkpoint(ORIGIN, 5, log.root()).text()
    assert log.verifier.line().startswith(ORIGIN + "+")


def test_proofs_from_the_log_verify_against_its_checkpoints(log: TransferLog) -> None:
    append(log, 0, 6)
    small = open_checkpoint(log.checkpoint(T0), log.verifier)
    append(log, 6, 7)
    big = open_checkpoint(log.checkpoint(T0), log.verifier)
    for seq in range(big.size):
        proof = log.inclusion_proof(seq, big.size)
        assert merkle.verify_inclusion(log.entry(seq).leaf_hash, seq, big.size, proof, big.root)
    proof = log.inclusion_proof(2, small.size)
    assert merkle.verify_inclusion(log.entry(2).leaf_hash, 2, small.size, proof, small.root)
    consistency = log.consistency_proof(small.size, big.size)
    assert merkle.verify_consistency(small.size, big.size, small.root, big.root, consistency)
    with pytest.raises(TransferLogError):
        log.inclusion_proof(13, 13)
    with pytest.raises(TransferLogError):
        log.inclusion_proof(0, 14)
    with pytest.raises(TransferLogError):
        log.consistency_proof(7, 6)


def _check_proofs_against_the_leaves(log: TransferLog, leaves: list[bytes]) -> None:
    for size in (1, 255, 256, 257, 512, 700, 1024, len(leaves)):
        assert log.root(size) == merkle.root(leaves[:size])
        for seq in {0, size // 3, size - 1}:
            assert log.inclusion_proof(seq, size) == merkle.inclusion_proof(leaves, seq, size)
        for old in {1, min(256, size), size // 2 or 1}:
            assert log.consistency_proof(old, size) == merkle.consistency_proof(
                leaves, old, size)


def test_proofs_and_old_roots_come_from_stored_subtree_hashes(
        log: TransferLog, log_url: str) -> None:
    made: list[Entry] = []
    for count in (100, 300, 1, 255, 400, 244):  # batches across subtree boundaries
        made += append(log, len(made), count)
    leaves = [e.leaf_hash for e in made]
    _check_proofs_against_the_leaves(log, leaves)
    engine = sa.create_engine(log_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT level, idx, hash FROM subtrees ORDER BY idx")).all()
    engine.dispose()
    assert [(r.level, r.idx) for r in rows] == [(1, i) for i in range(len(made) // 256)]
    assert [bytes(r.hash) for r in rows] == [merkle.root(leaves[i * 256:(i + 1) * 256])
                                             for i in range(len(made) // 256)]


def test_sqlite_a_log_from_before_subtree_hashes_proves_and_gets_them_when_written(
        open_log: OpenLog, log_url: str) -> None:
    writer = open_log()
    leaves = [e.leaf_hash for e in append(writer, 0, 1100)]
    writer.close()
    db = sqlite3.connect(log_url.removeprefix("sqlite:///"))
    db.execute("DROP TABLE subtrees")
    db.commit()
    _check_proofs_against_the_leaves(open_log(signer=None), leaves)
    _check_proofs_against_the_leaves(open_log(), leaves)  # the writer fills them in
    assert db.execute("SELECT count(*) FROM subtrees").fetchone() == (4,)
    db.close()


# --- opening ---------------------------------------------------------------------------


def test_opened_without_a_key_the_log_reads_but_does_not_sign(open_log: OpenLog) -> None:
    writer = open_log()
    append(writer, 0, 2)
    reader = open_log(signer=None)
    assert reader.size() == 2 and not reader.can_sign
    with pytest.raises(TransferLogError):
        reader.checkpoint(T0)
    with pytest.raises(TransferLogError):
        _ = reader.verifier


# --- several writers -------------------------------------------------------------------


def test_two_logs_appending_from_two_threads_keep_seq_without_gaps(
        open_log: OpenLog) -> None:
    logs = [open_log(), open_log()]
    per_thread, batch = 15, 8
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for k in range(per_thread):
                first = (n * per_thread + k) * batch
                with logs[n].batch() as b:
                    for i in range(first, first + batch):
                        b.append(draft(i), evidence(i))
                logs[n].checkpoint_if_due(T0 + timedelta(seconds=k * 20))
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = 2 * per_thread * batch
    entries = [Entry.from_bytes(b) for b in logs[0].entries()]
    assert [e.seq for e in entries] == list(range(total))
    assert sorted(e.message_id or "" for e in entries) == sorted(mid(i) for i in range(total))
    assert logs[1].root() == merkle.root([e.leaf_hash for e in entries])
    sizes = [open_checkpoint(n, logs[0].verifier).size for n in logs[0].checkpoints()]
    assert sizes == sorted(set(sizes))
    for note in logs[1].checkpoints():
        cp = open_checkpoint(note, logs[1].verifier)
        assert cp.root == merkle.root([e.leaf_hash for e in entries[:cp.size]])


# --- SQLite only -----------------------------------------------------------------------


def test_sqlite_runs_in_wal_with_full_sync_and_refuses_updates(log: TransferLog,
                                                               log_url: str) -> None:
    append(log, 0, 2)
    log.checkpoint(T0)
    path = sa.engine.make_url(log_url).database
    assert path is not None
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for statement in ("UPDATE entries SET body = x'00' WHERE seq = 0",
                          "DELETE FROM entries WHERE seq = 1",
                          "UPDATE evidence SET publisher = 'x'",
                          "UPDATE evidence SET line = x'00'",
                          "DELETE FROM checkpoints"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                raw.execute(statement)
    finally:
        raw.close()
    assert log.size() == 2 and log.entry(0) == Entry.with_evidence(draft(0), 0, evidence(0))[0]
    with log._engine.connect() as conn:  # the pragma is per connection
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_sqlite_a_plain_path_is_a_file_and_memory_is_refused(tmp_path: Any) -> None:
    log = TransferLog.open(str(tmp_path / "plain.db"), signer=SIGNER, origin=ORIGIN)
    append(log, 0, 1)
    log.close()
    assert (tmp_path / "plain.db").exists()
    with pytest.raises(TransferLogError):
        TransferLog.open("sqlite://", signer=SIGNER, origin=ORIGIN)
    with pytest.raises(TransferLogError):
        TransferLog.open(str(tmp_path / "absent.db"), signer=None, origin=ORIGIN)
    assert not (tmp_path / "absent.db").exists()  # not created by looking


def test_sqlite_a_log_of_the_format_before_the_amendments_is_refused_clearly(
        tmp_path: Any) -> None:
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)
    raw.executescript(
        "CREATE TABLE evidence (seq INTEGER PRIMARY KEY, header BLOB, signatures TEXT,"
        " user_id VARCHAR(255), body_sha256 VARCHAR(64) NOT NULL);"
        "CREATE TABLE frontier (id INTEGER PRIMARY KEY, size BIGINT NOT NULL,"
        " hashes BLOB NOT NULL);")
    raw.close()
    for signer in (SIGNER, None):
        with pytest.raises(TransferLogError, match="before the wire spec amendments"):
            TransferLog.open(str(path), signer=signer, origin=ORIGIN)
