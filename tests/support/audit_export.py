"""An export of a transfer log built as the router builds it, for the audit tests.

The log holds real signed envelopes decided by ``policy.decide`` against a
small signed directory (two versions), including refusals, a redelivery, a
duplicate, an unreadable body and a countersigned referral.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from envelope_factories import (
    FRONT_DOOR,
    POLICE,
    PROTOCOL,
    S47,
    SECRET_NAME,
    T0,
    World,
    body_of,
    referral,
    world,
)

from audit import export
from audit.export_dir import checkpoint_line
from broker.router import decide_and_append, parse_body
from broker.transfer_log import LogBatch, TransferLog
from keys import Checkpoint, NoteSigner, SigningKeyPair
from protocols import merkle
from protocols.directory import sign_directory
from protocols.envelope import build_envelope
from protocols.log_format import Entry
from protocols.model import Consent, Directory, GroundId, amqp_user

ORIGIN = "test.example/transfer-log"
LOG_KEY = SigningKeyPair.generate()
SIGNER = NoteSigner(ORIGIN, LOG_KEY)
POLICE_USER = amqp_user(POLICE)
DOOR_USER = amqp_user(FRONT_DOOR)
CSH = Consent("not_sought", GroundId("child-significant-harm"))


# --- the router's own decide-and-append ------------------------------------------------


def route(lb: LogBatch, body: bytes, user_id: str | None, directory: Directory,
          now: datetime) -> Entry | None:
    """Decide and append as broker.router does; None for a redelivery."""
    entry, _, again = decide_and_append(lb, body, parse_body(body), user_id, directory, now)
    return None if again else entry


@dataclass
class Built:
    w: World
    log: TransferLog
    export: Path
    directories: dict[int, bytes]
    v7: Directory
    v8: Directory
    ids: dict[str, str]
    checkpoints: list[str]  # notes the auditor collected while the log grew


def s47_request(w: World, created: datetime) -> tuple[bytes, str]:
    body, env = build_envelope(
        kind="request", protocol=PROTOCOL, purpose=S47, sender=FRONT_DOOR, recipient=POLICE,
        record={"identity": {"name": SECRET_NAME}}, reasons="strategy discussion",
        sender_key=w.door_sign, recipient_key=w.police_enc.public, created_at=created,
        consent=CSH, subject_informed=False)
    return body, env.header.message_id


def build_export(root: Path) -> Built:
    """A log decided as the router decides, with refusals of many kinds, and its export."""
    w = world()
    v7 = w.directory
    v8 = dataclasses.replace(w.directory, version=8, issued_at=T0)
    docs = {d.version: sign_directory(d, w.registry) for d in (v7, v8)}
    log = TransferLog.open(f"sqlite:///{root / 'log.db'}", signer=SIGNER, origin=ORIGIN)
    ids: dict[str, str] = {}
    held: list[str] = []
    t = T0 + timedelta(seconds=5)

    with log.batch() as lb:
        body, env = referral(w, created_at=T0)
        ids["referral"] = env.header.message_id
        assert route(lb, body, POLICE_USER, v7, t) is not None
        assert route(lb, body, POLICE_USER, v7, t) is None  # a redelivery: no entry
        # The same bytes published by the front door: refused, reserves nothing.
        route(lb, referral(w, created_at=T0, message_id=mid("1"))[0], DOOR_USER, v7, t)
        ids["mismatch"] = mid("1")
        refused, env = referral(w, created_at=T0, consent=Consent(
            "refused", GroundId("child-significant-harm")))
        ids["approval"] = env.header.message_id
        route(lb, refused, POLICE_USER, v7, t)
    held.append(log.checkpoint(t))

    t += timedelta(seconds=20)
    with log.batch() as lb:
        signed, env = referral(w, created_at=T0, consent=Consent(
            "refused", GroundId("child-significant-harm")), countersigners=(w.police_manager,))
        ids["countersigned"] = env.header.message_id
        route(lb, signed, POLICE_USER, v7, t)
        stale, env = referral(w, created_at=T0 - timedelta(days=3))
        ids["stale"] = env.header.message_id
        route(lb, stale, POLICE_USER, v7, t)
        again, _ = referral(w, created_at=T0 + timedelta(seconds=1),
                            message_id=ids["referral"])
        route(lb, again, POLICE_USER, v7, t)  # same id, another header: duplicate
        route(lb, b'{"version": 1, "header": 5}', POLICE_USER, v7, t)
        # A readable header in a body that fails check 1 names nothing (6.1).
        readable, env = referral(w, created_at=T0)
        ids["readable-malformed"] = env.header.message_id
        route(lb, readable[:-1] + b',"extra":1}', POLICE_USER, v7, t)
        route(lb, b'{"version": 2}', None, v7, t)
        _, env = referral(w, created_at=T0)
        other = b"a different ciphertext" * 4
        ids["payload"] = env.header.message_id
        route(lb, body_of(env.header_bytes, other, [w.police_sign]), POLICE_USER, v7, t)
    held.append(log.checkpoint(t))

    t += timedelta(seconds=20)
    with log.batch() as lb:
        req, ids["request"] = s47_request(w, t)
        route(lb, req, DOOR_USER, v8, t)
        resp, env = build_envelope(
            kind="response", protocol=PROTOCOL, purpose=S47, sender=POLICE,
            recipient=FRONT_DOOR, record={"concern": "known to police"}, reasons="s47",
            sender_key=w.police_sign, recipient_key=w.door_enc.public, created_at=t,
            consent=CSH, subject_informed=False, in_reply_to=ids["request"])
        ids["response"] = env.header.message_id
        route(lb, resp, POLICE_USER, v8, t)
        orphan, env = build_envelope(
            kind="response", protocol=PROTOCOL, purpose=S47, sender=POLICE,
            recipient=FRONT_DOOR, record={"concern": "x"}, reasons="s47",
            sender_key=w.police_sign, recipient_key=w.door_enc.public, created_at=t,
            consent=CSH, subject_informed=False, in_reply_to=mid("2"))
        ids["orphan"] = env.header.message_id
        route(lb, orphan, POLICE_USER, v8, t)
    # At the 24 h freshness bound, decided at a fraction of a second past ``at``.
    late = T0 + timedelta(hours=24, milliseconds=500)
    with log.batch() as lb:
        edge, env = referral(w, created_at=T0, message_id=mid("3"))
        ids["edge"] = env.header.message_id
        entry = route(lb, edge, POLICE_USER, v8, late)
        assert entry is not None and entry.reason == "stale"
    held.append(log.checkpoint(late))

    out = root / "export"
    export(log, out, directories=docs.__getitem__, registry_key=w.registry.public,
           now=late + timedelta(seconds=1))
    return Built(w, log, out, docs, v7, v8, ids, held)


def mid(tag: str) -> str:
    return f"{int(tag):08x}-1111-4111-8111-111111111111"


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, items: list[bytes]) -> None:
    path.write_bytes(b"".join(items))


def entries_of(d: Path) -> list[Entry]:
    return [Entry.from_bytes(x.rstrip(b"\n")) for x in lines(d / "entries.jsonl")]


def resign(d: Path, signer: NoteSigner, sizes: list[int] | None = None) -> list[str]:
    """Rebuild checkpoints.jsonl over the export's entries, signed by ``signer``."""
    leaves = [merkle.leaf_hash(x.rstrip(b"\n")) for x in lines(d / "entries.jsonl")]
    if sizes is None:
        sizes = [json_size(n) for n in read_notes(d)]
    notes = [signer.sign(Checkpoint(ORIGIN, s, merkle.root(leaves[:s])).text()) for s in sizes]
    (d / "checkpoints.jsonl").write_bytes(b"".join(checkpoint_line(n) + b"\n" for n in notes))
    (d / "log-key.txt").write_text(signer.verifier.line() + "\n")
    return notes


def read_notes(d: Path) -> list[str]:
    return [json.loads(x)["note"] for x in lines(d / "checkpoints.jsonl")]


def json_size(note: str) -> int:
    return int(note.split("\n")[1])
