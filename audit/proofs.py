"""Inclusion proofs: a document that a message's entries are in the signed log, checked offline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from audit.errors import AuditError
from audit.export_dir import (
    CHECKPOINTS,
    ENTRIES,
    LOG_KEY,
    Failure,
    LineReader,
    load_checkpoint_notes,
    outcome,
    read_entries,
)
from audit.exporting import LogSource
from keys import (
    Checkpoint,
    NoteError,
    NoteVerifier,
    open_checkpoint,
)
from protocols import merkle, strict_json
from protocols.log_format import Entry, EntryFormatError

PROOF_FORMAT: Final = "infoshare-inclusion-proof/v1"


def prove(source: LogSource | Path | str, message_id: str, *,
          log_key: NoteVerifier | None = None, now: datetime | None = None) -> dict[str, Any]:
    """A proof document that every entry naming ``message_id`` is in the signed log.

    ``source`` is a log or an export directory. The document holds, for each
    such entry, its bytes, seq, leaf hash and inclusion proof, and once the
    tree size, the signed checkpoint of that size and the log key: enough to
    check it offline with :func:`check_proof`.

    Raises:
        AuditError: no entry names the message id, no checkpoint covers it, or
            the source cannot be read.
    """
    if isinstance(source, Path | str):
        verifier, note, found, leaves = _from_export(Path(source), message_id, log_key)
    else:
        verifier, note, found, leaves = _from_log(source, message_id, log_key, now)
    try:
        cp = open_checkpoint(note, verifier)
    except NoteError as e:
        raise AuditError(f"the checkpoint does not verify with the log key: {e}") from e
    return {
        "format": PROOF_FORMAT,
        "message_id": message_id,
        "tree_size": cp.size,
        "checkpoint": note,
        "log_key": verifier.line(),
        "entries": [{
            "seq": e.seq, "entry": e.to_bytes().decode("ascii"), "leaf_hash": e.leaf_hash.hex(),
            "inclusion_proof": [h.hex() for h in merkle.inclusion_proof(leaves, e.seq,
                                                                        cp.size)],
        } for e in found],
    }


def _from_log(log: LogSource, message_id: str, log_key: NoteVerifier | None,
              now: datetime | None) -> tuple[NoteVerifier, str, list[Entry], list[bytes]]:
    found = log.find_entries(message_id)
    if not found:
        raise AuditError(f"no entry of the log names message {message_id}")
    verifier = log.verifier if log.can_sign else log_key
    if verifier is None:
        raise AuditError("the log key is needed to prove from a log opened without it")
    note = log.latest_checkpoint()
    size = 0 if note is None else Checkpoint.parse(note[: note.rfind("\n\n") + 1]).size
    if size <= found[-1].seq:
        if not log.can_sign:
            raise AuditError(f"no checkpoint covers seq {found[-1].seq} yet; the routers sign "
                             "one within 10 s")
        note = log.checkpoint(now or datetime.now(UTC))
        size = open_checkpoint(note, verifier).size
    assert note is not None
    return verifier, note, found, log.leaf_hashes(0, size)


def _from_export(d: Path, message_id: str, log_key: NoteVerifier | None
                 ) -> tuple[NoteVerifier, str, list[Entry], list[bytes]]:
    try:
        verifier = log_key or NoteVerifier.parse((d / LOG_KEY).read_text(encoding="utf-8"))
        notes = load_checkpoint_notes(d / CHECKPOINTS)
        leaves: list[bytes] = []
        found: list[Entry] = []
        with open(d / ENTRIES, "rb") as f:
            for e in read_entries(LineReader(f, ENTRIES, seq_lines=True)):
                leaves.append(e.leaf_hash)
                if e.message_id == message_id:
                    found.append(e)
    except (OSError, UnicodeDecodeError) as e:
        raise AuditError(f"{d}: cannot read the export") from e
    except NoteError as e:
        raise AuditError(f"{d}: {e}; run verify") from e
    except Failure as f:
        raise AuditError(f"{f.where()}: {f}") from f
    if not found:
        raise AuditError(f"no entry of the export names message {message_id}")
    if not notes:
        raise AuditError(f"{d}: no checkpoint")
    return verifier, notes[-1], found, leaves


@dataclass(frozen=True)
class ProofCheck:
    ok: bool
    failure: str | None = None
    size: int | None = None
    entries: tuple[Entry, ...] = ()
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        if not self.ok:
            return f"FAILED: {self.failure}"
        lines = [f"ok: in the log of size {self.size}:"]
        lines += [f"  seq {e.seq} {e.at} {outcome(e.decision, e.reason)} "
                  f"{e.kind or '-'} {e.sender or '-'} -> {e.recipient or '-'}"
                  for e in self.entries]
        return "\n".join(lines)


def check_proof(proof: dict[str, Any] | Path | str,
                log_key: NoteVerifier | None = None) -> ProofCheck:
    """Check a proof document offline: the checkpoint's signature, each entry's inclusion.

    Without ``log_key`` the document's own key is used, with a warning.

    Raises:
        AuditError: the proof file cannot be read.
    """
    warnings: list[str] = []
    doc: object = proof
    source = ""  # a proof read from a file names the file in every failure
    if not isinstance(proof, dict):
        path = Path(proof)
        source = f"{path.name}: "
        try:
            data = path.read_bytes()
        except OSError as e:
            raise AuditError(f"{path}: cannot read the proof") from e
        try:
            doc = strict_json.loads(data)
        except strict_json.StrictJSONError as e:
            return ProofCheck(ok=False, failure=f"{source}not a proof document ({e})")
    try:
        return _check_proof(doc, log_key, warnings)
    except Failure as f:
        return ProofCheck(ok=False, failure=f"{source}{f}", warnings=tuple(warnings))


def _check_proof(doc: Any, pinned: NoteVerifier | None, warnings: list[str]) -> ProofCheck:
    fields = {"format", "message_id", "tree_size", "checkpoint", "log_key", "entries"}
    if not isinstance(doc, dict) or set(doc) != fields or doc["format"] != PROOF_FORMAT:
        raise Failure(f"not an {PROOF_FORMAT} document")
    if pinned is None:
        try:
            verifier = NoteVerifier.parse(str(doc["log_key"]))
        except NoteError as e:
            raise Failure(f"the proof's log key is not a verifier key: {e}") from e
        warnings.append("checked against the proof's own log key: give the key you trust "
                        "with --log-key")
    else:
        verifier = pinned
    try:
        cp = open_checkpoint(str(doc["checkpoint"]), verifier)
    except NoteError as e:
        raise Failure(f"the checkpoint does not verify with the log key: {e}") from e
    if doc["tree_size"] != cp.size:
        raise Failure(f"tree_size {doc['tree_size']} is not the checkpoint's {cp.size}")
    items = doc["entries"]
    if not isinstance(items, list) or not items:
        raise Failure("no entries")
    entries = []
    for i, item in enumerate(items):
        where = f"entries[{i}]"
        if not isinstance(item, dict) or set(item) != {"seq", "entry", "leaf_hash",
                                                       "inclusion_proof"}:
            raise Failure(f"{where}: not {{seq, entry, leaf_hash, inclusion_proof}}")
        try:
            entry = Entry.from_bytes(str(item["entry"]).encode("ascii"))
            path = [bytes.fromhex(h) for h in item["inclusion_proof"]]
        except (EntryFormatError, UnicodeEncodeError, ValueError, TypeError) as err:
            raise Failure(f"{where}: not an entry and a proof: {err}") from err
        if entry.seq != item["seq"] or entry.message_id != doc["message_id"]:
            raise Failure(f"{where}: the entry's seq or message id is not the document's")
        if entry.leaf_hash.hex() != item["leaf_hash"]:
            raise Failure(f"{where}: the leaf hash is not the entry's")
        if not merkle.verify_inclusion(entry.leaf_hash, entry.seq, cp.size, path, cp.root):
            raise Failure(f"{where}: seq {entry.seq} is not in the signed tree of size "
                           f"{cp.size}")
        entries.append(entry)
    return ProofCheck(ok=True, size=cp.size, entries=tuple(entries), warnings=tuple(warnings))
