"""The leaf hash the gateway computes for a routed message: the router's entry for the
registry version it assumes, and nothing for what is not a routing of that body."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from envelope_factories import referral

from agency.gateway.leaf import expected_leaf_hash
from protocols.envelope import Notice
from protocols.log_format import Entry, EntryDraft, Evidence
from protocols.policy import ROUTED

AT = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
PUBLISHER = "west-yorkshire-police.police-safeguarding"


def test_the_leaf_is_the_routers_entry_for_the_version_assumed() -> None:
    body, env = referral()
    notice = Notice(env.header.message_id, "routed", None, 41, AT)
    logged, _ = Entry.with_evidence(
        EntryDraft.for_envelope(env, ROUTED, at=AT, registry_version=7), 41,
        Evidence.of(hashlib.sha256(body).hexdigest(), env, PUBLISHER))
    assert expected_leaf_hash(body, notice, 7, PUBLISHER) == logged.leaf_hash.hex()
    # Another registry version is another entry: the leaf names the version it assumed.
    assert expected_leaf_hash(body, notice, 8, PUBLISHER) != logged.leaf_hash.hex()


def test_nothing_for_a_refusal_another_message_or_a_body_that_does_not_parse() -> None:
    body, env = referral()
    assert expected_leaf_hash(body, Notice(env.header.message_id, "refused", "stale", 3, AT),
                              7, PUBLISHER) is None
    other = "00000000-0000-4000-8000-000000000000"
    assert expected_leaf_hash(body, Notice(other, "routed", None, 3, AT), 7, PUBLISHER) is None
    assert expected_leaf_hash(b"{}", Notice(env.header.message_id, "routed", None, 3, AT), 7,
                              PUBLISHER) is None
