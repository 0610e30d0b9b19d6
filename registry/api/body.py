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
            path = str(key) if not prefix else f"{prefix}.{key}"
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


def load_json(schema: type[Schema]) -> dict[str, Any]:
    """The request's JSON body, validated.

    Raises:
        UnsupportedMediaType (415): not ``application/json``.
        BadRequest (400): not JSON.
        Invalid (422): JSON that the schema refuses.
    """
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    try:
        data = json.loads(request.get_data(cache=True))
    except (ValueError, RecursionError) as e:
        raise BadRequest("the body is not JSON") from e
    try:
        loaded: dict[str, Any] = schema().load(data)
    except ValidationError as e:
        raise Invalid("the request body is not valid", flatten(e.messages)) from e
    return loaded
