"""The auditors' questions asked of a :class:`~audit.log_index.LogIndex`: pages, counts, rows.

The filters are :class:`audit.reporting.ReportFilters`, with the meaning
``infoshare audit report`` gives them (a test holds the two to the same
answers); here they become SQL over indexed columns, so a page costs index
look-ups and one counting pass, never a read of the log.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

from audit.log_index import LogIndex
from audit.reporting import _ROW_HEADINGS, Report, ReportFilters, ReportRow, _cells

#: Rows on one page of the timeline.
PER_PAGE: Final = 50


def where(f: ReportFilters) -> tuple[str, list[Any]]:
    """The SQL condition (and its parameters) that admits what ``f.admits`` admits."""
    sql: list[str] = []
    params: list[Any] = []
    if f.date_from is not None:
        sql.append("at >= ?")
        params.append(f"{f.date_from.isoformat()}T00:00:00Z")
    if f.date_to is not None:
        sql.append("at < ?")
        params.append(f"{(f.date_to + timedelta(days=1)).isoformat()}T00:00:00Z")
    if f.organisation is not None:
        sql.append("(sender_org = ? OR recipient_org = ?)")
        params += [f.organisation, f.organisation]
    if f.unit is not None:
        sql.append("(sender = ? OR recipient = ?)")
        params += [f.unit, f.unit]
    for column, value in (("purpose", f.purpose), ("decision", f.decision),
                          ("ground", f.ground), ("publisher", f.publisher_user),
                          ("kind", f.kind), ("reason", f.reason), ("consent", f.consent)):
        if value is not None:
            sql.append(f"{column} = ?")
            params.append(value)
    return (" AND ".join(sql) or "1"), params


def row_of(r: sqlite3.Row) -> ReportRow:
    cats = r["categories"]
    return ReportRow(seq=int(r["seq"]), time=r["at"], kind=r["kind"], protocol=r["protocol"],
                     purpose=r["purpose"], sender=r["sender"], recipient=r["recipient"],
                     publisher=r["publisher"], categories=tuple(cats.split()) if cats else (),
                     consent=r["consent"], ground=r["ground"], decision=r["decision"],
                     reason=r["reason"], message_id=r["message_id"])


_ROW_SQL: Final = ("SELECT seq, at, kind, protocol, purpose, sender, recipient, publisher, "
                   "categories, consent, ground, decision, reason, message_id FROM entries")


@dataclass
class TimelinePage:
    rows: list[ReportRow]
    total: int
    by_decision: dict[str, int]
    #: Keyset paging: the seq to show entries below (older), or above (newer).
    older: int | None
    newer: int | None


def timeline(index: LogIndex, f: ReportFilters, *, before: int | None = None,
             after: int | None = None, per_page: int = PER_PAGE) -> TimelinePage:
    """Newest first, ``per_page`` at a time, with the count of every match by decision."""
    cond, params = where(f)
    db = index.db()
    by_decision = {str(r[0]): int(r[1]) for r in db.execute(
        f"SELECT decision, COUNT(*) FROM entries WHERE {cond} GROUP BY decision", params)}
    if after is not None:
        found = db.execute(f"{_ROW_SQL} WHERE {cond} AND seq > ? ORDER BY seq ASC LIMIT ?",
                           [*params, after, per_page + 1]).fetchall()
        more_newer = len(found) > per_page
        page = list(reversed(found[:per_page]))
        more_older = bool(page) and db.execute(
            f"SELECT 1 FROM entries WHERE {cond} AND seq < ? LIMIT 1",
            [*params, page[-1]["seq"]]).fetchone() is not None
    else:
        bound = [] if before is None else [before]
        found = db.execute(
            f"{_ROW_SQL} WHERE {cond}{'' if before is None else ' AND seq < ?'} "
            "ORDER BY seq DESC LIMIT ?", [*params, *bound, per_page + 1]).fetchall()
        more_older = len(found) > per_page
        page = found[:per_page]
        more_newer = before is not None and bool(page) and db.execute(
            f"SELECT 1 FROM entries WHERE {cond} AND seq > ? LIMIT 1",
            [*params, page[0]["seq"]]).fetchone() is not None
    rows = [row_of(r) for r in page]
    return TimelinePage(rows=rows, total=sum(by_decision.values()), by_decision=by_decision,
                        older=rows[-1].seq if rows and more_older else None,
                        newer=rows[0].seq if rows and more_newer else None)


def counts(index: LogIndex, f: ReportFilters) -> Report:
    """A report's counts (no rows) over what ``f`` admits: by purpose and month, refusals
    by reason, routed shares without consent by ground."""
    return index.cached(("counts", f), lambda: _counts(index, f))


def _counts(index: LogIndex, f: ReportFilters) -> Report:
    cond, params = where(f)
    db = index.db()
    out = Report(f)
    for purpose, month, decision, n in db.execute(
            f"SELECT COALESCE(purpose, '-'), substr(at, 1, 7), decision, COUNT(*) FROM entries "
            f"WHERE {cond} GROUP BY 1, 2, 3", params):
        out.by_purpose_month.setdefault((purpose, month), Counter())[decision] = int(n)
        out.entries += int(n)
        out.routed += int(n) if decision == "routed" else 0
    for reason, n in db.execute(
            f"SELECT COALESCE(reason, '-'), COUNT(*) FROM entries WHERE {cond} "
            "AND decision = 'refused' GROUP BY 1", params):
        out.refusals_by_reason[reason] = int(n)
    for ground, status, n in db.execute(
            f"SELECT COALESCE(ground, '-'), consent, COUNT(*) FROM entries WHERE {cond} "
            "AND decision = 'routed' AND consent IN ('not_sought', 'refused') GROUP BY 1, 2",
            params):
        out.without_consent_by_ground.setdefault(ground, Counter())[status] = int(n)
    return out


def rows(index: LogIndex, f: ReportFilters) -> Iterator[ReportRow]:
    """Every row ``f`` admits, oldest first, read a page at a time."""
    cond, params = where(f)
    last = -1
    while True:
        page = index.db().execute(f"{_ROW_SQL} WHERE {cond} AND seq > ? ORDER BY seq LIMIT 2000",
                                  [*params, last]).fetchall()
        if not page:
            return
        for r in page:
            yield row_of(r)
        last = int(page[-1]["seq"])


def csv_lines(index: LogIndex, f: ReportFilters) -> Iterator[str]:
    """The filtered view as CSV, the columns of ``audit report --format csv``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_ROW_HEADINGS)
    for n, r in enumerate(rows(index, f), 1):
        w.writerow(_cells(r))
        if n % 500 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def json_chunks(index: LogIndex, f: ReportFilters) -> Iterator[str]:
    """The filtered view as ``audit report --format json`` writes it (rows and counts),
    streamed."""
    summary = counts(index, f).to_dict()
    yield '{\n  "filters": ' + json.dumps(summary["filters"]) + ',\n  "rows": ['
    first = True
    for r in rows(index, f):
        d = {**r.__dict__, "categories": list(r.categories)}
        yield ("\n    " if first else ",\n    ") + json.dumps(d)
        first = False
    yield "\n  ]"
    for key in ("by_purpose_month", "refusals_by_reason", "without_consent_by_ground"):
        yield f',\n  "{key}": ' + json.dumps(summary[key])
    yield "\n}\n"


def parse_day(text: str) -> date | None:
    """A filter's date (YYYY-MM-DD), or None for an empty field.

    Raises:
        ValueError: not such a date.
    """
    return date.fromisoformat(text) if text else None
