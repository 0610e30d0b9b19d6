"""Entry drafts and evidence for the log format and transfer log tests.

Plain functions: ``draft(i)`` is a routed referral ``i`` and ``evidence(i)``
its evidence; any field can change. ``UNREADABLE`` holds the fields of a body
refused at check 1 (give ``header_sha256``, the body's hash, with it).
"""

from __future__ import annotations

import hashlib
from typing import Any

from keys import b64encode
from protocols.log_format import EntryDraft, Evidence

POLICE_USER = "west-yorkshire-police.police-safeguarding"
SIG = {"key": "ab" * 16, "sig": b64encode(bytes(64))}

UNREADABLE: dict[str, Any] = dict(
    message_id=None, kind=None, decision="refused", reason="malformed", protocol=None,
    purpose=None, sender=None, recipient=None, consent=None, subject_informed=None,
    data_categories=None, payload_sha256=None)


def mid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def draft(i: int, **overrides: Any) -> EntryDraft:
    """A routed referral ``i``; any field can change."""
    fields: dict[str, Any] = dict(
        at="2026-11-24T13:50:41Z", message_id=mid(i), kind="referral", decision="routed",
        reason=None, protocol="wy-iisp-2016", purpose="safeguarding-referral",
        sender="west-yorkshire-police/police-safeguarding", recipient="leeds-cc/front-door",
        in_reply_to=None, consent={"status": "not_sought", "ground": "child-significant-harm"},
        subject_informed=False, data_categories=["concern", "identity"],
        header_sha256=sha(f"header {i}"), payload_sha256=sha(f"payload {i}"),
        registry_version=7)
    fields.update(overrides)
    return EntryDraft(**fields)


def evidence(i: int, **overrides: Any) -> Evidence:
    fields: dict[str, Any] = dict(header=f'{{"header":{i}}}'.encode(), signatures=[SIG],
                                  publisher=POLICE_USER, body_sha256=sha(f"body {i}"))
    fields.update(overrides)
    return Evidence(**fields)
