"""An auditor's own verifier of a transfer-log export, written from the wire spec alone.

This is what an independent implementation of wire spec section 6 (as amended
2026-11-30) does with an export, and the tests run it against exports of a
real router. It imports nothing of the project: only ``hashlib``, ``json``,
``base64`` and ``nacl`` (for Ed25519), so that a misreading shared by the
project's own verifier and its writer cannot hide here.

It checks, and raises :class:`SpecViolation` at the first problem:

- entries.jsonl: each line is an entry followed by ``\\n``; an entry is a
  compact ASCII JSON object with exactly the 19 fields of 6.1 in order, no
  duplicate keys; ``seq`` runs 0..n-1; a body refused at check 1 has every
  field taken from the header null;
- the RFC 9162 tree over SHA-256(0x00 || entry bytes);
- checkpoints.jsonl: each ``{"note"}`` is a C2SP signed note of a C2SP
  checkpoint, signed by the trusted key (Ed25519), one origin, sizes never
  decreasing, roots equal to the recomputed roots, the newest covering
  every entry; log-key.txt is the trusted key's line;
- evidence.jsonl (optional, 6.4): line k hashes to entry k's
  ``evidence_sha256`` and is the compact evidence object of 6.1 for that
  entry, its header hashing to ``header_sha256``.
"""

from __future__ import annotations

import base64
import hashlib
import json

import nacl.exceptions
import nacl.signing

ENTRY_KEYS = ["seq", "at", "message_id", "kind", "decision", "reason", "protocol", "purpose",
              "sender", "recipient", "in_reply_to", "consent", "subject_informed",
              "data_categories", "header_sha256", "payload_sha256", "registry_version",
              "publisher", "evidence_sha256"]
EVIDENCE_KEYS = ["seq", "header", "signatures", "publisher", "body_sha256"]
#: "every field taken from the header" (6.1): null when a body fails check 1.
HEADER_KEYS = ["message_id", "kind", "protocol", "purpose", "sender", "recipient",
               "in_reply_to", "consent", "subject_informed", "data_categories"]
CHECK_1 = {"malformed", "too_large", "unsupported_version"}
REASONS = CHECK_1 | {
    "unknown_sender", "sender_mismatch", "key_not_valid", "bad_signature", "duplicate",
    "stale", "unknown_protocol", "protocol_not_in_force", "not_signatory", "unknown_purpose",
    "kind_not_permitted", "sender_not_permitted", "recipient_not_permitted",
    "category_not_permitted", "consent_required", "ground_not_permitted",
    "subject_must_be_informed", "approval_required", "no_matching_request",
    "recipient_key_not_valid", "payload_mismatch"}
HEX = "0123456789abcdef"


class SpecViolation(Exception):
    """The export breaks wire spec section 6; the message says where."""


def key_line(name: str, public_key: bytes) -> str:
    """The verifier key line of 6.2 for an Ed25519 key: name+hex key hash+base64(0x01||key)."""
    key_hash = hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]
    key = base64.b64encode(b"\x01" + public_key).decode()
    return f"{name}+{key_hash.hex()}+{key}"


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise SpecViolation("a duplicate key")
    return dict(pairs)


def _object(data: bytes, keys: list[str], where: str) -> dict[str, object]:
    """A compact ASCII JSON object with exactly ``keys`` in that order."""
    if not data.isascii():
        raise SpecViolation(f"{where}: not ASCII")
    try:
        doc = json.loads(data.decode("ascii"), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as e:
        raise SpecViolation(f"{where}: not JSON ({e})") from None
    if not isinstance(doc, dict) or list(doc) != keys:
        raise SpecViolation(f"{where}: not exactly the fields {keys} in order")
    if json.dumps(doc, separators=(",", ":")).encode() != data:
        raise SpecViolation(f"{where}: not compact JSON")
    return doc


def _hex64(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in HEX for c in value)


def _b64(value: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except ValueError:
        raise SpecViolation(f"{where}: not base64") from None
    if base64.b64encode(raw).decode() != value:
        raise SpecViolation(f"{where}: not padded canonical base64")
    return raw


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def tree_root(leaves: list[bytes]) -> bytes:
    """MTH of RFC 9162 2.1.1 over leaf hashes."""
    if not leaves:
        return _sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _sha256(b"\x01" + tree_root(leaves[:k]) + tree_root(leaves[k:]))


def _lines(path: str, name: str) -> list[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        raise SpecViolation(f"{name}: the last line does not end with a newline")
    return data.split(b"\n")[:-1] if data else []


def _entry(line: bytes, k: int) -> dict[str, object]:
    where = f"entries.jsonl line {k + 1}"
    e = _object(line, ENTRY_KEYS, where)
    if e["seq"] != k or type(e["seq"]) is not int:
        raise SpecViolation(f"{where}: seq {e['seq']!r} where {k} belongs")
    if e["decision"] not in ("routed", "refused"):
        raise SpecViolation(f"{where}: decision")
    if (e["decision"] == "routed") != (e["reason"] is None) or (
            e["reason"] is not None and e["reason"] not in REASONS):
        raise SpecViolation(f"{where}: reason")
    if not _hex64(e["header_sha256"]) or not _hex64(e["evidence_sha256"]):
        raise SpecViolation(f"{where}: header_sha256 or evidence_sha256 is not hex SHA-256")
    if e["publisher"] is not None and not isinstance(e["publisher"], str):
        raise SpecViolation(f"{where}: publisher")
    at = e["at"]
    if not (isinstance(at, str) and len(at) == 20 and at[10] == "T" and at.endswith("Z")):
        raise SpecViolation(f"{where}: at is not a UTC time with whole seconds")
    if e["reason"] in CHECK_1:
        named = [key for key in HEADER_KEYS if e[key] is not None]
        if named:
            raise SpecViolation(f"{where}: a body refused at check 1 names {named}")
    elif e["message_id"] is None:
        raise SpecViolation(f"{where}: no message id, but not refused at check 1")
    return e


def _checkpoint(note: str, name: str, public_key: bytes, where: str) -> tuple[str, int, bytes]:
    """Origin, size and root of a C2SP checkpoint signed by the trusted key."""
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise SpecViolation(f"{where}: not a signed note")
    text, signatures = note[:split + 1], note[split + 2:-1].split("\n")
    key_hash = hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]
    verified = False
    for sig_line in signatures:
        if not sig_line.startswith("\u2014 ") or sig_line.count(" ") != 2:
            raise SpecViolation(f"{where}: malformed signature line")
        signer, blob_b64 = sig_line[2:].split(" ")
        blob = _b64(blob_b64, where)
        if signer != name or blob[:4] != key_hash:
            continue  # another key's signature: not ours to judge
        try:
            nacl.signing.VerifyKey(public_key).verify(text.encode("utf-8"), blob[4:])
        except (nacl.exceptions.BadSignatureError, ValueError):
            raise SpecViolation(f"{where}: the signature does not verify") from None
        verified = True
    if not verified:
        raise SpecViolation(f"{where}: no signature by the trusted key")
    lines = text.split("\n")
    if len(lines) < 4 or not lines[1].isdigit():
        raise SpecViolation(f"{where}: not origin, size and root")
    root = _b64(lines[2], where)
    if len(root) != 32:
        raise SpecViolation(f"{where}: the root is not 32 bytes")
    return lines[0], int(lines[1]), root


def _evidence(line: bytes, entry: dict[str, object], k: int) -> None:
    where = f"evidence.jsonl line {k + 1}"
    if hashlib.sha256(line).hexdigest() != entry["evidence_sha256"]:
        raise SpecViolation(f"{where}: does not hash to the entry's evidence_sha256")
    ev = _object(line, EVIDENCE_KEYS, where)
    if ev["seq"] != k or ev["publisher"] != entry["publisher"] or not _hex64(ev["body_sha256"]):
        raise SpecViolation(f"{where}: seq, publisher or body_sha256 do not fit the entry")
    header, signatures = ev["header"], ev["signatures"]
    if header is None:
        if signatures is not None or entry["reason"] not in CHECK_1 or (
                entry["header_sha256"] != ev["body_sha256"]):
            raise SpecViolation(f"{where}: no header, but the entry is not a check-1 "
                                "refusal hashed over the whole body")
        return
    if not isinstance(header, str) or not isinstance(signatures, list) or not signatures:
        raise SpecViolation(f"{where}: header and signatures")
    if hashlib.sha256(_b64(header, where)).hexdigest() != entry["header_sha256"]:
        raise SpecViolation(f"{where}: the header does not hash to header_sha256")
    for s in signatures:
        if not isinstance(s, dict) or list(s) != ["key", "sig"]:
            raise SpecViolation(f"{where}: a signature is not {{key, sig}}")
        if len(_b64(str(s["sig"]), where)) != 64:
            raise SpecViolation(f"{where}: a signature is not 64 bytes")


def verify_export(directory: str, *, name: str, public_key: bytes) -> dict[str, int]:
    """Verify the export in ``directory`` against the log key ``name`` / ``public_key``.

    Returns counts of what was checked.

    Raises:
        SpecViolation: the first problem found.
    """
    with open(f"{directory}/log-key.txt", encoding="utf-8") as f:
        if f.read() != key_line(name, public_key) + "\n":
            raise SpecViolation("log-key.txt is not the trusted key")
    lines = _lines(f"{directory}/entries.jsonl", "entries.jsonl")
    entries = [_entry(line, k) for k, line in enumerate(lines)]
    leaves = [_sha256(b"\x00" + line) for line in lines]
    origin, last = None, -1
    checkpoints = _lines(f"{directory}/checkpoints.jsonl", "checkpoints.jsonl")
    for k, raw in enumerate(checkpoints):
        where = f"checkpoints.jsonl line {k + 1}"
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        if not isinstance(doc, dict) or list(doc) != ["note"]:
            raise SpecViolation(f"{where}: not {{note}}")
        cp_origin, size, root = _checkpoint(str(doc["note"]), name, public_key, where)
        if origin is not None and cp_origin != origin:
            raise SpecViolation(f"{where}: another origin")
        if size < last or size > len(leaves) or root != tree_root(leaves[:size]):
            raise SpecViolation(f"{where}: size {size} does not match the entries")
        origin, last = cp_origin, size
    if last != len(leaves):
        raise SpecViolation(f"the newest checkpoint covers {last} of {len(leaves)} entries")
    evidence = 0
    try:
        ev_lines = _lines(f"{directory}/evidence.jsonl", "evidence.jsonl")
    except FileNotFoundError:
        ev_lines = None
    if ev_lines is not None:
        if len(ev_lines) != len(entries):
            raise SpecViolation("evidence.jsonl does not have one line per entry")
        for k, (line, entry) in enumerate(zip(ev_lines, entries, strict=True)):
            _evidence(line, entry, k)
            evidence += 1
    return {"entries": len(entries), "checkpoints": len(checkpoints), "evidence": evidence}
