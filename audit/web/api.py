"""The served log's JSON API (``/api/v1``), its marshmallow schemas and OpenAPI document.

Every answer is dumped through its schema, and the OpenAPI document is
generated from the same schemas by apispec, so the document and the answers
cannot drift apart; schemathesis checks them against each other.
"""

from __future__ import annotations

import re
from typing import Any, Final

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, abort, jsonify, request, stream_with_context
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from audit.web.access import bearer_reader, site
from audit.web.export_tar import export_tar
from keys import b64encode

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_SIZE: Final = 2**53
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_HEX32 = {"pattern": "^[0-9a-f]{64}$"}


class LogErrorSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)


class EntryProofSchema(Schema):
    seq = fields.Integer(required=True, strict=True)
    entry = fields.String(required=True, metadata={"description": "the entry bytes (6.1)"})
    leaf_hash = fields.String(required=True, metadata=_HEX32)
    evidence = fields.String(required=True, allow_none=True,
                             metadata={"description": "the evidence line (6.1), if kept"})
    inclusion_proof = fields.List(fields.String(metadata=_HEX32), required=True,
                                  metadata={"description": "RFC 9162 2.1.3.1, leaf upwards"})


class CheckpointedSchema(Schema):
    tree_size = fields.Integer(required=True, strict=True)
    checkpoint = fields.String(required=True, metadata={"description": "the signed note"})
    log_key = fields.String(required=True, metadata={"description": "its verifier key"})


class EntryAnswerSchema(CheckpointedSchema):
    entry = fields.Nested(EntryProofSchema, required=True)


class MessageAnswerSchema(CheckpointedSchema):
    message_id = fields.String(required=True)
    entries = fields.List(fields.Nested(EntryProofSchema), required=True)


class Size(fields.Integer):
    """A tree size in a query string: decimal digits only (no sign, exponent or space)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or not re.fullmatch(r"[0-9]{1,16}", value):
            raise ValidationError("a tree size: decimal digits")
        return int(value)


class ConsistencyArgs(Schema):
    class Meta:
        unknown = RAISE

    old = Size(required=True, validate=validate.Range(min=0, max=MAX_SIZE))
    new = Size(validate=validate.Range(min=0, max=MAX_SIZE),
               metadata={"description": "default: the newest checkpoint's size"})


class ExportArgs(Schema):
    class Meta:
        unknown = RAISE

    evidence = fields.String(validate=validate.OneOf(["yes", "no"]), metadata={
        "description": "no: leave evidence.jsonl out (verify needs only the rest; replay "
        "needs it). Default yes."})


class ConsistencyAnswerSchema(CheckpointedSchema):
    old = fields.Integer(required=True, strict=True)
    new = fields.Integer(required=True, strict=True)
    old_root = fields.String(required=True, metadata={"description": "base64"})
    new_root = fields.String(required=True, metadata={"description": "base64"})
    proof = fields.List(fields.String(metadata=_HEX32), required=True,
                        metadata={"description": "RFC 9162 2.1.4.1"})


class StatusSchema(Schema):
    ok = fields.Boolean(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["served log", "export"]))
    entries = fields.Integer(required=True, strict=True)
    tree_size = fields.Integer(required=True, strict=True)
    root = fields.String(required=True, metadata={"description": "base64"})
    origin = fields.String(required=True, allow_none=True)
    log_key = fields.String(required=True)
    evidence = fields.Boolean(required=True)
    failure = fields.String(required=True, allow_none=True)
    failure_where = fields.String(required=True, allow_none=True)


def _answer(schema: type[Schema], doc: dict[str, Any]) -> Response:
    return jsonify(schema().dump(doc))


def _checkpointed() -> dict[str, Any]:
    state = site().index.state()
    if not state.checkpoint:
        abort(404, "the log has no verified checkpoint yet")
    return {"tree_size": state.checkpoint_size, "checkpoint": state.checkpoint,
            "log_key": state.key}


def _entry_proof(seq: int, size: int) -> dict[str, Any]:
    index = site().index
    row = index.entry_row(seq)
    if row is None or seq >= size:
        abort(404, f"no entry {seq} under the newest checkpoint (size {size})")
    from protocols.merkle import leaf_hash

    body = bytes(row["body"])
    return {"seq": seq, "entry": body.decode("ascii"), "leaf_hash": leaf_hash(body).hex(),
            "evidence": None if row["evidence"] is None else bytes(row["evidence"]).decode(
                "ascii"),
            "inclusion_proof": [h.hex() for h in index.tree(size).inclusion_proof(seq, size)]}


@bp.get("/status")
def status() -> Response:
    """Whether the log verifies against its newest checkpoint and the pinned key."""
    bearer_reader()
    site().follow()
    s = site().index.state()
    return _answer(StatusSchema, {
        "ok": s.ok, "kind": site().kind, "entries": s.size, "tree_size": s.checkpoint_size,
        "root": s.root_b64, "origin": s.origin, "log_key": s.key, "evidence": s.evidence,
        "failure": s.failure, "failure_where": s.failure_where})


@bp.get("/entries/<int:seq>")
def entry(seq: int) -> Response:
    """One entry by seq, with its evidence line and inclusion proof."""
    bearer_reader()
    site().follow()
    doc = _checkpointed()
    if seq > MAX_SIZE:
        abort(404, "no such entry")
    doc["entry"] = _entry_proof(seq, doc["tree_size"])
    return _answer(EntryAnswerSchema, doc)


@bp.get("/messages/<message_id>")
def message(message_id: str) -> Response:
    """Every entry naming a message id, each with its evidence and inclusion proof."""
    bearer_reader()
    site().follow()
    if not _UUID.fullmatch(message_id):
        abort(404, "a message id is a lowercase UUID version 4")
    doc = _checkpointed()
    seqs = [s for s in site().index.seqs_of(message_id) if s < doc["tree_size"]]
    if not seqs:
        abort(404, f"no entry under the newest checkpoint names message {message_id}")
    doc["message_id"] = message_id
    doc["entries"] = [_entry_proof(s, doc["tree_size"]) for s in seqs]
    return _answer(MessageAnswerSchema, doc)


@bp.get("/consistency")
def consistency() -> Response:
    """A proof that the tree of size ``old`` is a prefix of the tree of size ``new``."""
    bearer_reader()
    site().follow()
    try:
        args = ConsistencyArgs().load(request.args.to_dict())
    except ValidationError as e:
        return _error(422, "the query is not valid", e.messages)
    doc = _checkpointed()
    new = args.get("new", doc["tree_size"])
    old = args["old"]
    if not old <= new <= doc["tree_size"]:
        return _error(422, f"give 0 <= old <= new <= {doc['tree_size']} (the newest "
                      "checkpoint's size)")
    tree = site().index.tree(doc["tree_size"])
    doc.update(old=old, new=new, proof=[h.hex() for h in tree.consistency_proof(old, new)],
               old_root=b64encode(_root(tree, old)), new_root=b64encode(_root(tree, new)))
    return _answer(ConsistencyAnswerSchema, doc)


def _root(tree: Any, size: int) -> bytes:
    from protocols.merkle import EMPTY_ROOT

    return EMPTY_ROOT if size == 0 else bytes(tree.subtree(0, size))


@bp.get("/export.tar")
def export() -> Response:
    """The export (docs/export-format.md) of what the newest checkpoint covers, as a tar."""
    reader = bearer_reader()
    try:
        args = ExportArgs().load(request.args.to_dict())
    except ValidationError as e:
        return _error(422, "the query is not valid", e.messages)
    site().follow()
    stream, name, length = export_tar(site(), reader, evidence=args.get("evidence") != "no")
    r = Response(stream_with_context(stream), content_type="application/x-tar")
    r.headers["Content-Length"] = str(length)
    r.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    r.headers["Cache-Control"] = "no-store"
    return r


def _error(status: int, message: str, fields_: Any = None) -> Response:
    body: dict[str, Any] = {"code": {401: "unauthenticated", 403: "forbidden", 404: "not_found",
                                     422: "invalid", 503: "unavailable"}.get(status, "error"),
                            "message": message}
    if fields_:
        body["message"] += f": {fields_}"
    r = jsonify(LogErrorSchema().dump(body))
    r.status_code = status
    return r


_PATHS: Final = [
    ("/api/v1/status", "status", StatusSchema, [], "Whether the log verifies"),
    ("/api/v1/entries/{seq}", "entry", EntryAnswerSchema,
     [{"name": "seq", "in": "path", "required": True,
       "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SIZE}}],
     "One entry with its evidence and inclusion proof"),
    ("/api/v1/messages/{message_id}", "message", MessageAnswerSchema,
     [{"name": "message_id", "in": "path", "required": True,
       "schema": {"type": "string", "pattern": f"^{_UUID.pattern}$"}}],
     "The entries of one message, with proofs"),
    ("/api/v1/consistency", "consistency", ConsistencyAnswerSchema,
     [{"in": "query", "schema": ConsistencyArgs}], "A consistency proof between two sizes"),
]


def openapi_document() -> dict[str, Any]:
    spec = APISpec(title="infoshare transfer log", version="1", openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "The served transfer log (read only). Every path "
                         "needs an auditor's registry token as a bearer token. The C2SP "
                         "tlog-tiles API (/checkpoint, /tile/...) is beside it."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("LogError", schema=LogErrorSchema)
    errors = {str(code): {"description": text, "content": {
        "application/json": {"schema": LogErrorSchema}}}
        for code, text in ((401, "no token, or not one the registry knows"),
                           (403, "a token whose role may not read the log"),
                           (404, "no such entry, message or checkpoint"),
                           (503, "the registry cannot check the token now"))}
    for path, name, schema, params, summary in _PATHS:
        responses: dict[str, Any] = {"200": {"description": "OK", "content": {
            "application/json": {"schema": schema}}}, **errors}
        if name == "consistency":
            responses["422"] = {"description": "sizes out of range",
                                "content": {"application/json": {"schema": LogErrorSchema}}}
        spec.path(path=path, operations={"get": {
            "operationId": name, "summary": summary, "parameters": params,
            "security": [{"bearer": []}], "responses": responses}})
    spec.path(path="/api/v1/export.tar", operations={"get": {
        "operationId": "export", "summary": "The export of what the newest checkpoint "
        "covers, as a tar (docs/export-format.md)", "security": [{"bearer": []}],
        "parameters": [{"in": "query", "schema": ExportArgs}],
        "responses": {"200": {"description": "a tar stream", "content": {
            "application/x-tar": {"schema": {"type": "string", "format": "binary"}}}},
            "422": {"description": "a query that is not valid",
                    "content": {"application/json": {"schema": LogErrorSchema}}},
            **errors}}})
    return spec.to_dict()
