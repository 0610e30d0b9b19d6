"""Folder integration, for case systems that can only drop files (after Domibus's fs-plugin).

Per unit, under ``HOME/folders/ORG.UNIT/``:

- ``outbox/``: the case system writes ``NAME.json`` (write it elsewhere or
  under a dot-name, then rename it in: only ``*.json`` not starting with a
  dot is read). One JSON object: ``kind``, ``protocol``, ``purpose``,
  ``recipient``, ``record``, ``reasons``, ``consent``, ``ground``,
  ``subject_informed``, ``in_reply_to``, ``case_reference``.
- ``sent/``: the file once accepted, with ``NAME.status.json`` beside it
  (message id, status, log seq), brought up to date as the status changes.
- ``failed/``: a file refused or unreadable, with ``NAME.status.json`` giving
  the reason code and a sentence saying what to change.
- ``inbox/``: each received record as ``MESSAGE_ID.json``; writing it there is
  opening it, so its receipt goes.

Crash safety: a file's acceptance (its name, the SHA-256 of its bytes and its
message id) is committed in the same transaction as the submission, before
the file is moved; after a crash at any point, the file is found again, its
row says it was accepted, and it is only moved. So no file is sent twice and
none is lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from marshmallow import ValidationError

from agency.files import fsync_dir, write_atomic
from agency.gateway.errors import GatewayError, Invalid, Refused
from agency.gateway.schemas import SubmissionSchema
from agency.gateway.service import Draft, Gateway, describe

__all__ = ["FolderIntegration"]

log = logging.getLogger("infoshare.gateway.folder")
FINAL = ("routed", "refused", "receipted", "returned")


class FolderIntegration:
    def __init__(self, gateway: Gateway, folders: dict[str, Path]) -> None:
        self.gateway = gateway
        self.folders = folders
        for root in folders.values():
            for sub in ("outbox", "sent", "failed", "inbox"):
                (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    def step(self) -> None:
        """One pass: finish moves left by a crash, take new files, write statuses and
        received records."""
        self._finish_pending()
        for unit, root in self.folders.items():
            for path in sorted((root / "outbox").glob("*.json")):
                if not path.name.startswith("."):
                    self._take(unit, root, path)
            self._statuses(unit, root)
            self._deliver(unit, root)

    def _take(self, unit: str, root: Path, path: Path) -> None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        digest = hashlib.sha256(data).hexdigest()
        if self.gateway.store.folder_file(unit, path.name, digest) is not None:
            return  # accepted before a crash: _finish_pending moves it
        # The id follows from the file, so a file taken again after a crash (between
        # its submission and its row) is the same submission, not a second one.
        seed = hashlib.sha256(f"{unit}\x00{path.name}\x00{digest}".encode()).digest()
        mid = str(uuid.UUID(bytes=seed[:16], version=4))
        outcome: str = "sent"
        status: dict[str, Any] = {}
        try:
            draft = _draft(data)
            result = self.gateway.submit(unit, f"folder:{path.name}", draft, origin="folder",
                                         message_id=mid)
            status = {"message_id": mid, "status": result.status, "note": result.note}
        except Refused as e:
            outcome = "failed"
            status = {"message_id": e.message_id, "status": "refused", "reason": e.reason,
                      "sentence": e.sentence}
        except Invalid as e:
            outcome = "failed"
            status = {"message_id": None, "status": "invalid", "reason": "invalid",
                      "sentence": str(e), "fields": e.fields}
        with self.gateway.store.transaction() as conn:
            self.gateway.store.add_folder_file(conn, unit=unit, name=path.name, sha256=digest,
                                               message_id=status.get("message_id"),
                                               outcome=outcome)
        log.info("folder file taken unit=%s outcome=%s message_id=%s", unit, outcome,
                 status.get("message_id"))
        self._move(root, path.name, digest, outcome, status)
        self.gateway.store.folder_file_done(unit, path.name, digest)

    def _move(self, root: Path, name: str, digest: str, outcome: str,
              status: dict[str, Any]) -> None:
        src = root / "outbox" / name
        dst = root / outcome / name
        write_atomic(root / outcome / f"{Path(name).stem}.status.json",
                      (json.dumps({**status, "file_sha256": digest}, indent=2) + "\n")
                      .encode())
        with contextlib.suppress(FileNotFoundError):
            if src.exists() and hashlib.sha256(src.read_bytes()).hexdigest() == digest:
                os.replace(src, dst)
        fsync_dir(root / "outbox")
        fsync_dir(root / outcome)

    def _finish_pending(self) -> None:
        for unit, name, digest, mid, outcome in self.gateway.store.folder_pending():
            root = self.folders.get(unit)
            if root is None:
                continue
            status: dict[str, Any] = {"message_id": mid}
            if mid is not None:
                m = self.gateway.store.message(mid, "out")
                if m is not None:
                    status = describe(m)
            self._move(root, name, digest, outcome, status)
            self.gateway.store.folder_file_done(unit, name, digest)

    def _statuses(self, unit: str, root: Path) -> None:
        for status_file in (root / "sent").glob("*.status.json"):
            try:
                doc = json.loads(status_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if doc.get("status") in FINAL or not doc.get("message_id"):
                continue
            m = self.gateway.store.message(str(doc["message_id"]), "out")
            if m is None or m.status == doc.get("status"):
                continue
            new = {**describe(m), "file_sha256": doc.get("file_sha256")}
            if m.status == "refused":
                name = status_file.name.removesuffix(".status.json") + ".json"
                write_atomic(root / "failed" / status_file.name,
                              (json.dumps(new, indent=2) + "\n").encode())
                with contextlib.suppress(FileNotFoundError):
                    os.replace(root / "sent" / name, root / "failed" / name)
                status_file.unlink()
            else:
                write_atomic(status_file, (json.dumps(new, indent=2) + "\n").encode())

    def _deliver(self, unit: str, root: Path) -> None:
        for m in self.gateway.inbox(unit, only_new=True):
            c = m.content
            doc = {"message_id": m.message_id, "kind": m.kind, "protocol": m.protocol,
                   "purpose": m.purpose, "sender": m.counterpart, "seq": m.seq,
                   "in_reply_to": m.in_reply_to, "record": c.get("record"),
                   "reasons": c.get("reasons"), "consent": c.get("consent"),
                   "ground": c.get("ground"), "subject_informed": c.get("subject_informed")}
            write_atomic(root / "inbox" / f"{m.message_id}.json",
                          (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode())
            fsync_dir(root / "inbox")
            try:
                self.gateway.fetch(unit, m.message_id)
            except GatewayError as e:
                log.warning("folder delivery message_id=%s: %s", m.message_id, e.code)


def _draft(data: bytes) -> Draft:
    try:
        doc = json.loads(data)
    except ValueError:
        raise Invalid("the file is not JSON", {"file": ["not JSON"]}) from None
    try:
        loaded = SubmissionSchema().load(doc)
    except ValidationError as e:
        raise Invalid("the file is not a submission", _fields(e.messages)) from None
    return Draft(**loaded)


def _fields(messages: Any) -> dict[str, list[str]]:
    if isinstance(messages, dict):
        return {str(k): [str(v)] if not isinstance(v, list) else [str(x) for x in v]
                for k, v in messages.items()}
    return {"file": [str(messages)]}
