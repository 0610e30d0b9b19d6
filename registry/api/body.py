"""Reading a JSON request body through a marshmallow schema."""

from __future__ import annotations

import json
from typing import Any

from flask import request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from registry.errors import Invalid


def flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as ``{"field.0.sub": [...]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            # "_schema" marks errors of a whole object, which its own path names.
            path = prefix if key == "_schema" and prefix else \
                str(key) if not prefix else f"{prefix}.{key}"
            for k, v in flatten(value, path).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix or "_body"] = list(messages)
    elif isinstance(messages, list):
        for i, m in enumerate(messages):
            for k, v in flatten(m, f"{prefix}.{i}" if prefix else str(i)).items():
                out.setdefault(k, []).extend(v)
    else:
        out[prefix or "_body"] = [str(messages)]
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys; a reviewer could read one value
    # while another is used, so a body that names a key twice is refused.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_json(raw: bytes) -> Any:
    """Parse a JSON document, refusing duplicate keys.

    Raises:
        BadRequest (400): not JSON. Invalid (422, ``duplicate_key``): a key named twice.
    """
    try:
        return json.loads(raw, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as e:
        raise Invalid("the body names a key twice", {e.key: ["named twice; send each key once"]},
                      code="duplicate_key") from e
    except (ValueError, RecursionError) as e:
        raise BadRequest("the body is not JSON") from e


def load_json(schema: type[Schema]) -> dict[str, Any]:
    """The request's JSON body, validated.

    Raises:
        UnsupportedMediaType (415): not ``application/json``.
        BadRequest (400): not JSON.
        Invalid (422): JSON that the schema refuses, or a key named twice.
    """
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    data = parse_json(request.get_data(cache=True))
    try:
        loaded: dict[str, Any] = schema().load(data)
    except ValidationError as e:
        raise Invalid("the request body is not valid", flatten(e.messages)) from e
    return loaded
