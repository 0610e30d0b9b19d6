"""The REST API for case systems (``/api/v1``), in the manner of the NHS MESH API.

Bearer tokens, one per case system, each bound to one unit. Bodies are JSON
checked by the marshmallow schemas of :mod:`agency.gateway.schemas`; every
error is JSON with a code and a sentence (see :mod:`agency.gateway.http`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from agency.gateway.errors import Invalid, Unauthenticated
from agency.gateway.schemas import (
    CASE_RE,
    UUID_RE,
    AcknowledgeSchema,
    ConsentSchema,
    NotSharedSchema,
    SubmissionSchema,
)
from agency.gateway.service import Draft, Gateway, describe
from agency.gateway.store import CaseSystem
from protocols.directory import format_time

__all__ = ["api", "token_digest"]

api = Blueprint("api", __name__, url_prefix="/api/v1")


def gateway() -> Gateway:
    gw: Gateway = current_app.extensions["gateway"]
    return gw


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@api.before_request
def authenticate() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("give the case system's token as Authorization: Bearer TOKEN")
    system = gateway().store.case_system(token_digest(token.strip()))
    if system is None:
        raise Unauthenticated("that token is not an active token of this gateway")
    g.case_system = system


def _path(name: str, value: str, pattern: str) -> str:
    if not re.fullmatch(pattern, value):
        raise Invalid(f"{name} is not of its form", {name: [f"must match {pattern}"]})
    return value


def _system() -> CaseSystem:
    system: CaseSystem = g.case_system
    return system


def _body(schema: Schema, optional: bool = False) -> dict[str, Any]:
    if optional and not request.get_data():
        return dict(schema.load({}))
    if not request.is_json:
        raise UnsupportedMediaType("send the body as application/json")
    doc = request.get_json(silent=True)
    if doc is None:
        raise BadRequest("the body is not JSON")
    try:
        return dict(schema.load(doc))
    except ValidationError as e:
        messages = e.messages if isinstance(e.messages, dict) else {"_body": e.messages}
        raise Invalid("the body is not valid: see fields",
                      {str(k): [str(x) for x in (v if isinstance(v, list) else [v])]
                       for k, v in messages.items()}) from None


@api.get("/permissions")
def permissions() -> Response:
    unit = _system().unit
    return jsonify({"unit": unit, "purposes": gateway().permissions(unit)})


@api.post("/messages")
def submit() -> tuple[Response, int]:
    data = _body(SubmissionSchema())
    system = _system()
    outcome = gateway().submit(system.unit, f"case-system:{system.id}", Draft(**data),
                               origin="api")
    return jsonify({"message_id": outcome.message_id, "status": outcome.status,
                    "note": outcome.note}), 202


@api.get("/messages/<message_id>")
def status(message_id: str) -> Response:
    _path("message_id", message_id, UUID_RE)
    return jsonify(describe(gateway().sent(_system().unit, message_id)))


@api.get("/inbox")
def inbox() -> Response:
    return jsonify([describe(m) for m in gateway().inbox(_system().unit)])


def _received(message_id: str, case_reference: str | None = None) -> dict[str, Any]:
    _path("message_id", message_id, UUID_RE)
    m = gateway().fetch(_system().unit, message_id, case_reference=case_reference)
    c = m.content
    return {**describe(m), "record": c.get("record", {}), "reasons": c.get("reasons", ""),
            "consent": c.get("consent"), "ground": c.get("ground"),
            "subject_informed": c.get("subject_informed"),
            "case_reference": c.get("case_reference")}


@api.get("/inbox/<message_id>")
def fetch(message_id: str) -> Response:
    return jsonify(_received(message_id))


@api.post("/inbox/<message_id>/acknowledge")
def acknowledge(message_id: str) -> Response:
    data = _body(AcknowledgeSchema(), optional=True)
    received = _received(message_id, data.get("case_reference"))
    return jsonify({k: v for k, v in received.items()
                    if k not in ("record", "reasons", "consent", "ground",
                                 "subject_informed", "case_reference")})


@api.get("/cases/<case_reference>")
def case(case_reference: str) -> Response:
    _path("case_reference", case_reference, CASE_RE)
    found = gateway().case_record(_system().unit, case_reference)
    return jsonify({"case_reference": case_reference,
                    "messages": [describe(m) for m in found["messages"]],
                    "events": [{"at": format_time(e.at), "type": e.type,
                                "message_id": e.message_id, "reason": e.reason,
                                "details": e.details} for e in found["events"]]})


@api.post("/decisions-not-to-share")
def not_shared() -> tuple[Response, int]:
    data = _body(NotSharedSchema())
    system = _system()
    gateway().decline_to_share(system.unit, f"case-system:{system.id}", **data)
    return jsonify({"recorded": True}), 201


@api.post("/consent-discussions")
def consent() -> tuple[Response, int]:
    data = _body(ConsentSchema())
    system = _system()
    gateway().record_consent(system.unit, f"case-system:{system.id}", **data)
    return jsonify({"recorded": True}), 201
