"""Reports over an export: who shared what with whom, when, for which purpose, on which ground.

Codes only, as the log holds them: no personal data exists here to show.
Each row also names the AMQP user that published the message (``publisher``),
which for a refused message may not be the sender it claims: a unit's
envelope replayed by another unit is refused ``sender_mismatch``, and the
report says who did it.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

from audit.errors import AuditError
from audit.export_dir import (
    ENTRIES,
    PROGRESS_EVERY,
    Failure,
    LineReader,
    Progress,
    read_entries,
)
from protocols.log_format import Entry
from protocols.model import amqp_user


@dataclass(frozen=True)
class ReportFilters:
    """Which entries a report covers; every filter given must hold. Dates are inclusive."""

    date_from: date | None = None
    date_to: date | None = None
    organisation: str | None = None
    unit: str | None = None
    purpose: str | None = None
    decision: str | None = None
    ground: str | None = None
    #: The AMQP user that published (``org.unit``), or the unit's address (``org/unit``).
    publisher: str | None = None
    kind: str | None = None
    reason: str | None = None
    #: The consent status: given, not_sought or refused.
    consent: str | None = None

    def admits(self, e: Entry) -> bool:
        day = e.at[:10]
        if self.date_from is not None and day < self.date_from.isoformat():
            return False
        if self.date_to is not None and day > self.date_to.isoformat():
            return False
        parties = [p for p in (e.sender, e.recipient) if p is not None]
        if self.organisation is not None and self.organisation not in {
                p.split("/")[0] for p in parties}:
            return False
        if self.unit is not None and self.unit not in parties:
            return False
        if self.purpose is not None and e.purpose != self.purpose:
            return False
        if self.decision is not None and e.decision != self.decision:
            return False
        if self.publisher is not None and e.publisher != self.publisher_user:
            return False
        if self.kind is not None and e.kind != self.kind:
            return False
        if self.reason is not None and e.reason != self.reason:
            return False
        if self.consent is not None and (e.consent or {}).get("status") != self.consent:
            return False
        return self.ground is None or (e.consent or {}).get("ground") == self.ground

    @property
    def publisher_user(self) -> str | None:
        return None if self.publisher is None else _user(self.publisher)

    def given(self) -> dict[str, str]:
        """The filters that are set, as text (dates as YYYY-MM-DD)."""
        return {k: (v.isoformat() if isinstance(v, date) else str(v))
                for k, v in asdict(self).items() if v is not None}


def _user(publisher: str) -> str:
    """A unit's AMQP user from its address; anything else as it is given."""
    return amqp_user(publisher) if publisher.count("/") == 1 else publisher


@dataclass(frozen=True)
class ReportRow:
    """Who shared what with whom: codes only, as the log holds them."""

    seq: int
    time: str
    kind: str | None
    protocol: str | None
    purpose: str | None
    sender: str | None
    recipient: str | None
    publisher: str | None
    categories: tuple[str, ...]
    consent: str | None
    ground: str | None
    decision: str
    reason: str | None
    message_id: str | None

    @classmethod
    def of(cls, e: Entry) -> ReportRow:
        consent = e.consent or {}
        return cls(seq=e.seq, time=e.at, kind=e.kind, protocol=e.protocol, purpose=e.purpose,
                   sender=e.sender, recipient=e.recipient, publisher=e.publisher,
                   categories=tuple(e.data_categories or ()), consent=consent.get("status"),
                   ground=consent.get("ground"), decision=e.decision, reason=e.reason,
                   message_id=e.message_id)


_ROW_HEADINGS: Final = ("seq", "time", "kind", "protocol", "purpose", "sender", "recipient",
                        "publisher", "categories", "consent", "ground", "decision", "reason",
                        "message_id")


def _cells(r: ReportRow) -> list[str]:
    return [str(r.seq), r.time, r.kind or "", r.protocol or "", r.purpose or "",
            r.sender or "", r.recipient or "", r.publisher or "", " ".join(r.categories),
            r.consent or "", r.ground or "", r.decision, r.reason or "", r.message_id or ""]


def _table(headings: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headings)]
    line = "  ".join(h.ljust(w) for h, w in zip(headings, widths, strict=True)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]
    return out


@dataclass
class Report:
    """Rows and counts over the entries a report's filters admit."""

    filters: ReportFilters
    rows: list[ReportRow] = field(default_factory=list)
    #: (purpose, "YYYY-MM") -> {"routed": n, "refused": m}
    by_purpose_month: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    refusals_by_reason: Counter[str] = field(default_factory=Counter)
    #: routed shares without consent: ground -> {"not_sought": n, "refused": m}
    without_consent_by_ground: dict[str, Counter[str]] = field(default_factory=dict)

    #: Entries counted, whether or not their rows are kept.
    entries: int = 0
    routed: int = 0

    def add(self, e: Entry, *, keep: bool = True) -> None:
        row = ReportRow.of(e)
        self.entries += 1
        self.routed += row.decision == "routed"
        if keep:
            self.rows.append(row)
        key = (row.purpose or "-", row.time[:7])
        self.by_purpose_month.setdefault(key, Counter())[row.decision] += 1
        if row.decision == "refused":
            self.refusals_by_reason[row.reason or "-"] += 1
        elif row.consent in ("not_sought", "refused"):
            self.without_consent_by_ground.setdefault(row.ground or "-", Counter())[
                row.consent] += 1

    def summary_lines(self) -> list[str]:
        lines = [f"{self.entries} entries: {self.routed} routed, "
                 f"{self.entries - self.routed} refused"]
        for (purpose, month), c in sorted(self.by_purpose_month.items()):
            lines.append(f"{month} {purpose}: {c['routed']} routed, {c['refused']} refused")
        for reason, n in sorted(self.refusals_by_reason.items()):
            lines.append(f"refused {reason}: {n}")
        for ground, c in sorted(self.without_consent_by_ground.items()):
            lines.append(f"shared without consent on {ground}: {c['not_sought']} not sought, "
                         f"{c['refused']} refused")
        return lines

    def to_table(self) -> str:
        out = ["Shares and refusals", ""]
        out += _table(_ROW_HEADINGS, [_cells(r) for r in self.rows])
        out += ["", "By purpose and month", ""]
        out += _table(("month", "purpose", "routed", "refused"), [
            [m, p, str(c["routed"]), str(c["refused"])]
            for (p, m), c in sorted(self.by_purpose_month.items(), key=lambda x: (x[0][1],
                                                                                   x[0][0]))])
        out += ["", "Refusals by reason", ""]
        out += _table(("reason", "count"), [[r, str(n)]
                                            for r, n in sorted(self.refusals_by_reason.items())])
        out += ["", "Shares without consent by ground", ""]
        out += _table(("ground", "not_sought", "refused"), [
            [g, str(c["not_sought"]), str(c["refused"])]
            for g, c in sorted(self.without_consent_by_ground.items())])
        return "\n".join(out) + "\n"

    def to_csv(self) -> str:
        """The rows, one line each (the counts are in the table and JSON forms)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(_ROW_HEADINGS)
        w.writerows(_cells(r) for r in self.rows)
        return buf.getvalue()

    def to_dict(self) -> dict[str, Any]:
        f = self.filters
        return {
            "filters": {k: (v.isoformat() if isinstance(v, date) else v)
                        for k, v in asdict(f).items()},
            "rows": [{**asdict(r), "categories": list(r.categories)} for r in self.rows],
            "by_purpose_month": [
                {"purpose": p, "month": m, "routed": c["routed"], "refused": c["refused"]}
                for (p, m), c in sorted(self.by_purpose_month.items())],
            "refusals_by_reason": dict(sorted(self.refusals_by_reason.items())),
            "without_consent_by_ground": {
                g: {"not_sought": c["not_sought"], "refused": c["refused"]}
                for g, c in sorted(self.without_consent_by_ground.items())},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def report(directory: Path | str, filters: ReportFilters | None = None, *,
           progress: Progress | None = None, rows: bool = True) -> Report:
    """Who shared what with whom, with counts, over an export's entries.

    ``rows=False`` keeps the counts only (a summary of a large log).

    Raises:
        AuditError: entries.jsonl cannot be read or holds a line that is not an entry.
    """
    d = Path(directory)
    out = Report(filters or ReportFilters())
    try:
        total = (d / ENTRIES).stat().st_size
        with open(d / ENTRIES, "rb") as f:
            lines = LineReader(f, ENTRIES, seq_lines=True)
            for e in read_entries(lines):
                if out.filters.admits(e):
                    out.add(e, keep=rows)
                if progress is not None and lines.line % PROGRESS_EVERY == 0:
                    progress(lines.line, lines.bytes_read, total)
    except OSError as e:
        raise AuditError(f"{d}: cannot read {ENTRIES} ({e.strerror})") from e
    except Failure as f:
        raise AuditError(f"{f.where()}: {f}") from f
    return out
