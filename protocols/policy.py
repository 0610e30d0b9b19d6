"""``decide``: checks 2 to 13 of wire spec 3.3, in order, with no I/O and no clock.

The router and the audit replay call the same function with the same inputs
(the submission, the directory version, a view of the log before this entry,
and the time of the decision), so a replay re-runs exactly what decided.
Ordinary refusals are return values, never exceptions; the first failing
check decides the reason.

Where the wire spec is ambiguous this module takes the reading that refuses
more (see the notes on checks 7, 11 and 12).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol as Interface

from keys import verify_signature
from protocols.model import (
    REPLY_KINDS,
    Directory,
    Kind,
    MessageId,
    Submission,
    amqp_user,
    split_address,
)
from protocols.reasons import UNAUTHENTICATED, Reason

SIGNING_CONTEXT = b"infoshare/envelope/v1\n"
MAX_FUTURE = timedelta(seconds=300)
MAX_AGE = timedelta(hours=24)


@dataclass(frozen=True)
class LoggedMessage:
    """What the policy needs to know of an earlier log entry."""

    message_id: MessageId
    header_sha256: str | None
    kind: Kind | None
    decision: str
    reason: str | None
    protocol: str | None
    purpose: str | None
    sender: str | None
    recipient: str | None

    @property
    def authenticated(self) -> bool:
        return self.reason is None or self.reason not in UNAUTHENTICATED

    @property
    def routed(self) -> bool:
        return self.decision == "routed"


class LogView(Interface):
    """The transfer log as the policy sees it: entries by message id, oldest first."""

    def find(self, message_id: str) -> Sequence[LoggedMessage]: ...


@dataclass(frozen=True)
class Decision:
    reason: Reason | None

    @property
    def routed(self) -> bool:
        return self.reason is None

    @property
    def decision(self) -> str:
        return "routed" if self.reason is None else "refused"

    @property
    def authenticated(self) -> bool:
        return self.reason is None or self.reason not in UNAUTHENTICATED


ROUTED = Decision(None)


def signing_input(header_bytes: bytes) -> bytes:
    return SIGNING_CONTEXT + header_bytes


def decide(sub: Submission, directory: Directory, log: LogView, now: datetime) -> Decision:
    """Run checks 2 to 13 of wire spec 3.3 and return the first failure, or routed.

    Check 1 (decoding) belongs to the envelope parser, which produces ``sub``.
    A redelivery (same message id and header hash as a logged entry) is the
    router's to recognise before calling this; here it counts as a duplicate.
    """
    reason = _decide(sub, directory, log, now)
    return ROUTED if reason is None else Decision(reason)


def _decide(sub: Submission, d: Directory, log: LogView, now: datetime) -> Reason | None:
    h = sub.header
    signed = signing_input(sub.header_bytes)

    # 2. sender registered, and the AMQP user that published is the sender's.
    sender = d.unit(h.sender)
    if sender is None:
        return Reason.UNKNOWN_SENDER
    if sub.user_id is None or sub.user_id != amqp_user(h.sender):
        return Reason.SENDER_MISMATCH

    # 3. the first signature is by a signing key of the sender, valid then and now.
    if not sub.signatures:
        return Reason.BAD_SIGNATURE
    first = sub.signatures[0]
    key = d.unit_key(first.key, h.sender, "signing")
    if key is None or not (key.valid_at(h.created_at) and key.valid_at(now)):
        return Reason.KEY_NOT_VALID
    if not verify_signature(key.public, signed, first.sig):
        return Reason.BAD_SIGNATURE

    # 4. a message id is reserved by any earlier entry that authenticated.
    if any(e.authenticated for e in log.find(h.message_id)):
        return Reason.DUPLICATE

    # 5. freshness.
    if h.created_at > now + MAX_FUTURE or h.created_at < now - MAX_AGE:
        return Reason.STALE

    # 6. protocol in force, both organisations signatories.
    protocol = d.protocol(h.protocol)
    if protocol is None:
        return Reason.UNKNOWN_PROTOCOL
    if not protocol.in_force(now):
        return Reason.PROTOCOL_NOT_IN_FORCE
    sender_org, _ = split_address(h.sender)
    recipient_org, _ = split_address(h.recipient)
    if sender_org not in protocol.signatories or recipient_org not in protocol.signatories:
        return Reason.NOT_SIGNATORY

    # 7. purpose, kind, roles.
    purpose = protocol.purpose(h.purpose)
    if purpose is None:
        return Reason.UNKNOWN_PURPOSE
    if not purpose.allows_kind(h.kind):
        return Reason.KIND_NOT_PERMITTED
    recipient = d.unit(h.recipient)
    if h.kind == "receipt":
        # The spec checks receipts "the other way round", which fits a receipt
        # for a referral but not one for a response (sent back to the unit that
        # answered a request). A receipt passes when the pair fits the purpose
        # in either direction; check 12 then ties it to a routed message.
        forward = protocol.may_send(sender, purpose) and recipient is not None and (
            protocol.may_receive(recipient, purpose))
        backward = protocol.may_receive(sender, purpose) and recipient is not None and (
            protocol.may_send(recipient, purpose))
        if not (forward or backward):
            return (Reason.SENDER_NOT_PERMITTED
                    if not (protocol.may_send(sender, purpose)
                            or protocol.may_receive(sender, purpose))
                    else Reason.RECIPIENT_NOT_PERMITTED)
    elif h.kind in REPLY_KINDS:
        if not protocol.may_receive(sender, purpose):
            return Reason.SENDER_NOT_PERMITTED
        if recipient is None or not protocol.may_send(recipient, purpose):
            return Reason.RECIPIENT_NOT_PERMITTED
    else:
        if not protocol.may_send(sender, purpose):
            return Reason.SENDER_NOT_PERMITTED
        if recipient is None or not protocol.may_receive(recipient, purpose):
            return Reason.RECIPIENT_NOT_PERMITTED

    carries_data = h.kind not in ("declined", "receipt")
    if carries_data:
        # 8. need to know.
        if not set(h.data_categories) <= purpose.data_categories:
            return Reason.CATEGORY_NOT_PERMITTED
        # 9. consent.
        if h.consent is None:
            return Reason.CONSENT_REQUIRED
        if purpose.consent_required and h.consent.status != "given":
            return Reason.CONSENT_REQUIRED
        if h.consent.status != "given" and h.consent.ground not in purpose.grounds:
            return Reason.GROUND_NOT_PERMITTED
        # 10. informing the subject.
        if not h.subject_informed and not purpose.subject_may_be_withheld:
            return Reason.SUBJECT_MUST_BE_INFORMED

    # 11. approvals. Countersignatures are verified for every kind: the spec
    # exempts declined and receipt from the approval rule, but a forged
    # countersignature is never acceptable on anything routed.
    counter = sub.signatures[1:]
    approved = False
    for s in counter:
        mkey = d.manager_key(s.key, sender_org)
        if mkey is not None and mkey.valid_at(h.created_at) and verify_signature(
                mkey.public, signed, s.sig):
            approved = True
    if carries_data and purpose.approval_needed(h.consent.status if h.consent else None) and (
            not approved):
        return Reason.APPROVAL_REQUIRED
    for s in counter:
        mkey = d.manager_key(s.key, sender_org)
        if mkey is None or not mkey.valid_at(h.created_at) or not verify_signature(
                mkey.public, signed, s.sig):
            return Reason.BAD_SIGNATURE

    # 12. replies answer a routed message between the same two units.
    if h.kind in ("referral", "request"):
        if h.in_reply_to is not None:
            return Reason.NO_MATCHING_REQUEST
    else:
        if h.in_reply_to is None or not any(
            _answers(e, h.kind, h.sender, h.recipient, h.protocol, h.purpose)
            for e in log.find(h.in_reply_to)
        ):
            return Reason.NO_MATCHING_REQUEST

    # 13. the payload is sealed to the recipient's current key and is what it claims.
    rkey = d.unit_key(h.payload.recipient_key, h.recipient, "encryption")
    if rkey is None or not rkey.valid_at(now):
        return Reason.RECIPIENT_KEY_NOT_VALID
    if h.payload.length != sub.payload_length or h.payload.sha256 != sub.payload_sha256:
        return Reason.PAYLOAD_MISMATCH
    return None


def _answers(e: LoggedMessage, kind: Kind, sender: str, recipient: str, protocol: str,
             purpose: str) -> bool:
    """Whether logged entry ``e`` is what a reply of ``kind`` may answer."""
    if not e.routed or e.sender != recipient or e.recipient != sender:
        return False
    # Receipts are tied to the same protocol and purpose too, which the spec
    # does not say; a receipt that names another purpose is refused.
    if e.protocol != protocol or e.purpose != purpose:
        return False
    if kind == "receipt":
        return e.kind != "receipt"
    return e.kind == "request"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
