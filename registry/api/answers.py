"""Answering API requests through the answer schemas, so the document describes the bytes."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from marshmallow import Schema


def answer(schema: type[Schema], value: Any, status: int = 200, *,
           many: bool = False) -> tuple[Response, int]:
    """``value`` dumped through ``schema`` as a JSON answer."""
    return jsonify(schema(many=many).dump(value)), status
