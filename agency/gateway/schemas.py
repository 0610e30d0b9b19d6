"""marshmallow schemas of the gateway's API bodies and folder files (``unknown=RAISE``).

The OpenAPI document is generated from these (apispec), so what it calls
valid is what the API accepts.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

NAME_RE = r"^[a-z0-9](?:-?[a-z0-9])*$"
ADDRESS_RE = r"^[a-z0-9](?:-?[a-z0-9])*/[a-z0-9](?:-?[a-z0-9])*$"
UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
CASE_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TIME_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2})?Z?)?$"
TEXT_MAX = 20_000


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _name(**kw: Any) -> fields.String:
    return fields.String(validate=[validate.Length(min=1, max=40), validate.Regexp(NAME_RE)],
                         **kw)


class SubmissionSchema(_Strict):
    """A referral, request, response or declined to send."""

    kind = fields.String(required=True, validate=validate.OneOf(
        ["referral", "request", "response", "declined"]))
    protocol = _name(required=True)
    purpose = _name(required=True)
    recipient = fields.String(required=True, validate=[validate.Length(max=81),
                                                       validate.Regexp(ADDRESS_RE)])
    record = fields.Dict(keys=fields.String(validate=[validate.Length(min=1, max=40),
                                                      validate.Regexp(NAME_RE)]),
                         values=fields.Raw(allow_none=True), load_default=dict,
                         metadata={"description": "the record, keyed by data category"})
    reasons = fields.String(required=True, validate=validate.Length(min=1, max=TEXT_MAX))
    consent = fields.String(load_default=None, allow_none=True,
                            validate=validate.OneOf(["given", "not_sought", "refused"]))
    ground = _name(load_default=None, allow_none=True)
    subject_informed = fields.Boolean(load_default=False)
    in_reply_to = fields.String(load_default=None, allow_none=True,
                                validate=validate.Regexp(UUID_RE))
    case_reference = fields.String(load_default=None, allow_none=True,
                                   validate=validate.Regexp(CASE_RE),
                                   metadata={"description": "the agency's own case "
                                             "reference; kept here, never sent"})

    @validates_schema
    def _reasons_text(self, data: dict[str, Any], **_: Any) -> None:
        if not str(data.get("reasons", "")).strip():
            raise ValidationError("say why this is shared", "reasons")


class SubmitResultSchema(Schema):
    message_id = fields.String(required=True)
    status = fields.String(required=True)
    note = fields.String(allow_none=True)


class StatusSchema(Schema):
    message_id = fields.String(required=True)
    kind = fields.String(required=True)
    protocol = fields.String(required=True)
    purpose = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": [
        "awaiting_approval", "queued", "submitted", "routed", "refused", "receipted",
        "returned", "received", "opened"]})
    status_text = fields.String(required=True)
    reason = fields.String(allow_none=True)
    sentence = fields.String(allow_none=True)
    seq = fields.Integer(allow_none=True)
    leaf_hash = fields.String(allow_none=True, metadata={
        "description": "the hex leaf hash of the message's transfer log entry (wire spec "
                       "6.1); see leaf_hash_source"})
    leaf_hash_source = fields.String(allow_none=True, metadata={
        "description": "broker: the broker's own, as it gave it to the recipient "
                       "(infoshare-leaf); gateway: computed by the gateway from what it sent, "
                       "the broker's notice and registry_version, which equals the log's "
                       "when the router decided with that registry version"})
    registry_version = fields.Integer(allow_none=True, metadata={
        "description": "the registry version the gateway checked the message with"})
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    in_reply_to = fields.String(allow_none=True)
    recipient = fields.String()
    sender = fields.String()


class ReceivedSchema(StatusSchema):
    record = fields.Dict(required=True)
    reasons = fields.String(required=True)
    consent = fields.String(allow_none=True)
    ground = fields.String(allow_none=True)
    subject_informed = fields.Boolean(allow_none=True)
    case_reference = fields.String(allow_none=True)


class AcknowledgeSchema(_Strict):
    case_reference = fields.String(load_default=None, allow_none=True,
                                   validate=validate.Regexp(CASE_RE))


class PurposeSchema(Schema):
    protocol = fields.String(required=True)
    purpose = fields.String(required=True)
    title = fields.String(required=True)
    description = fields.String(required=True)
    kinds = fields.List(fields.String(), required=True)
    recipients = fields.List(fields.String(), required=True)
    data_categories = fields.List(fields.String(), required=True)
    consent_required = fields.Boolean(required=True)
    grounds = fields.List(fields.String(), required=True)
    subject_may_be_left_uninformed = fields.Boolean(required=True)
    approval = fields.String(required=True, metadata={"enum": ["never", "always",
                                                               "when_refused"]})


class PermissionsSchema(Schema):
    unit = fields.String(required=True)
    purposes = fields.List(fields.Nested(PurposeSchema), required=True)


class NotSharedSchema(_Strict):
    case_reference = fields.String(required=True, validate=validate.Regexp(CASE_RE))
    reasons = fields.String(required=True, validate=validate.Length(min=1, max=TEXT_MAX))
    purpose = _name(load_default=None, allow_none=True)
    recipient = fields.String(load_default=None, allow_none=True,
                              validate=validate.Regexp(ADDRESS_RE))

    @validates_schema
    def _reasons_text(self, data: dict[str, Any], **_: Any) -> None:
        if not str(data.get("reasons", "")).strip():
            raise ValidationError("say why not", "reasons")


class ConsentSchema(_Strict):
    case_reference = fields.String(required=True, validate=validate.Regexp(CASE_RE))
    asked = fields.String(required=True, validate=validate.Length(min=1, max=200),
                          metadata={"description": "who was asked (e.g. the child, a parent)"})
    asked_at = fields.String(required=True, validate=validate.Regexp(TIME_RE))
    response = fields.String(required=True, validate=validate.OneOf(
        ["given", "refused", "not_asked"]))
    notes = fields.String(load_default="", validate=validate.Length(max=TEXT_MAX))


class RecordedSchema(Schema):
    recorded = fields.Boolean(required=True)


class EventSchema(Schema):
    at = fields.String(required=True)
    type = fields.String(required=True)
    message_id = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    details = fields.Dict(required=True)


class CaseRecordSchema(Schema):
    case_reference = fields.String(required=True)
    messages = fields.List(fields.Nested(StatusSchema), required=True)
    events = fields.List(fields.Nested(EventSchema), required=True)


class ErrorSchema(Schema):
    error = fields.String(required=True)
    message = fields.String(required=True)
    reason = fields.String(allow_none=True)
    message_id = fields.String(allow_none=True)
    fields_ = fields.Dict(data_key="fields", required=True)
