"""The auditors' pages: timeline, one entry, charts, report, downloads, sign-in.

Server-rendered; no script. Filters travel in the query string (a GET form
changes nothing), so a filtered view can be bookmarked and its CSV or JSON
downloaded with the same filters. Forms that change something (sign in,
sign out, verify again) are POSTs under Flask-WTF's CSRF protection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flask import (
    Blueprint,
    abort,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from werkzeug.wrappers import Response

from audit import log_queries
from audit.describing import in_words, purpose_title, unit_name
from audit.export_dir import outcome
from audit.log_index import LogIndex
from audit.log_queries import row_of
from audit.reporting import ReportFilters
from audit.web import access
from audit.web.access import site
from audit.web.auth import Reader, Refused
from audit.web.charts import CHARTS
from audit.web.replay_one import replay_entry

P = ParamSpec("P")
R = TypeVar("R")

bp = Blueprint("pages", __name__)

FILTERS = ("from", "to", "organisation", "unit", "purpose", "kind", "decision", "reason",
           "consent", "ground", "publisher")
#: Rows a printable report lists; the CSV holds them all.
REPORT_ROWS = 1_000


def signed_in(view: Callable[P, R]) -> Callable[P, R | Response]:
    @wraps(view)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        if access.page_reader() is None:
            return redirect(url_for("pages.sign_in", next=request.full_path.rstrip("?")))
        site().follow()
        return view(*args, **kwargs)

    return guarded


def _reader() -> Reader | None:
    return access.page_reader()


def _shown_reader() -> Reader | None:
    # For the page header only: an error page must render even when the registry
    # cannot be asked.
    try:
        return access.page_reader()
    except Refused:
        return None


class BadFilter(Exception):
    pass


def filters_from_args() -> ReportFilters:
    a = request.args
    values: dict[str, Any] = {}
    for name in FILTERS:
        text = a.get(name, "").strip()
        if not text:
            continue
        if len(text) > 300 or not text.isprintable():
            raise BadFilter(f"the filter {name} is not a code")
        values[name] = text
    try:
        date_from = log_queries.parse_day(values.pop("from", ""))
        date_to = log_queries.parse_day(values.pop("to", ""))
    except ValueError as e:
        raise BadFilter("a date is YYYY-MM-DD") from e
    if values.get("decision") not in (None, "routed", "refused"):
        raise BadFilter("the decision is routed or refused")
    return ReportFilters(date_from=date_from, date_to=date_to, **values)


def _args(f: ReportFilters) -> dict[str, str]:
    out = {k: v for k, v in f.given().items() if k not in ("date_from", "date_to")}
    if f.date_from is not None:
        out["from"] = f.date_from.isoformat()
    if f.date_to is not None:
        out["to"] = f.date_to.isoformat()
    return out


def _filtered(template: str, **context: Any) -> str | tuple[str, int]:
    try:
        f = filters_from_args()
    except BadFilter as e:
        return render_template(template, error=str(e), filters=ReportFilters(), args={},
                               choices=_choices(), **context), 422
    warnings = site().known(_reader()).warnings(organisation=f.organisation, unit=f.unit,
                                                purpose=f.purpose)
    return render_template(template, filters=f, args=_args(f), warnings=warnings,
                           choices=_choices(), **context)


def _choices() -> dict[str, list[str]]:
    index = site().index
    return {name: index.values(column) for name, column in (
        ("purpose", "purpose"), ("kind", "kind"), ("reason", "reason"),
        ("consent", "consent"), ("ground", "ground"), ("organisation", "sender_org"),
        ("unit", "sender"), ("publisher", "publisher"))}


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    return {"state": site().index.state(), "site_kind": site().kind, "reader": _shown_reader,
            "outcome": outcome, "today": date.today}


@bp.get("/")
def home() -> Response:
    return redirect(url_for("pages.timeline"))


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> str | Response | tuple[str, int]:
    target = request.values.get("next", "")
    if request.method == "GET":
        return render_template("sign_in.html", next=target)
    try:
        access.sign_in(request.form.get("token", "").strip())
    except Refused as e:
        return render_template("sign_in.html", next=target, error=str(e)), e.status
    if not (target.startswith("/") and not target.startswith("//") and "\\" not in target):
        target = url_for("pages.timeline")
    return redirect(target)


@bp.post("/sign-out")
def sign_out() -> Response:
    access.sign_out()
    return redirect(url_for("pages.sign_in"))


@bp.get("/timeline")
@signed_in
def timeline() -> str | tuple[str, int]:
    try:
        f = filters_from_args()
        before = _int_arg("before")
        after = _int_arg("after")
    except BadFilter:
        return _filtered("timeline.html", page=None)
    page = log_queries.timeline(site().index, f, before=before, after=after)
    return _filtered("timeline.html", page=page)


def _int_arg(name: str) -> int | None:
    text = request.args.get(name, "")
    if not text:
        return None
    if not text.isdigit() or len(text) > 16:
        raise BadFilter(f"{name} is a sequence number")
    return int(text)


#: The downloads of a filtered view: what writes them, their type and file name.
_DOWNLOADS: dict[str, tuple[Callable[[LogIndex, ReportFilters], Iterator[str]], str]] = {
    "csv": (log_queries.csv_lines, "text/csv; charset=utf-8"),
    "json": (log_queries.json_chunks, "application/json"),
}


@bp.get("/timeline.<any(csv, json):form>")
@signed_in
def timeline_download(form: str) -> Response:
    f = _filters_or_422()
    write, content_type = _DOWNLOADS[form]
    r = Response(stream_with_context(write(site().index, f)), content_type=content_type)
    r.headers["Content-Disposition"] = f'attachment; filename="transfer-log.{form}"'
    return r


def _filters_or_422() -> ReportFilters:
    try:
        return filters_from_args()
    except BadFilter as e:
        abort(422, str(e))


@bp.get("/entries/<int:seq>")
@signed_in
def entry(seq: int) -> str:
    index = site().index
    row = index.entry_row(seq)
    if row is None:
        abort(404, f"no entry {seq} in the log as indexed")
    r = row_of(row)
    d = site().directory(int(row["registry_version"]), _reader())
    state = index.state()
    proof = None
    if seq < state.checkpoint_size and state.root is not None:
        from audit.web.proof_check import check_inclusion

        proof = check_inclusion(index, bytes(row["body"]), seq, state)
    others = [s for s in index.seqs_of(r.message_id) if s != seq] if r.message_id else []
    replayed = replay_entry(site(), row, _reader())
    return render_template(
        "entry.html", row=r, raw=bytes(row["body"]).decode("ascii"),
        evidence=None if row["evidence"] is None else bytes(row["evidence"]).decode("ascii"),
        words=in_words(r, d), directory=d, version=int(row["registry_version"]),
        sender=unit_name(r.sender, d), recipient=unit_name(r.recipient, d),
        purpose=purpose_title(r.protocol, r.purpose, d), proof=proof, others=others,
        replayed=replayed)


@bp.get("/messages/<message_id>")
@signed_in
def message(message_id: str) -> Response:
    seqs = site().index.seqs_of(message_id)
    if not seqs:
        abort(404, "no entry names that message id")
    return redirect(url_for("pages.entry", seq=seqs[-1]))


def _valid_filters() -> ReportFilters | None:
    """The filters asked for, or None when they are not valid (``_filtered`` says why)."""
    try:
        return filters_from_args()
    except BadFilter:
        return None


@bp.get("/charts")
@signed_in
def charts() -> str | tuple[str, int]:
    f = _valid_filters()
    return _filtered("charts.html",
                     counts=None if f is None else log_queries.counts(site().index, f))


@bp.get("/charts/<name>.svg")
@signed_in
def chart(name: str) -> Response:
    draw = CHARTS.get(name)
    if draw is None:
        abort(404, "no such chart")
    svg = draw(log_queries.counts(site().index, _filters_or_422()))
    r = Response(svg, content_type="image/svg+xml")
    # An image: no script at all, and pygal's own styles inside it.
    r.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return r


@bp.get("/report")
@signed_in
def report() -> str | tuple[str, int]:
    f = _valid_filters()
    if f is None:
        return _filtered("report.html", counts=None, rows=[])
    rows = []
    for r in log_queries.rows(site().index, f):
        rows.append(r)
        if len(rows) > REPORT_ROWS:
            break
    return _filtered("report.html", counts=log_queries.counts(site().index, f),
                     rows=rows[:REPORT_ROWS], more=len(rows) > REPORT_ROWS)


@bp.post("/verify")
@signed_in
def verify_again() -> Response:
    """Rebuild the index from the log, checking every entry and checkpoint again."""
    from audit.web.building import rebuild

    rebuild(site())
    return redirect(url_for("pages.timeline"))
