"""marshmallow schemas for the API's request bodies (the HTTP boundary only).

Each schema refuses unknown fields and loads into plain values that the
store's methods take. The patterns and limits here are the ones
:mod:`registry.openapi` publishes, so what the document calls valid is what
these accept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validates_schema
from marshmallow.validate import Length, OneOf

from keys import b64decode
from protocols.directory import parse_time
from protocols.loader import NAME_MAX, NAME_PATTERN
from protocols.model import ProtocolStatus
from registry.changes import KEY_HOLDERS, KEY_USES, TEXT_MAX, TEXT_RE
from registry.store import LABEL_MAX, ROLES

# Patterns are written unanchored and matched whole (re.fullmatch): Python's
# "$" also matches before a final newline, which JSON Schema's does not.
NAME_RE = NAME_PATTERN
ADDRESS_RE = f"{NAME_PATTERN}/{NAME_PATTERN}"
#: RFC 3339 UTC with whole seconds, as on the wire; years 1000 to 9999.
TIME_RE = (r"[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
           r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z")
#: Canonical padded base64 of 32 bytes (the last character carries 2 zero bits).
PUBLIC_KEY_RE = r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="
ROLES_MAX = 20
YAML_MAX = 1024 * 1024
STATUSES = tuple(s.value for s in ProtocolStatus)


def anchored(pattern: str) -> str:
    """The JSON Schema form of a pattern matched whole."""
    return f"^(?:{pattern})$"


class FullMatch:
    """A validator: the whole value matches ``pattern``."""

    def __init__(self, pattern: str, message: str) -> None:
        self.regex = re.compile(pattern)
        self.message = message

    def __call__(self, value: str) -> None:
        if not self.regex.fullmatch(value):
            raise ValidationError(self.message)


class _Strict(Schema):
    # Optional fields are left out, never null: the document says so too
    # (marshmallow would otherwise take null wherever load_default is None).
    class Meta:
        unknown = RAISE


def _name(**kwargs: Any) -> fields.String:
    return fields.String(validate=[
        Length(min=1, max=NAME_MAX),
        FullMatch(NAME_RE, "lowercase letters and digits, single hyphens between them")], **kwargs)


def _text(max_len: int = TEXT_MAX, **kwargs: Any) -> fields.String:
    return fields.String(validate=[
        Length(min=1, max=max_len),
        FullMatch(TEXT_RE, "text without control characters, not only spaces")], **kwargs)


def _roles(**kwargs: Any) -> fields.List[str]:
    def unique(values: list[str]) -> None:
        if len(set(values)) != len(values):
            raise ValidationError("each role once")

    return fields.List(_name(), validate=[Length(min=1, max=ROLES_MAX), unique], **kwargs)


class Time(fields.Field[datetime]):
    """An RFC 3339 UTC time with whole seconds, e.g. ``2024-05-01T09:00:00Z``."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not re.fullmatch(TIME_RE, value):
            raise ValidationError("an RFC 3339 UTC time with whole seconds, "
                                  "such as 2024-05-01T09:00:00Z")
        try:
            return parse_time(value)
        except ValueError as e:
            raise ValidationError("not a date that exists") from e


class PublicKey(fields.Field[bytes]):
    """A public key as canonical base64 of its 32 raw bytes."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> bytes:
        if not isinstance(value, str) or not re.fullmatch(PUBLIC_KEY_RE, value):
            raise ValidationError("base64 of the 32 raw bytes of the public key")
        return b64decode(value)


class LoadProtocol(_Strict):
    yaml = fields.String(required=True, validate=Length(min=1, max=YAML_MAX))


class ProtocolStatusChange(_Strict):
    status = fields.String(required=True, validate=OneOf(STATUSES))
    effective_from = Time(load_default=None, allow_none=False)
    ends_at = Time(load_default=None, allow_none=False)


class NewUnit(_Strict):
    id = _name(required=True)
    name = _text(required=True)
    roles = _roles(required=True)


class UnitRoles(_Strict):
    roles = _roles(required=True)


class NewKey(_Strict):
    holder = fields.String(required=True, validate=OneOf(KEY_HOLDERS))
    owner = fields.String(required=True, validate=Length(min=1, max=2 * NAME_MAX + 1))
    use = fields.String(required=True, validate=OneOf(KEY_USES))
    public = PublicKey(required=True)
    valid_from = Time(required=True)
    valid_until = Time(load_default=None, allow_none=False)
    manager = _name(load_default=None, allow_none=False)

    @validates_schema
    def _holder_rules(self, data: dict[str, Any], **kwargs: Any) -> None:
        # The same rules as the oneOf in the OpenAPI document, one per holder.
        holder, owner = data["holder"], data["owner"]
        errors: dict[str, list[str]] = {}
        if holder == "unit" and not re.fullmatch(ADDRESS_RE, owner):
            errors["owner"] = ["a unit key's owner is the unit's address, org/unit"]
        if holder == "manager":
            if not re.fullmatch(NAME_RE, owner):
                errors["owner"] = ["a manager key's owner is the organisation id"]
            if data["use"] != "signing":
                errors["use"] = ["a manager holds a signing key only"]
            if data["manager"] is None:
                errors["manager"] = ["a manager key names its manager"]
        if holder == "broker" and owner != "broker":
            errors["owner"] = ["a broker key's owner is broker"]
        if holder != "manager" and data["manager"] is not None:
            errors["manager"] = ["only a manager key names a manager"]
        if errors:
            raise ValidationError(errors)


class Revocation(_Strict):
    reason = _text(required=True)
    at = Time(load_default=None, allow_none=False)


class NewManager(_Strict):
    id = _name(required=True)
    org = _name(required=True)
    title = _text(required=True)


class NewToken(_Strict):
    role = fields.String(required=True, validate=OneOf(ROLES))
    label = _text(LABEL_MAX, required=True)
