"""The checker counts what it should: each kind of fault on a small made-up history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from checker import History, Journal, check

SENDER, DOOR, OTHER = "a/sender", "b/door", "c/other"


def _journal(path: Path, *lines: tuple[str, ...]) -> Path:
    j = Journal(path)
    for words in lines:
        j.add(*words)
    j.close()
    return path


def _entry(mid: str | None, *, decision: str = "routed", kind: str = "referral",
           in_reply_to: str | None = None, body_sha: str = "0" * 64) -> dict[str, Any]:
    return {"message_id": mid, "decision": decision, "kind": kind, "in_reply_to": in_reply_to,
            "header_sha256": body_sha}


def _history(tmp_path: Path, sent: list[str], confirmed: list[str], written: list[str],
             writer: str = DOOR) -> History:
    sender = _journal(tmp_path / "s.journal", *(("A", k, DOOR) for k in sent),
                      *(("C", k, "1.0") for k in confirmed))
    recipient = _journal(tmp_path / "r.journal", *(("W", k) for k in written))
    return History.read({SENDER: sender}, {writer: recipient})


def test_a_clean_history_counts_nothing(tmp_path: Path) -> None:
    h = _history(tmp_path, ["m1", "m2"], ["m1", "m2"], ["m1", "m2"])
    r = check(h, [_entry("m1"), _entry("m2"), _entry("r1", kind="receipt", in_reply_to="m1")])
    assert r.counts == (0, 0, 0)
    assert (r.sent, r.confirmed, r.processed, r.receipts) == (2, 2, 2, 1)


def test_confirmed_but_never_processed_nor_refused_is_lost(tmp_path: Path) -> None:
    h = _history(tmp_path, ["m1", "m2", "m3"], ["m1", "m2", "m3"], ["m1"])
    r = check(h, [_entry("m1"), _entry("m2", decision="refused")])
    assert r.lost == ["m3"]


def test_unconfirmed_and_undelivered_is_not_lost(tmp_path: Path) -> None:
    # Nothing was promised to the sender (its publish was never confirmed).
    h = _history(tmp_path, ["m1", "m2"], ["m1"], ["m1"])
    assert check(h, [_entry("m1")]).counts == (0, 0, 0)


def test_dead_lettered_is_not_lost_but_is_reported(tmp_path: Path) -> None:
    h = _history(tmp_path, ["m1", "m2"], ["m1", "m2"], ["m1"])
    r = check(h, [_entry("m1")], dead_lettered=["m2"])
    assert r.counts == (0, 0, 0) and r.dead_lettered == 1


def test_written_twice_logged_twice_or_two_receipts_are_duplicates(tmp_path: Path) -> None:
    h = _history(tmp_path, ["m1", "m2", "m3"], ["m1", "m2", "m3"], ["m1", "m1", "m2", "m3"])
    r = check(h, [_entry("m1"), _entry("m2"), _entry("m2"), _entry("m3"),
                  _entry("r1", kind="receipt", in_reply_to="m3"),
                  _entry("r2", kind="receipt", in_reply_to="m3")])
    assert r.duplicated == ["m1", "m2", "receipt-for:m3"]


def test_processed_or_logged_but_never_sent_is_unexpected(tmp_path: Path) -> None:
    h = _history(tmp_path, ["m1"], ["m1"], ["m1", "ghost"])
    r = check(h, [_entry("m1"), _entry("other"), _entry(None, decision="refused",
                                                        body_sha="f" * 64),
                  _entry("r9", kind="receipt", in_reply_to="never-processed")])
    assert r.unexpected == ["ghost", "other", "r9", "sha256:" + "f" * 64]


def test_processed_by_another_unit_is_unexpected(tmp_path: Path) -> None:
    h = _history(tmp_path, ["m1"], ["m1"], ["m1"], writer=OTHER)
    assert check(h, [_entry("m1")]).unexpected == ["m1"]


def test_a_line_cut_short_by_a_kill_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    path.write_text("A m1 b/door\nC m1 1.0\nA m2")  # killed mid-line
    h = History.read({SENDER: path}, {})
    assert h.attempted == {"m1": DOOR} and h.confirmed == {"m1"}
