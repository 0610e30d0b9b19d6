"""What each API view says about itself for the OpenAPI document.

``@operation(...)`` records a view's summary, request schema, answer schema
and the errors it may answer; :mod:`registry.openapi` reads it from the
app's URL map. The schemas themselves are the ones the views validate and
dump with, so the document and the behaviour have one source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from marshmallow import Schema

F = TypeVar("F", bound=Callable[..., object])

ATTRIBUTE = "openapi_operation"


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    body: type[Schema] | None = None
    answer: type[Schema] | None = None
    many: bool = False
    status: int = 200
    errors: tuple[int, ...] = ()
    headers: tuple[str, ...] = ()


def operation(summary: str, *, tag: str, body: type[Schema] | None = None,
              answer: type[Schema] | None = None, many: bool = False, status: int = 200,
              errors: tuple[int, ...] = (), headers: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Record what a view accepts and answers."""

    def record(view: F) -> F:
        setattr(view, ATTRIBUTE, Operation(summary, tag, body, answer, many, status, errors,
                                           headers))
        return view

    return record
