"""marshmallow schemas of the API's bodies: what requests may send, what answers hold.

One source of truth: request schemas validate what arrives (unknown fields
refused), answer schemas shape what is sent, and :mod:`registry.openapi`
generates the OpenAPI document from both with apispec's MarshmallowPlugin.
Optional fields are left out, never null, and take no default here (a
``load_default`` would be published as a default of null).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load
from marshmallow.validate import Length, OneOf, Range

from keys import KeyFileError, PublicKeyFile, b64decode, parse_public_key_file
from protocols.directory import parse_time
from protocols.loader import NAME_MAX, NAME_PATTERN
from protocols.model import ProtocolStatus
from registry.changes import KEY_HOLDERS, KEY_USES, TEXT_MAX, TEXT_RE
from registry.routing import MAX_VERSION
from registry.store import LABEL_MAX, ROLES, TOKEN_ID_RE

ADDRESS_RE = f"{NAME_PATTERN}/{NAME_PATTERN}"
#: RFC 3339 UTC with whole seconds, as on the wire; years 1000 to 9999.
TIME_RE = (r"[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
           r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z")
#: Canonical padded base64 of 32 bytes (the last character carries 2 zero bits).
PUBLIC_KEY_RE = r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="
#: Canonical padded base64 of a 64-byte signature.
SIGNATURE_RE = r"[A-Za-z0-9+/]{85}[AQgw]=="
KEY_ID_RE = "[0-9a-f]{32}"
ROLES_MAX = 20
YAML_MAX = 1024 * 1024
STATUSES = tuple(s.value for s in ProtocolStatus)


def anchored(pattern: str) -> str:
    """The JSON Schema form of a pattern matched whole."""
    return f"^(?:{pattern})$"


class FullMatch:
    """A validator: the whole value matches ``pattern`` (published as an anchored pattern).

    Python's ``$`` also matches before a final newline, which JSON Schema's does
    not; matching whole keeps the two readings the same.
    """

    def __init__(self, pattern: str, message: str) -> None:
        self.pattern = pattern
        self.regex = re.compile(pattern)
        self.message = message

    def __call__(self, value: str) -> None:
        if not self.regex.fullmatch(value):
            raise ValidationError(self.message)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _name(**kwargs: Any) -> fields.String:
    return fields.String(validate=[
        Length(min=1, max=NAME_MAX),
        FullMatch(NAME_PATTERN, "lowercase letters and digits, single hyphens between them")],
        **kwargs)


def _text(max_len: int = TEXT_MAX, **kwargs: Any) -> fields.String:
    return fields.String(validate=[
        Length(min=1, max=max_len),
        FullMatch(TEXT_RE, "text without control characters or invisible formatting "
                           "characters, not only spaces")], **kwargs)


def _pattern(pattern: str, message: str, **kwargs: Any) -> fields.String:
    return fields.String(validate=FullMatch(pattern, message), **kwargs)


def _roles(**kwargs: Any) -> fields.List[str]:
    def unique(values: list[str]) -> None:
        if len(set(values)) != len(values):
            raise ValidationError("each role once")

    return fields.List(_name(), validate=[Length(min=1, max=ROLES_MAX), unique],
                       metadata={"uniqueItems": True}, **kwargs)


def _version(**kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=Range(min=0, max=MAX_VERSION), **kwargs)


class Time(fields.Field[datetime]):
    """An RFC 3339 UTC time with whole seconds, e.g. ``2024-05-01T09:00:00Z``."""

    def __init__(self, *, metadata: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(metadata={"pattern": anchored(TIME_RE),
                                   "description": "RFC 3339 UTC with whole seconds, "
                                                  "e.g. 2024-05-01T09:00:00Z",
                                   **(metadata or {})}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not re.fullmatch(TIME_RE, value):
            raise ValidationError("an RFC 3339 UTC time with whole seconds, "
                                  "such as 2024-05-01T09:00:00Z")
        try:
            return parse_time(value)
        except ValueError as e:
            raise ValidationError("not a date that exists") from e


class Base64Key(fields.Field[bytes]):
    """A public key as canonical base64 of its 32 raw bytes (wire spec section 1)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(metadata={"pattern": anchored(PUBLIC_KEY_RE),
                                   "description": "base64 of the 32 raw bytes of the key"},
                         **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> bytes:
        if not isinstance(value, str) or not re.fullmatch(PUBLIC_KEY_RE, value):
            raise ValidationError("base64 of the 32 raw bytes of the public key")
        return b64decode(value)


# --- requests --------------------------------------------------------------------------


class LoadProtocol(_Strict):
    yaml = fields.String(required=True, validate=Length(min=1, max=YAML_MAX),
                         metadata={"description": "the protocol file's text (YAML)"})


class ProtocolStatusChange(_Strict):
    status = fields.String(required=True, validate=OneOf(STATUSES))
    effective_from = Time()
    ends_at = Time()


class NewUnit(_Strict):
    id = _name(required=True)
    name = _text(required=True)
    roles = _roles(required=True)


class UnitRoles(_Strict):
    roles = _roles(required=True)


class Proof(_Strict):
    key = _pattern(KEY_ID_RE, "a key id, 32 lowercase hex digits", required=True)
    sig = _pattern(SIGNATURE_RE, "base64 of a 64-byte Ed25519 signature", required=True)


class KeyFile(_Strict):
    """A public key file exactly as ``infoshare keys generate`` wrote it."""

    format = fields.String(required=True, validate=OneOf(["infoshare-public-key/v1"]))
    holder = fields.String(required=True, validate=OneOf(KEY_HOLDERS))
    owner = fields.String(required=True, validate=[
        Length(min=1, max=2 * NAME_MAX + 1),
        FullMatch(f"{ADDRESS_RE}|{NAME_PATTERN}",
                  "a unit's address (org/unit), an organisation id, or broker")])
    manager = _name(required=True, allow_none=True)
    use = fields.String(required=True, validate=OneOf(KEY_USES))
    public = _pattern(PUBLIC_KEY_RE, "base64 of the 32 raw bytes of the public key",
                      required=True)
    key_id = _pattern(KEY_ID_RE, "a key id, 32 lowercase hex digits", required=True)
    proof = fields.Nested(Proof, required=True)

    @post_load(pass_original=True)
    def _parse(self, data: dict[str, Any], original: Any, **kwargs: Any) -> PublicKeyFile:
        try:
            return parse_public_key_file(original)
        except KeyFileError as e:
            raise ValidationError(str(e)) from e


class _Validity(_Strict):
    valid_from = Time(metadata={"description": "default: now"})
    valid_until = Time()


class UnitKeys(_Validity):
    """A unit's signing key, its encryption key, or both, as their public key files."""

    signing = fields.Nested(KeyFile)
    encryption = fields.Nested(KeyFile)


class SigningKey(_Validity):
    """A manager's or the broker's signing key, as its public key file."""

    signing = fields.Nested(KeyFile, required=True)


class Revocation(_Strict):
    reason = _text(required=True)
    at = Time(metadata={"description": "revoked from this time (default now)"})
    last_broker_key = fields.Boolean(metadata={
        "description": "true to confirm revoking the broker's last valid key"})


class NewManager(_Strict):
    id = _name(required=True)
    org = _name(required=True)
    title = _text(required=True)


class NewToken(_Strict):
    role = fields.String(required=True, validate=OneOf(ROLES))
    label = _text(LABEL_MAX, required=True)


# --- answers ---------------------------------------------------------------------------


class Error(Schema):
    error = fields.String(required=True, metadata={"description": "a reason code"})
    message = fields.String(required=True, metadata={"description": "what to change"})
    fields_ = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                          required=True, data_key="fields")


class Signature(Schema):
    key = _pattern(KEY_ID_RE, "a key id", required=True)
    sig = fields.String(required=True)


class SignedDirectory(Schema):
    version = fields.Integer(required=True, validate=OneOf([1]))
    directory = fields.String(required=True,
                              metadata={"description": "base64 of the directory JSON bytes"})
    signature = fields.Nested(Signature, required=True)


class VersionResult(Schema):
    version = _version(required=True)


class ProtocolLoaded(VersionResult):
    protocol = fields.String(required=True)
    protocol_version = fields.Integer(required=True)


class UnitAdded(VersionResult):
    address = fields.String(required=True)


class RegisteredKey(Schema):
    key_id = fields.String(required=True)
    use = fields.String(required=True, validate=OneOf(KEY_USES))


class KeysRegistered(VersionResult):
    keys = fields.List(fields.Nested(RegisteredKey), required=True)


class ManagerAdded(VersionResult):
    manager = fields.String(required=True)


class VersionInfo(Schema):
    version = _version(required=True)
    created_at = fields.String(required=True)
    actor = fields.String(required=True)
    change = fields.String(required=True)


class HistoryEntry(Schema):
    version = _version(required=True, allow_none=True, metadata={
        "description": "the registry version; null for a token granted or revoked"})
    created_at = fields.String(required=True)
    actor = fields.String(required=True, metadata={"description": "token:<id> or a name"})
    actor_label = fields.String(required=True, allow_none=True,
                                metadata={"description": "the label of the actor's token"})
    action = fields.String(required=True)
    summary = fields.String(required=True, metadata={"description": "the change in words"})
    detail = fields.Dict(required=True)


class Token(Schema):
    id = fields.String(required=True)
    role = fields.String(required=True, validate=OneOf(ROLES))
    label = fields.String(required=True)
    created_at = fields.String(required=True)
    created_by = fields.String(required=True)
    revoked_at = fields.String(required=True, allow_none=True)
    revoked_by = fields.String(required=True, allow_none=True)


class TokenPresented(Schema):
    id = fields.String(required=True)
    role = fields.String(required=True, validate=OneOf(ROLES))
    label = fields.String(required=True)


class TokenCreated(Schema):
    id = fields.String(required=True)
    role = fields.String(required=True, validate=OneOf(ROLES))
    label = fields.String(required=True)
    secret = fields.String(required=True, metadata={"description": "shown in this answer only"})


class TokenRevoked(Schema):
    id = _pattern(TOKEN_ID_RE, "a token id", required=True)
    revoked = fields.Boolean(required=True)
