"""The OpenAPI document of the gateway's API, generated from its marshmallow schemas."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from agency.gateway.schemas import (
    CASE_RE,
    UUID_RE,
    AcknowledgeSchema,
    CaseRecordSchema,
    ConsentSchema,
    ErrorSchema,
    NotSharedSchema,
    PermissionsSchema,
    ReceivedSchema,
    RecordedSchema,
    StatusSchema,
    SubmissionSchema,
    SubmitResultSchema,
)

__all__ = ["openapi_document"]

_ERRORS = {
    "400": "the body is not JSON",
    "401": "no token, or not an active one",
    "403": "the token's unit may not do this",
    "404": "no such message or case",
    "409": "the message is not in a state for this",
    "413": "the body is too large",
    "415": "the body is not application/json",
    "422": "the body is not valid, or the protocol does not permit it (reason and sentence)",
    "503": "the gateway's database cannot be reached",
}


def _ref(schema: Any) -> Any:
    # A bare name would be looked up in marshmallow's registry of every schema class
    # imported (the registry's has an "Error" too); a $ref names this document's own.
    return {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema


def _json(schema: Any, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {c: _json("Error", _ERRORS[c]) for c in codes}


def _op(summary: str, responses: dict[str, Any], *, body: Any = None, optional: bool = False,
        params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses,
                                                            **_errors("401", "503")},
                          "security": [{"bearerAuth": []}]}
    if body is not None:
        op["requestBody"] = {"required": not optional,
                             "content": {"application/json": {"schema": _ref(body)}}}
        op["responses"].update(_errors("400", "413", "415", "422"))
    if params:
        op["parameters"] = params
        op["responses"].update(_errors("422"))
    return op


def _param(name: str, pattern: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "pattern": pattern}}


def openapi_document() -> dict[str, Any]:
    spec = APISpec(title="infoshare gateway", version="1", openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "One organisation's gateway: what its units may send, "
                                        "sending, status, inbox, case records."})
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    for name, schema in (("Error", ErrorSchema), ("Submission", SubmissionSchema),
                         ("SubmitResult", SubmitResultSchema), ("Status", StatusSchema),
                         ("Received", ReceivedSchema), ("Acknowledge", AcknowledgeSchema),
                         ("Permissions", PermissionsSchema), ("NotShared", NotSharedSchema),
                         ("ConsentDiscussion", ConsentSchema), ("Recorded", RecordedSchema),
                         ("CaseRecord", CaseRecordSchema)):
        spec.components.schema(name, schema=schema)
    mid = _param("message_id", UUID_RE)
    spec.path(path="/api/v1/permissions", operations={"get": _op(
        "What this unit may send: purposes, recipients, categories, consent, grounds",
        {"200": _json("Permissions", "the unit's purposes")})})
    spec.path(path="/api/v1/messages", operations={"post": _op(
        "Submit a referral, request, response or declined",
        {"202": _json("SubmitResult", "accepted: queued, or waiting for a manager"),
         **_errors("403", "409")}, body="Submission")})
    spec.path(path="/api/v1/messages/{message_id}", operations={"get": _op(
        "The status of a sent message", {"200": _json("Status", "its status"),
                                         **_errors("404")}, params=[mid])})
    spec.path(path="/api/v1/inbox", operations={"get": _op(
        "Received messages (codes and ids only)",
        {"200": _json({"type": "array", "items": {"$ref": "#/components/schemas/Status"}},
                      "the inbox")})})
    spec.path(path="/api/v1/inbox/{message_id}", operations={"get": _op(
        "Fetch a received record, decrypted and verified (its receipt then goes)",
        {"200": _json("Received", "the record"), **_errors("404")}, params=[mid])})
    spec.path(path="/api/v1/inbox/{message_id}/acknowledge", operations={"post": _op(
        "Acknowledge a received record, optionally filing it under a case",
        {"200": _json("Status", "acknowledged"), **_errors("404")}, body="Acknowledge",
        optional=True, params=[mid])})
    spec.path(path="/api/v1/cases/{case_reference}", operations={"get": _op(
        "Everything shared and received under one case reference",
        {"200": _json("CaseRecord", "the case record")},
        params=[_param("case_reference", CASE_RE)])})
    spec.path(path="/api/v1/decisions-not-to-share", operations={"post": _op(
        "Record a decision not to share, with its reasons",
        {"201": _json("Recorded", "recorded"), **_errors("403")}, body="NotShared")})
    spec.path(path="/api/v1/consent-discussions", operations={"post": _op(
        "Record a consent discussion with the child or family",
        {"201": _json("Recorded", "recorded"), **_errors("403")},
        body="ConsentDiscussion")})
    return spec.to_dict()
