"""The leaf hash a routed message should have in the transfer log, as the gateway computes it.

A notice gives the log position (``seq``) and time of a decision but not its
entry. The gateway knows everything else the entry is made of: the header it
built, the body it published (so the evidence line, wire spec 6.1), the AMQP
user it published as, and the registry version it decided with. So it
rebuilds the entry with :mod:`protocols.log_format`, the code the router
logs with, and hashes it.

The one thing the gateway cannot know is the registry version the router
decided with: a directory change between submission and decision gives the
log's entry another ``registry_version``, and so another leaf. The result is
therefore the leaf *as computed by the gateway for that version*; the
recipient's ``infoshare-leaf`` header (wire spec 5), where the gateway holds
the recipient too, and an auditor's inclusion proof by message id are the
authorities.
"""

from __future__ import annotations

import hashlib

from protocols.envelope import EnvelopeRefused, Notice, parse_envelope
from protocols.log_format import Entry, EntryDraft, EntryFormatError, Evidence
from protocols.policy import ROUTED

__all__ = ["expected_leaf_hash"]


def expected_leaf_hash(body: bytes, notice: Notice, registry_version: int,
                       publisher: str) -> str | None:
    """Hex leaf hash of the entry the router logs for a routed ``notice`` on ``body``
    published by AMQP user ``publisher``, if it decided with ``registry_version``.

    None if the notice is not a routing of this body or the entry cannot be rebuilt.
    """
    if notice.decision != "routed":
        return None
    try:
        env = parse_envelope(body)
    except EnvelopeRefused:
        return None
    if env.header.message_id != notice.message_id:
        return None
    try:
        draft = EntryDraft.for_envelope(env, ROUTED, at=notice.at,
                                        registry_version=registry_version)
        evidence = Evidence.of(hashlib.sha256(body).hexdigest(), env, publisher)
        entry, _line = Entry.with_evidence(draft, notice.seq, evidence)
    except EntryFormatError:
        return None
    return entry.leaf_hash.hex()
