"""Pages for practitioners and managers: compose, approvals, inbox, sent, case record,
decisions not to share. Server-rendered Jinja, CSRF on every form (Flask-WTF), no
inline script (the CSP forbids it)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from agency.gateway.auth import Authenticator
from agency.gateway.errors import GatewayError, Invalid, Refused, WrongPassphrase
from agency.gateway.schemas import CASE_RE
from agency.gateway.service import STATUS_WORDS, Draft, Gateway, RegistryDown
from agency.gateway.store import Account

__all__ = ["pages"]

pages = Blueprint("pages", __name__)
F = TypeVar("F", bound=Callable[..., Any])
TEXT_MAX = 20_000


def gateway() -> Gateway:
    gw: Gateway = current_app.extensions["gateway"]
    return gw


def account() -> Account | None:
    name = session.get("username")
    if not name:
        return None
    found = gateway().store.account(str(name))
    return None if found is None or found.disabled else found


def signed_in(role: str | None = None) -> Callable[[F], F]:
    def wrap(view: F) -> F:
        @wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            who = account()
            if who is None:
                return redirect(url_for("pages.sign_in", next=request.path))
            if role is not None and who.role != role:
                abort(403, f"only a {role} may open this page")
            return view(who, *args, **kwargs)
        return inner  # type: ignore[return-value]
    return wrap


@pages.get("/")
def home() -> Response:
    who = account()
    if who is None:
        return redirect(url_for("pages.sign_in"))
    return redirect(url_for("pages.approvals" if who.role == "manager" else "pages.compose"))


@pages.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    if request.method == "POST":
        auth: Authenticator = current_app.extensions["gateway_auth"]
        who = auth.authenticate(request.form.get("username", "")[:64],
                                request.form.get("password", "")[:1024])
        if who is None:
            flash("That name and password do not match an account here.", "error")
            return render_template("sign_in.html"), 401
        session.clear()
        session["username"] = who.username
        target = request.args.get("next", "")
        return redirect(target if target.startswith("/") and not target.startswith("//")
                        else url_for("pages.home"))
    return render_template("sign_in.html")


@pages.post("/sign-out")
def sign_out() -> Response:
    session.clear()
    return redirect(url_for("pages.sign_in"))


# --- compose ----------------------------------------------------------------------------


def _purposes(who: Account) -> list[dict[str, Any]]:
    return gateway().permissions(who.unit)


def _purpose(who: Account, protocol: str, purpose: str) -> dict[str, Any]:
    for p in _purposes(who):
        if p["protocol"] == protocol and p["purpose"] == purpose:
            return p
    abort(404, f"{purpose} is not a purpose {who.unit} may send for")


def _case(value: str | None) -> str | None:
    import re

    value = (value or "").strip()
    if not value:
        return None
    if not re.fullmatch(CASE_RE, value):
        raise Invalid("a case reference is letters, digits, dots, hyphens and underscores",
                      {"case_reference": ["letters, digits, . _ -"]})
    return value


@pages.get("/compose")
@signed_in("practitioner")
def compose(who: Account) -> Any:
    try:
        purposes = _purposes(who)
    except RegistryDown:
        return render_template("compose_purpose.html", purposes=[], down=True,
                               case=request.args.get("case", ""))
    return render_template("compose_purpose.html", purposes=purposes, down=False,
                           case=request.args.get("case", ""))


@pages.get("/compose/details")
@signed_in("practitioner")
def compose_details(who: Account) -> Any:
    p = _purpose(who, request.args.get("protocol", ""), request.args.get("purpose", ""))
    case = request.args.get("case", "")
    discussions = []
    if case:
        try:
            discussions = gateway().consent_discussions(who.unit, _case(case) or "")
        except Invalid:
            case = ""
    return render_template("compose_details.html", p=p, case=case, form={},
                           discussions=discussions, grounds=gateway().ground_titles())


def _draft_from_form(p: dict[str, Any]) -> Draft:
    form = request.form
    record: dict[str, object] = {}
    for cat in p["data_categories"]:
        text = form.get(f"cat-{cat}", "").strip()
        if text:
            record[cat] = text[:TEXT_MAX]
    kind = form.get("kind", "")
    consent = form.get("consent") or None
    informed = form.get("subject_informed")
    problems: dict[str, list[str]] = {}
    if kind not in p["kinds"]:
        problems["kind"] = [f"choose one of {', '.join(p['kinds'])}"]
    if kind != "declined" and consent not in ("given", "not_sought", "refused"):
        problems["consent"] = ["say whether consent was given, refused or not sought"]
    if informed not in ("yes", "no"):
        problems["subject_informed"] = ["say whether the child or family has been told"]
    if not form.get("reasons", "").strip():
        problems["reasons"] = ["say why this is shared (golden rule 7)"]
    if kind != "declined" and not record:
        problems["record"] = ["write what is to be shared under at least one category"]
    if problems:
        raise Invalid("some answers are missing", problems)
    return Draft(kind=kind, protocol=p["protocol"], purpose=p["purpose"],
                 recipient=form.get("recipient", ""), record=record,
                 reasons=form.get("reasons", "")[:TEXT_MAX],
                 consent=None if kind == "declined" else consent,
                 ground=(form.get("ground") or None) if consent != "given" else None,
                 subject_informed=informed == "yes",
                 in_reply_to=form.get("in_reply_to") or None,
                 case_reference=_case(form.get("case_reference")))


@pages.post("/compose/review")
@signed_in("practitioner")
def compose_review(who: Account) -> Any:
    p = _purpose(who, request.form.get("protocol", ""), request.form.get("purpose", ""))
    try:
        draft = _draft_from_form(p)
        needs_manager, _version = gateway().check(who.unit, f"account:{who.username}", draft)
    except Invalid as e:
        return render_template("compose_details.html", p=p, case=request.form.get(
            "case_reference", ""), form=request.form, problems=e.fields or {"answers": [str(e)]},
            discussions=[],
            grounds=gateway().ground_titles()), 422
    except Refused as e:
        return render_template("compose_refused.html", p=p, reason=e.reason,
                               sentence=e.sentence, form=request.form), 422
    return render_template("compose_review.html", p=p, draft=draft, needs_manager=needs_manager,
                           carried=[(k, v) for k, v in request.form.items(multi=True)
                                    if k != "csrf_token"])


@pages.post("/compose/send")
@signed_in("practitioner")
def compose_send(who: Account) -> Any:
    p = _purpose(who, request.form.get("protocol", ""), request.form.get("purpose", ""))
    try:
        draft = _draft_from_form(p)
        outcome = gateway().submit(who.unit, f"account:{who.username}", draft, origin="page")
    except Refused as e:
        return render_template("compose_refused.html", p=p, reason=e.reason,
                               sentence=e.sentence, form=request.form), 422
    flash(f"{outcome.message_id}: {STATUS_WORDS.get(outcome.status, outcome.status)}"
          + (f" — {outcome.note}" if outcome.note and outcome.status != "awaiting_approval"
             else ""), "ok")
    return redirect(url_for("pages.sent"))


# --- approvals --------------------------------------------------------------------------


@pages.get("/approvals")
@signed_in("manager")
def approvals(who: Account) -> Any:
    return render_template("approvals.html", waiting=gateway().approvals(who.unit))


@pages.post("/approvals/<message_id>/approve")
@signed_in("manager")
def approve(who: Account, message_id: str) -> Any:
    try:
        gateway().approve(message_id, who, request.form.get("passphrase", "")[:1024])
    except WrongPassphrase as e:
        flash(str(e), "error")
        return render_template("approvals.html", waiting=gateway().approvals(who.unit)), 403
    except Refused as e:
        flash(f"{e.reason}: {e.sentence}", "error")
        return render_template("approvals.html", waiting=gateway().approvals(who.unit)), 422
    flash(f"{message_id}: approved, countersigned and queued to send", "ok")
    return redirect(url_for("pages.approvals"))


@pages.post("/approvals/<message_id>/return")
@signed_in("manager")
def return_(who: Account, message_id: str) -> Any:
    try:
        gateway().return_to_sender(message_id, who, request.form.get("reasons", "")[:TEXT_MAX])
    except Invalid:
        flash("Say why it is returned.", "error")
        return render_template("approvals.html", waiting=gateway().approvals(who.unit)), 422
    flash(f"{message_id}: returned to the practitioner", "ok")
    return redirect(url_for("pages.approvals"))


# --- inbox, sent, case record, decisions ------------------------------------------------


@pages.get("/inbox")
@signed_in()
def inbox(who: Account) -> Any:
    return render_template("inbox.html", messages=gateway().inbox(who.unit),
                           words=STATUS_WORDS)


@pages.route("/inbox/<message_id>", methods=["GET", "POST"])
@signed_in()
def open_record(who: Account, message_id: str) -> Any:
    case = _case(request.form.get("case_reference")) if request.method == "POST" else None
    m = gateway().fetch(who.unit, message_id, case_reference=case)
    if case:
        flash(f"filed under case {case}", "ok")
    return render_template("record.html", m=m, words=STATUS_WORDS)


@pages.get("/sent")
@signed_in()
def sent(who: Account) -> Any:
    msgs = gateway().store.messages(unit=who.unit, direction="out")
    return render_template("sent.html", messages=msgs, words=STATUS_WORDS)


@pages.route("/cases", methods=["GET", "POST"])
@signed_in()
def case_record(who: Account) -> Any:
    ref = _case(request.values.get("case_reference"))
    if request.method == "POST" and ref:
        gateway().record_consent(who.unit, f"account:{who.username}", case_reference=ref,
                                 asked=request.form.get("asked", "")[:200],
                                 asked_at=request.form.get("asked_at", "")[:20],
                                 response=request.form.get("response", ""),
                                 notes=request.form.get("notes", "")[:TEXT_MAX])
        flash("consent discussion recorded", "ok")
        return redirect(url_for("pages.case_record", case_reference=ref))
    record = gateway().case_record(who.unit, ref) if ref else None
    return render_template("case.html", ref=ref or "", record=record, words=STATUS_WORDS)


@pages.route("/not-shared", methods=["GET", "POST"])
@signed_in()
def not_shared(who: Account) -> Any:
    if request.method == "POST":
        try:
            ref = _case(request.form.get("case_reference"))
            if ref is None:
                raise Invalid("give the case reference", {"case_reference": ["required"]})
            gateway().decline_to_share(who.unit, f"account:{who.username}",
                                       case_reference=ref,
                                       reasons=request.form.get("reasons", "")[:TEXT_MAX],
                                       purpose=request.form.get("purpose") or None)
        except Invalid as e:
            flash(f"{e}: {', '.join(e.fields)}", "error")
            return render_template("not_shared.html",
                                   decisions=gateway().decisions_not_to_share(who.unit)), 422
        flash("decision not to share recorded", "ok")
        return redirect(url_for("pages.not_shared"))
    return render_template("not_shared.html",
                           decisions=gateway().decisions_not_to_share(who.unit))


@pages.errorhandler(GatewayError)
def gateway_error(e: GatewayError) -> Any:
    from agency.gateway.http import status_of

    return render_template("error.html", code=e.code, message=str(e)), status_of(e)
