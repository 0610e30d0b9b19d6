"""Reason codes (wire spec section 7), in the order of the checks that produce them."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_SENDER = "unknown_sender"
    SENDER_MISMATCH = "sender_mismatch"
    KEY_NOT_VALID = "key_not_valid"
    BAD_SIGNATURE = "bad_signature"
    DUPLICATE = "duplicate"
    STALE = "stale"
    UNKNOWN_PROTOCOL = "unknown_protocol"
    PROTOCOL_NOT_IN_FORCE = "protocol_not_in_force"
    NOT_SIGNATORY = "not_signatory"
    UNKNOWN_PURPOSE = "unknown_purpose"
    KIND_NOT_PERMITTED = "kind_not_permitted"
    SENDER_NOT_PERMITTED = "sender_not_permitted"
    RECIPIENT_NOT_PERMITTED = "recipient_not_permitted"
    CATEGORY_NOT_PERMITTED = "category_not_permitted"
    CONSENT_REQUIRED = "consent_required"
    GROUND_NOT_PERMITTED = "ground_not_permitted"
    SUBJECT_MUST_BE_INFORMED = "subject_must_be_informed"
    APPROVAL_REQUIRED = "approval_required"
    NO_MATCHING_REQUEST = "no_matching_request"
    RECIPIENT_KEY_NOT_VALID = "recipient_key_not_valid"
    PAYLOAD_MISMATCH = "payload_mismatch"


#: Reasons of checks 1 to 3. An entry refused with one of these did not
#: authenticate its sender, so it reserves no message id (check 4).
#: ``bad_signature`` is also the code of a failed countersignature (check 11);
#: such an entry is counted here too, which errs towards never letting an
#: unauthenticated party block a message id.
UNAUTHENTICATED = frozenset(
    {
        Reason.MALFORMED,
        Reason.TOO_LARGE,
        Reason.UNSUPPORTED_VERSION,
        Reason.UNKNOWN_SENDER,
        Reason.SENDER_MISMATCH,
        Reason.KEY_NOT_VALID,
        Reason.BAD_SIGNATURE,
    }
)
