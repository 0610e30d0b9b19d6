"""The OpenAPI 3 document of the registry API, served at ``/openapi.json``.

Written by hand from the same patterns and limits as the marshmallow schemas
in :mod:`registry.api.schemas`, so that what it calls valid is what the API
accepts; schemathesis checks the two against each other.
"""

from __future__ import annotations

from typing import Any

from protocols.loader import NAME_MAX
from registry.api.schemas import (
    ADDRESS_RE,
    NAME_RE,
    PUBLIC_KEY_RE,
    ROLES_MAX,
    STATUSES,
    TIME_RE,
    YAML_MAX,
    anchored,
)
from registry.changes import KEY_USES, TEXT_MAX, TEXT_RE
from registry.store import LABEL_MAX, ROLES, TOKEN_ID_RE

Json = dict[str, Any]

MAX_VERSION = 2**31 - 1

NAME: Json = {"type": "string", "minLength": 1, "maxLength": NAME_MAX,
              "pattern": anchored(NAME_RE)}
TEXT: Json = {"type": "string", "minLength": 1, "maxLength": TEXT_MAX,
              "pattern": anchored(TEXT_RE)}
TIME: Json = {"type": "string", "pattern": anchored(TIME_RE),
              "description": "RFC 3339 UTC with whole seconds, e.g. 2024-05-01T09:00:00Z"}
ROLE_LIST: Json = {"type": "array", "items": NAME, "minItems": 1, "maxItems": ROLES_MAX,
                   "uniqueItems": True}
PUBLIC_KEY: Json = {"type": "string", "pattern": anchored(PUBLIC_KEY_RE),
                    "description": "base64 of the 32 raw bytes of the public key"}


def _obj(properties: Json, required: list[str]) -> Json:
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str, headers: Json | None = None) -> Json:
    out: Json = {"description": description,
                 "content": {"application/json": {"schema": _ref("Error")}}}
    if headers:
        out["headers"] = headers
    return out


def _json(schema: Json, description: str = "OK") -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


RETRY_AFTER: Json = {"Retry-After": {"description": "seconds to wait",
                                     "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
ERRORS: dict[str, Json] = {
    "400": _error("the body is not JSON"),
    "401": _error("no token, or not an active one",
                  {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    "403": _error("the token's role may not do this"),
    "404": _error("no such resource"),
    "409": _error("the change conflicts with the registry as it is"),
    "413": _error("the body is too large"),
    "415": _error("the body is not application/json"),
    "422": _error("the body is not valid, or breaks a rule of the registry"),
    "429": _error("too many failed authentications from this address", RETRY_AFTER),
}


def _errors(*codes: str) -> Json:
    return {c: ERRORS[c] for c in codes}


READ_ERRORS = ("401", "403", "429")
WRITE_ERRORS = ("400", "401", "403", "404", "409", "413", "415", "422", "429")


def _path_param(name: str, schema: Json) -> Json:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _op(summary: str, responses: Json, *, body: Json | None = None,
        parameters: list[Json] | None = None, tag: str) -> Json:
    op: Json = {"summary": summary, "tags": [tag], "responses": responses,
                "security": [{"bearerAuth": []}]}
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": body}}}
    if parameters:
        op["parameters"] = parameters
    return op


VERSION_RESULT = _obj({"version": {"type": "integer", "minimum": 1}}, ["version"])

_KEY_COMMON: Json = {"public": PUBLIC_KEY, "valid_from": TIME, "valid_until": TIME}


def _key_variant(holder: str, owner: Json, use: Json, manager: bool) -> Json:
    props: Json = {"holder": {"type": "string", "enum": [holder]}, "owner": owner,
                   "use": use, **_KEY_COMMON}
    required = ["holder", "owner", "use", "public", "valid_from"]
    if manager:
        props["manager"] = NAME
        required.append("manager")
    return _obj(props, required)


NEW_KEY: Json = {"oneOf": [
    _key_variant("unit", {"type": "string", "maxLength": 2 * NAME_MAX + 1,
                          "pattern": anchored(ADDRESS_RE)},
                 {"type": "string", "enum": list(KEY_USES)}, manager=False),
    _key_variant("manager", NAME, {"type": "string", "enum": ["signing"]}, manager=True),
    _key_variant("broker", {"type": "string", "enum": ["broker"]},
                 {"type": "string", "enum": list(KEY_USES)}, manager=False),
]}

COMPONENT_SCHEMAS: Json = {
    "Error": _obj({
        "error": {"type": "string"}, "message": {"type": "string"},
        "fields": {"type": "object",
                   "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    }, ["error", "message", "fields"]),
    "SignedDirectory": _obj({
        "version": {"type": "integer", "enum": [1]},
        "directory": {"type": "string", "description": "base64 of the directory JSON bytes"},
        "signature": _obj({"key": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                           "sig": {"type": "string"}}, ["key", "sig"]),
    }, ["version", "directory", "signature"]),
    "VersionInfo": _obj({
        "version": {"type": "integer", "minimum": 0}, "created_at": TIME,
        "actor": {"type": "string"}, "change": {"type": "string"},
    }, ["version", "created_at", "actor", "change"]),
    "HistoryEntry": _obj({
        "version": {"type": "integer", "minimum": 0}, "created_at": TIME,
        "actor": {"type": "string"}, "action": {"type": "string"},
        "detail": {"type": "object"},
    }, ["version", "created_at", "actor", "action", "detail"]),
    "Token": _obj({
        "id": {"type": "string"}, "role": {"type": "string", "enum": list(ROLES)},
        "label": {"type": "string"}, "created_at": TIME, "created_by": {"type": "string"},
        "revoked_at": {**TIME, "nullable": True},
        "revoked_by": {"type": "string", "nullable": True},
    }, ["id", "role", "label", "created_at", "created_by", "revoked_at", "revoked_by"]),
}

SIGNED = {"description": "the signed directory document, bytes as signed",
          "headers": {"X-Registry-Version": {"schema": {"type": "string",
                                                         "pattern": "^[0-9]+$"}}},
          "content": {"application/json": {"schema": _ref("SignedDirectory")}}}

ORG = _path_param("org", NAME)
UNIT = _path_param("unit", NAME)


def openapi_document() -> Json:
    """The OpenAPI 3.0 document; servers are relative to where it is served."""
    paths: Json = {
        "/api/v1/directory": {"get": _op(
            "The current signed directory", {"200": SIGNED, **_errors(*READ_ERRORS)},
            tag="directory")},
        "/api/v1/directory/{version}": {"get": _op(
            "The signed directory at a registry version",
            {"200": SIGNED, **_errors(*READ_ERRORS, "404", "422")},
            parameters=[_path_param("version", {"type": "integer", "minimum": 0,
                                                "maximum": MAX_VERSION})],
            tag="directory")},
        "/api/v1/directory/versions": {"get": _op(
            "Every registry version",
            {"200": _json({"type": "array", "items": _ref("VersionInfo")}),
             **_errors(*READ_ERRORS)}, tag="directory")},
        "/api/v1/history": {"get": _op(
            "Every change with who made it, when and what it was (auditor, admin)",
            {"200": _json({"type": "array", "items": _ref("HistoryEntry")}),
             **_errors(*READ_ERRORS)}, tag="history")},
        "/api/v1/protocols": {"post": _op(
            "Load a protocol file (a new protocol or a higher version of one)",
            {"201": _json(_obj({"version": {"type": "integer"},
                                "protocol": {"type": "string"},
                                "protocol_version": {"type": "integer"}},
                               ["version", "protocol", "protocol_version"]), "loaded"),
             **_errors(*WRITE_ERRORS)},
            body=_obj({"yaml": {"type": "string", "minLength": 1, "maxLength": YAML_MAX}},
                      ["yaml"]), tag="protocols")},
        "/api/v1/protocols/{protocol_id}/status": {"put": _op(
            "Change a protocol's status and in-force dates",
            {"200": _json(VERSION_RESULT), **_errors(*WRITE_ERRORS)},
            body=_obj({"status": {"type": "string", "enum": list(STATUSES)},
                       "effective_from": TIME, "ends_at": TIME}, ["status"]),
            parameters=[_path_param("protocol_id", NAME)], tag="protocols")},
        "/api/v1/organisations/{org}/units": {"post": _op(
            "Add a unit to an organisation",
            {"201": _json(_obj({"version": {"type": "integer"},
                                "address": {"type": "string"}}, ["version", "address"]),
                          "added"), **_errors(*WRITE_ERRORS)},
            body=_obj({"id": NAME, "name": TEXT, "roles": ROLE_LIST}, ["id", "name", "roles"]),
            parameters=[ORG], tag="units")},
        "/api/v1/organisations/{org}/units/{unit}": {
            "put": _op("Replace a unit's roles",
                       {"200": _json(VERSION_RESULT), **_errors(*WRITE_ERRORS)},
                       body=_obj({"roles": ROLE_LIST}, ["roles"]), parameters=[ORG, UNIT],
                       tag="units"),
            "delete": _op("Remove a unit that holds no valid key",
                          {"200": _json(VERSION_RESULT),
                           **_errors("401", "403", "404", "409", "429")},
                          parameters=[ORG, UNIT], tag="units"),
        },
        "/api/v1/keys": {"post": _op(
            "Register a public key of a unit, a manager or the broker",
            {"201": _json(_obj({"version": {"type": "integer"},
                                "key_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"}},
                               ["version", "key_id"]), "registered"),
             **_errors(*WRITE_ERRORS)}, body=NEW_KEY, tag="keys")},
        "/api/v1/keys/{key_id}/revoke": {"post": _op(
            "Revoke a key from a time on (default now)",
            {"200": _json(VERSION_RESULT), **_errors(*WRITE_ERRORS)},
            body=_obj({"reason": TEXT, "at": TIME}, ["reason"]),
            parameters=[_path_param("key_id", {"type": "string",
                                               "pattern": "^[0-9a-f]{32}$"})],
            tag="keys")},
        "/api/v1/managers": {"post": _op(
            "Register a manager (known by a code) who may countersign",
            {"201": _json(_obj({"version": {"type": "integer"},
                                "manager": {"type": "string"}}, ["version", "manager"]),
                          "registered"), **_errors(*WRITE_ERRORS)},
            body=_obj({"id": NAME, "org": NAME, "title": TEXT}, ["id", "org", "title"]),
            tag="managers")},
        "/api/v1/tokens": {
            "get": _op("Every API token (never a secret)",
                       {"200": _json({"type": "array", "items": _ref("Token")}),
                        **_errors(*READ_ERRORS)}, tag="tokens"),
            "post": _op("Create an API token; the secret is in this answer only",
                        {"201": _json(_obj({"id": {"type": "string"},
                                            "role": {"type": "string", "enum": list(ROLES)},
                                            "label": {"type": "string"},
                                            "secret": {"type": "string"}},
                                           ["id", "role", "label", "secret"]), "created"),
                         **_errors("400", "401", "403", "413", "415", "422", "429")},
                        body=_obj({"role": {"type": "string", "enum": list(ROLES)},
                                   "label": {**TEXT, "maxLength": LABEL_MAX}},
                                  ["role", "label"]), tag="tokens"),
        },
        "/api/v1/tokens/{token_id}/revoke": {"post": _op(
            "Revoke an API token",
            {"200": _json(_obj({"id": {"type": "string"}, "revoked": {"type": "boolean"}},
                               ["id", "revoked"])),
             **_errors("401", "403", "404", "409", "429")},
            parameters=[_path_param("token_id", {"type": "string",
                                                 "pattern": anchored(TOKEN_ID_RE)})],
            tag="tokens")},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "infoshare registry", "version": "1",
                 "description": "Who may share what with whom: protocols, units, keys and "
                                "managers, as signed directory versions."},
        "paths": paths,
        "components": {"schemas": COMPONENT_SCHEMAS,
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
    }
