"""Sentences that say what to change, for every reason a submission can be refused.

Pure: a reason code and what was asked, against the directory, give one
sentence in plain words. Sentences name units, purposes, grounds and
categories (codes), never anything from a record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from protocols.model import Directory, Purpose, Unit

__all__ = ["Ask", "explain", "permitted_recipients"]


@dataclass(frozen=True)
class Ask:
    """What a submission asked for (codes only)."""

    unit: str
    kind: str
    protocol: str
    purpose: str
    recipient: str
    categories: Sequence[str]
    consent: str | None
    ground: str | None
    subject_informed: bool
    in_reply_to: str | None
    signing_key: str | None = None


def _list(items: Iterable[str]) -> str:
    ordered = sorted(items)
    return ", ".join(ordered) if ordered else "none"


def permitted_recipients(directory: Directory, protocol_id: str, purpose: Purpose,
                         sender: str) -> list[Unit]:
    protocol = directory.protocol(protocol_id)
    if protocol is None:
        return []
    return sorted((u for u in directory.units()
                   if protocol.may_receive(u, purpose) and u.address != sender),
                  key=lambda u: u.address)


def explain(reason: str, ask: Ask, directory: Directory | None, now: datetime) -> str:
    """One sentence for ``reason``: what is wrong and what to change."""
    protocol = directory.protocol(ask.protocol) if directory else None
    purpose = protocol.purpose(ask.purpose) if protocol else None
    d, p = directory, purpose
    if reason == "unknown_sender":
        return (f"{ask.unit} is not a unit in the registry: ask the registry's administrator "
                "to add it, or act as another unit")
    if reason == "key_not_valid":
        kid = ask.signing_key or "of this unit"
        return (f"your signing key {kid} is not registered (or no longer valid) for "
                f"{ask.unit}: ask the registry's administrator to register it")
    if reason == "unknown_protocol":
        return f"{ask.protocol} is not a protocol in the registry: choose a protocol in force"
    if reason == "protocol_not_in_force":
        return (f"the protocol {ask.protocol} is not in force now: nothing may be shared "
                "under it until it is")
    if reason == "not_signatory":
        return (f"{ask.unit.split('/')[0]} or {ask.recipient.split('/')[0]} has not signed "
                f"{ask.protocol}: choose a recipient of a signatory organisation")
    if reason == "unknown_purpose":
        names = _list([x.id for x in protocol.purposes]) if protocol else "none"
        return f"{ask.purpose} is not a purpose of {ask.protocol}: choose one of {names}"
    if reason == "kind_not_permitted" and p is not None:
        return (f"a {ask.kind} is not permitted for {p.id} (it opens with "
                f"{_list(p.opens)}): send a {_list(p.opens)} instead")
    if reason == "sender_not_permitted" and p is not None:
        return (f"{ask.unit} may not send for {p.id}: only units with the roles "
                f"{_list(p.sender_roles)} may")
    if reason == "recipient_not_permitted" and p is not None and d is not None:
        units = [u.address for u in permitted_recipients(d, ask.protocol, p, ask.unit)]
        if d.unit(ask.recipient) is None:
            return (f"{ask.recipient} is not a unit of the protocol: choose one of "
                    f"{_list(units)}")
        return f"{ask.recipient} may not receive for {p.id}: choose one of {_list(units)}"
    if reason == "category_not_permitted" and p is not None:
        extra = sorted(set(ask.categories) - set(p.data_categories))
        return (f"{_list(extra)} may not be shared for {p.id}: leave it out (permitted: "
                f"{_list(p.data_categories)})")
    if reason == "consent_required" and p is not None:
        return (f"{p.id} needs the consent of the child or family: seek it and record it as "
                "given, or choose a purpose that permits sharing without consent")
    if reason == "ground_not_permitted" and p is not None:
        if not p.grounds:
            return f"{p.id} accepts no ground for sharing without consent: record consent given"
        return (f"{ask.ground or 'no ground'} is not a ground {p.id} accepts for sharing "
                f"without consent: choose one of {_list(p.grounds)}")
    if reason == "subject_must_be_informed" and p is not None:
        return (f"for {p.id} the child or family must be told that this is shared: tell them "
                "and say so")
    if reason == "approval_required":
        return "a manager must approve this before it is sent: it waits for approval"
    if reason == "no_matching_request":
        return (f"{ask.in_reply_to or 'in_reply_to'} is not a request that {ask.recipient} "
                f"sent to {ask.unit} under {ask.purpose}: answer a request from your inbox")
    if reason == "recipient_key_not_valid":
        return (f"{ask.recipient} has no valid encryption key in the registry: ask its "
                "organisation to register one; nothing can be sealed to it until then")
    if reason == "stale":
        return "the message is too old or dated in the future: submit it again"
    if reason in ("malformed", "too_large", "payload_mismatch"):
        return f"the message could not be built ({reason}): check the record and try again"
    return f"refused ({reason}): check the purpose, recipient, consent and ground"
