"""The leaf hash a routed message should have in the transfer log.

A notice gives the log position (``seq``) and time of a decision but not its
entry. The gateway knows everything else the entry is made of: the header it
built, the body it published, and the registry version it decided with. So
it rebuilds the entry (wire spec 6.1) and hashes it. The result equals the
log's leaf when the router decided with the same registry version, which is
the usual case; an auditor's inclusion proof by message id is the authority.
"""

from __future__ import annotations

from protocols.directory import format_time
from protocols.envelope import Notice, header_codes, parse_envelope
from protocols.log_format import Entry, EntryFormatError

__all__ = ["expected_leaf_hash"]


def expected_leaf_hash(body: bytes, notice: Notice, registry_version: int,
                       publisher: str) -> str | None:
    """Hex leaf hash of the entry the router should have logged, or None if it cannot
    be rebuilt."""
    env = parse_envelope(body)
    h = header_codes(env.header)
    try:
        entry = Entry(seq=notice.seq, at=format_time(notice.at), message_id=h["message_id"],
                      kind=h["kind"], decision=notice.decision, reason=notice.reason,
                      protocol=h["protocol"], purpose=h["purpose"], sender=h["sender"],
                      recipient=h["recipient"], in_reply_to=h["in_reply_to"],
                      consent=h["consent"], subject_informed=h["subject_informed"],
                      data_categories=h["data_categories"], header_sha256=env.header_sha256,
                      payload_sha256=env.payload_sha256, registry_version=registry_version)
    except (EntryFormatError, KeyError):
        return None
    del publisher  # part of the entry from the 19-field format on
    return entry.leaf_hash.hex()
