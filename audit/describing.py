"""An entry in words, for auditors: who shared what with whom, why, and what happened.

Names come from the registry directory the decision was made under; where it
is not at hand, the codes stand in. Codes only exist in the log, so nothing
here can name a child.
"""

from __future__ import annotations

from typing import Final

from audit.reporting import ReportRow
from protocols.model import Directory

_KIND: Final = {
    "referral": "shared a referral with",
    "request": "sent a request to",
    "response": "sent a response to",
    "declined": "declined a request from",
    "receipt": "acknowledged receipt to",
}
_CONSENT: Final = {
    "given": "with consent",
    "not_sought": "without consent on the ground {ground}",
    "refused": "after consent was refused, on the ground {ground}",
}


def unit_name(address: str | None, d: Directory | None) -> str:
    """``Leeds City Council Children's Social Work Service``, or the address itself."""
    if address is None:
        return "an unknown sender"
    if d is not None:
        unit = d.unit(address)
        org = d.organisation(address.split("/")[0])
        if unit is not None and org is not None:
            return f"{org.name} {unit.name}"
    return address


def purpose_title(protocol: str | None, purpose: str | None, d: Directory | None) -> str:
    if purpose is None:
        return "an unknown purpose"
    if d is not None and protocol is not None:
        p = d.protocol(protocol)
        found = None if p is None else p.purpose(purpose)
        if found is not None:
            return f"{found.title[:1].lower()}{found.title[1:]} ({purpose})"
    return purpose.replace("-", " ")


def in_words(r: ReportRow, d: Directory | None) -> str:
    """One sentence: sender, kind, recipient, purpose, consent, outcome."""
    outcome = r.decision if r.reason is None else f"{r.decision} ({r.reason})"
    if r.kind is None:
        who = f"the AMQP user {r.publisher}" if r.publisher else "an unknown publisher"
        return (f"A message published by {who} could not be read, so nothing of its header "
                f"was recorded; {outcome}.")
    text = (f"{unit_name(r.sender, d)} {_KIND.get(r.kind, r.kind)} "
            f"{unit_name(r.recipient, d)} for {purpose_title(r.protocol, r.purpose, d)}")
    if r.consent is not None:
        ground = (r.ground or "none given").replace("-", " ")
        text += ", " + _CONSENT.get(r.consent, r.consent).format(ground=ground)
    return f"{text}; {outcome}."
