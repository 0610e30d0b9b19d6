"""One entry's decision re-run for its page, with the entries before it from the index."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from audit.export_dir import outcome
from audit.log_index import LogIndex
from audit.replaying import replay_one
from audit.web.auth import Reader
from audit.web.site import LogSite
from protocols.log_format import Entry, EntryFormatError, Evidence
from protocols.policy import LoggedMessage


@dataclass(frozen=True)
class ReplayView:
    #: None when the decision could not be re-run at all.
    ok: bool | None
    text: str


class IndexHistory:
    """The entries before ``seq`` by message id (a ``policy.LogView``)."""

    def __init__(self, index: LogIndex, seq: int) -> None:
        self._index = index
        self._seq = seq

    def find(self, message_id: str) -> list[LoggedMessage]:
        rows = self._index.db().execute(
            "SELECT body FROM entries JOIN raw USING (seq) WHERE message_id = ? AND seq < ? "
            "ORDER BY seq",
            (message_id, self._seq)).fetchall()
        return [Entry.from_bytes(bytes(r[0])).logged() for r in rows]


def replay_entry(site: LogSite, row: sqlite3.Row, reader: Reader | None) -> ReplayView:
    entry = Entry.from_bytes(bytes(row["body"]))
    if row["evidence"] is None:
        return ReplayView(None, "the log holds no evidence for this entry, so its decision "
                          "cannot be re-run")
    try:
        ev = Evidence.from_line(bytes(row["evidence"]))[1]
    except EntryFormatError as e:
        return ReplayView(False, f"the evidence line is not of its form: {e}")
    directories = site.directories(reader)
    if directories is None:
        return ReplayView(None, "the registry's key is not known here, so the directory the "
                          "decision used cannot be trusted")
    found = replay_one(entry, ev, IndexHistory(site.index, entry.seq), directories)
    if found is None:
        return ReplayView(True, f"the policy, re-run on the evidence against registry version "
                          f"{entry.registry_version}, decides "
                          f"{outcome(entry.decision, entry.reason)}, as logged")
    return ReplayView(False, str(found))
