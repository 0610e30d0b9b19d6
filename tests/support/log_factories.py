"""Entry drafts and evidence for the log format and transfer log tests.

Plain functions: ``draft(i)`` is a routed referral ``i`` and ``evidence(i)``
its evidence; any field can change. ``UNREADABLE`` holds the fields of a body
refused at check 1 (give ``header_sha256``, the body's hash, with it).
``line_pairs()`` are lines of every shape, for the tests that hold a fast path
of reading lines to the full parser.
"""

from __future__ import annotations

import hashlib
from typing import Any

from keys import b64encode
from protocols.log_format import Entry, EntryDraft, Evidence

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


def line_pairs(first: int = 0) -> list[tuple[bytes, bytes]]:
    """Entry and evidence lines of every shape the router writes, seq ``first`` on: routed,
    refused after check 1, refused at check 1 (no header), consent null or with or
    without a ground, an answer, categories none or many, several signatures, headers
    whose base64 is padded or not, and publishers null, empty and with characters that
    JSON escapes."""
    shapes: list[tuple[dict[str, Any], Evidence]] = [
        ({}, evidence(1)),
        ({"decision": "refused", "reason": "stale"}, evidence(2)),
        ({"in_reply_to": mid(9), "kind": "response", "consent": None}, evidence(3)),
        ({"consent": {"status": "given", "ground": None}, "data_categories": []},
         evidence(4, publisher="")),
        ({"subject_informed": True, "data_categories": ["a", "b-c", "z9"]},
         evidence(5, publisher=None)),
        ({**UNREADABLE, "header_sha256": sha("body 6")},
         Evidence(header=None, signatures=None, publisher=POLICE_USER,
                  body_sha256=sha("body 6"))),
        ({"reason": "too_large", "decision": "refused", **{
            k: v for k, v in UNREADABLE.items() if k != "reason"},
          "header_sha256": sha("body 7")},
         Evidence(header=None, signatures=None, publisher="odd \"user\"\\ é",
                  body_sha256=sha("body 7"))),
        ({}, evidence(8, header=b"", signatures=[SIG, {"key": "cd" * 16,
                                                        "sig": b64encode(b"\x01" * 64)}])),
        ({}, evidence(9, header=b"ab")),
        ({}, evidence(10, header=b"abcd")),
        ({**UNREADABLE, "reason": "unsupported_version", "header_sha256": sha("body 11")},
         Evidence(header=None, signatures=None, publisher=None, body_sha256=sha("body 11"))),
        ({"decision": "refused", "reason": "approval_required", "subject_informed": True},
         evidence(12, signatures=[SIG] * 5)),
        ({"kind": "receipt", "in_reply_to": mid(3), "data_categories": ["identity"]},
         evidence(13, publisher="leeds-cc.front-door\u2028\n")),
        ({"decision": "refused", "reason": "sender_mismatch"},
         evidence(14, publisher="leeds-cc.front-door")),
    ]
    out = []
    for seq, (overrides, ev) in enumerate(shapes, first):
        if ev.header is not None:  # the entry names its evidence's header, as the router's do
            overrides = {**overrides, "header_sha256": sha(ev.header)}
        e, line = Entry.with_evidence(draft(seq, **overrides), seq, ev)
        out.append((e.to_bytes(), line))
    return out

