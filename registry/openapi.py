"""The OpenAPI 3 document of the registry API, generated, served at ``/openapi.json``.

apispec's MarshmallowPlugin turns the schemas of :mod:`registry.api.schemas`
(the very ones the views validate and answer with) into JSON Schema; the
paths come from the app's URL map and what each view records with
:func:`registry.api.docs.operation`. Nothing here restates a field, a
pattern or a limit: schemathesis checks the document against the API.
"""

from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema, fields

from protocols.loader import NAME_MAX, NAME_PATTERN
from registry.api import schemas
from registry.api.docs import ATTRIBUTE, Operation
from registry.routing import MAX_VERSION
from registry.store import TOKEN_ID_RE

Json = dict[str, Any]

_NAME: Json = {"type": "string", "minLength": 1, "maxLength": NAME_MAX,
               "pattern": schemas.anchored(NAME_PATTERN)}
#: Path parameters by name; ``version`` by its converter.
PATH_PARAMETERS: dict[str, Json] = {
    "org": _NAME, "unit": _NAME, "protocol_id": _NAME, "manager": _NAME,
    "key_id": {"type": "string", "pattern": schemas.anchored(schemas.KEY_ID_RE)},
    "token_id": {"type": "string", "pattern": schemas.anchored(TOKEN_ID_RE)},
    "version": {"type": "integer", "minimum": 0, "maximum": MAX_VERSION},
}

ERRORS: dict[int, str] = {
    400: "the body is not JSON, or a form's CSRF token is missing",
    401: "no token, or not an active one",
    403: "the token's role may not do this",
    404: "no such resource",
    409: "the change conflicts with the registry as it is",
    413: "the body is too large",
    415: "the body is not application/json",
    422: "the body or a path value is not valid, or breaks a rule of the registry",
    429: "too many wrong tokens from this address",
}
_HEADERS: dict[int, Json] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds to wait",
                          "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}
_RULE_PART = re.compile(r"<(?:(?P<converter>[a-z]+):)?(?P<name>[a-z_]+)>")


def _full_match_pattern(self: Any, field: fields.Field[Any], **kwargs: Any) -> Json:
    """Publish a FullMatch validator as the anchored pattern JSON Schema reads the same way."""
    for validator in field.validators:
        if isinstance(validator, schemas.FullMatch):
            return {"pattern": schemas.anchored(validator.pattern)}
    return {}


def _schema_name(schema: type[Schema] | Schema) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__


def _error_response(status: int) -> Json:
    out: Json = {"description": ERRORS[status],
                 "content": {"application/json": {"schema": "Error"}}}
    if status in _HEADERS:
        out["headers"] = _HEADERS[status]
    return out


def _operation(op: Operation, roles: tuple[str, ...] | None, has_version: bool) -> Json:
    answer: Json = {"description": op.summary}
    if op.answer is not None:
        schema: Any = op.answer if not op.many else {"type": "array",
                                                     "items": op.answer}
        answer["content"] = {"application/json": {"schema": schema}}
    if op.headers:
        answer["headers"] = {h: {"schema": {"type": "string", "pattern": "^[0-9]+$"}}
                             for h in op.headers}
    codes = set(op.errors)
    if roles:
        codes |= {401, 403, 429}
    if op.body is not None:
        codes |= {400, 413, 415, 422}
    if has_version:
        codes.add(422)
    out: Json = {"summary": op.summary, "tags": [op.tag],
                 "responses": {str(op.status): answer,
                               **{str(c): _error_response(c) for c in sorted(codes)}}}
    if roles:
        out["security"] = [{"bearerAuth": []}]
        out["description"] = "Roles: " + ", ".join(roles) + "."
    if op.body is not None:
        out["requestBody"] = {"required": True,
                              "content": {"application/json": {"schema": op.body}}}
    return out


def openapi_document(app: Flask) -> Json:
    """The OpenAPI 3.0 document of every API route of ``app``."""
    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    spec = APISpec(title="infoshare registry", version="1", openapi_version="3.0.3",
                   plugins=[plugin],
                   info={"description": "Who may share what with whom: protocols, units, "
                                        "keys and managers, as signed directory versions."})
    assert plugin.converter is not None
    plugin.map_to_openapi_type(schemas.Time, "string", None)  # type: ignore[no-untyped-call]
    plugin.map_to_openapi_type(  # type: ignore[no-untyped-call]
        schemas.Base64Key, "string", None)
    plugin.converter.add_attribute_function(  # type: ignore[no-untyped-call]
        _full_match_pattern)
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=schemas.Error)

    paths: dict[str, Json] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        op: Operation | None = getattr(view, ATTRIBUTE, None)
        if op is None or not rule.rule.startswith("/api/"):
            continue
        parts = list(_RULE_PART.finditer(rule.rule))
        path = _RULE_PART.sub(lambda m: "{" + m["name"] + "}", rule.rule)
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        entry = paths.setdefault(path, {})
        for method in methods:
            entry[method.lower()] = _operation(op, getattr(view, "roles", None),
                                               any(m["converter"] == "version" for m in parts))
        if parts:
            entry["parameters"] = [{"name": m["name"], "in": "path", "required": True,
                                    "schema": PATH_PARAMETERS[m["name"]]} for m in parts]
    for path, operations in paths.items():
        spec.path(path=path, operations={k: v for k, v in operations.items()
                                         if k != "parameters"},
                  parameters=operations.get("parameters"))
    return spec.to_dict()
