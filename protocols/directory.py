"""The directory as a signed JSON document, and back.

A signed directory is ``{"version": 1, "directory": "<base64 of the directory
JSON bytes>", "signature": {"key": "<key id>", "sig": "<base64>"}}`` signed over
``b"infoshare/directory/v1\\n" + directory bytes``. Like an envelope header the
directory bytes are verified as received, never re-serialised first. Clients
and the broker pin the registry's public key and trust nothing unsigned.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, cast

from keys import SigningKeyPair, b64decode, b64encode, key_id, verify_signature
from keys.errors import KeyFormatError
from protocols import strict_json
from protocols.errors import DirectoryError
from protocols.model import (
    Category,
    CategoryId,
    Directory,
    Ground,
    GroundId,
    KeyRecord,
    LegalBasis,
    Manager,
    Organisation,
    OrgId,
    Protocol,
    ProtocolId,
    ProtocolStatus,
    Purpose,
    PurposeId,
    Role,
    Unit,
    UnitId,
)

DIRECTORY_CONTEXT = b"infoshare/directory/v1\n"
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z", re.ASCII)

Json = dict[str, Any]


def format_time(t: datetime) -> str:
    """RFC 3339 UTC with a trailing Z and whole seconds (wire spec conventions)."""
    u = t.astimezone(UTC)
    # strftime costs several times this, and every entry and envelope has a time.
    return (f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:"
            f"{u.second:02d}Z")


def parse_time(text: str) -> datetime:
    """Parse ``YYYY-MM-DDTHH:MM:SSZ``; raises ValueError on anything else."""
    # A fixed pattern of ASCII digits, then the calendar's own checks: faster
    # than strptime (this runs for every envelope and entry) and, unlike it,
    # refuses forms such as "2016-04- 1T..." or non-ASCII digits.
    if not isinstance(text, str) or _TIME.fullmatch(text) is None:
        raise ValueError(f"not an RFC 3339 UTC time with whole seconds: {text!r}")
    return datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                    int(text[14:16]), int(text[17:19]), tzinfo=UTC)


def _t(t: datetime | None) -> str | None:
    return None if t is None else format_time(t)


def _pt(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


def purpose_to_dict(p: Purpose) -> Json:
    return {
        "id": p.id, "title": p.title, "description": p.description,
        "opens": sorted(p.opens), "sender_roles": sorted(p.sender_roles),
        "recipient_roles": sorted(p.recipient_roles),
        "data_categories": sorted(p.data_categories),
        "consent_required": p.consent_required, "grounds": sorted(p.grounds),
        "subject_may_be_withheld": p.subject_may_be_withheld, "approval": p.approval,
        "legal_basis": {"article6": p.legal_basis.article6, "article9": p.legal_basis.article9,
                        "dpa_schedule1": p.legal_basis.dpa_schedule1,
                        "dpa_part3": p.legal_basis.dpa_part3},
    }


def protocol_to_dict(p: Protocol) -> Json:
    return {
        "id": p.id, "version": p.version, "title": p.title, "status": p.status.value,
        "effective_from": format_time(p.effective_from), "ends_at": _t(p.ends_at),
        "review_by": _t(p.review_by), "approved_by": p.approved_by,
        "signatories": sorted(p.signatories),
        "grounds": [{"id": g.id, "title": g.title} for g in p.grounds],
        "categories": [{"id": c.id, "title": c.title, "special": c.special}
                       for c in p.categories],
        "purposes": [purpose_to_dict(x) for x in p.purposes],
        "security": p.security, "retention": p.retention,
    }


def organisation_to_dict(o: Organisation) -> Json:
    return {"id": o.id, "name": o.name, "sector": o.sector,
            "units": [{"id": u.id, "name": u.name, "roles": sorted(u.roles)} for u in o.units]}


def key_to_dict(k: KeyRecord) -> Json:
    return {
        "key_id": k.key_id, "holder": k.holder, "owner": k.owner, "use": k.use,
        "public": b64encode(k.public), "valid_from": format_time(k.valid_from),
        "valid_until": _t(k.valid_until), "revoked_at": _t(k.revoked_at),
        "revocation_reason": k.revocation_reason, "manager": k.manager,
    }


def directory_to_dict(d: Directory) -> Json:
    return {
        "version": d.version,
        "issued_at": format_time(d.issued_at),
        "organisations": [organisation_to_dict(o) for o in d.organisations],
        "protocols": [protocol_to_dict(p) for p in d.protocols],
        "keys": [key_to_dict(k) for k in d.keys],
        "managers": [{"id": m.id, "org": m.org, "title": m.title} for m in d.managers],
    }


def purpose_from_dict(x: Json) -> Purpose:
    lb = x["legal_basis"]
    return Purpose(
        id=PurposeId(x["id"]), title=x["title"], description=x["description"],
        opens=frozenset(x["opens"]), sender_roles=frozenset(Role(r) for r in x["sender_roles"]),
        recipient_roles=frozenset(Role(r) for r in x["recipient_roles"]),
        data_categories=frozenset(CategoryId(c) for c in x["data_categories"]),
        consent_required=bool(x["consent_required"]),
        grounds=frozenset(GroundId(g) for g in x["grounds"]),
        subject_may_be_withheld=bool(x["subject_may_be_withheld"]), approval=x["approval"],
        legal_basis=LegalBasis(article6=lb["article6"], article9=lb.get("article9"),
                               dpa_schedule1=lb.get("dpa_schedule1"),
                               dpa_part3=lb.get("dpa_part3")),
    )


def protocol_from_dict(x: Json) -> Protocol:
    return Protocol(
        id=ProtocolId(x["id"]), version=int(x["version"]), title=x["title"],
        status=ProtocolStatus(x["status"]), effective_from=parse_time(x["effective_from"]),
        ends_at=_pt(x["ends_at"]), review_by=_pt(x["review_by"]), approved_by=x["approved_by"],
        signatories=frozenset(OrgId(s) for s in x["signatories"]),
        grounds=tuple(Ground(id=GroundId(g["id"]), title=g["title"]) for g in x["grounds"]),
        categories=tuple(Category(id=CategoryId(c["id"]), title=c["title"],
                                  special=bool(c["special"])) for c in x["categories"]),
        purposes=tuple(purpose_from_dict(p) for p in x["purposes"]),
        security=x.get("security", ""), retention=x.get("retention", ""),
    )


def organisation_from_dict(x: Json) -> Organisation:
    org = OrgId(x["id"])
    return Organisation(
        id=org, name=x["name"], sector=x["sector"],
        units=tuple(Unit(org=org, id=UnitId(u["id"]), name=u["name"],
                         roles=frozenset(Role(r) for r in u["roles"])) for u in x["units"]),
    )


def key_from_dict(x: Json) -> KeyRecord:
    public = b64decode(x["public"])
    if key_id(public) != x["key_id"]:
        raise DirectoryError(f"key {x['key_id']}: the id does not match the public key")
    return KeyRecord(
        key_id=key_id(public), holder=x["holder"], owner=x["owner"], use=x["use"],
        public=public, valid_from=parse_time(x["valid_from"]),
        valid_until=_pt(x["valid_until"]), revoked_at=_pt(x["revoked_at"]),
        revocation_reason=x.get("revocation_reason"), manager=x.get("manager"),
    )


def directory_from_dict(x: Json) -> Directory:
    """Build a directory from its JSON form.

    Raises:
        DirectoryError: a field is missing or of the wrong form.
    """
    try:
        return Directory(
            version=int(x["version"]), issued_at=parse_time(x["issued_at"]),
            organisations=tuple(organisation_from_dict(o) for o in x["organisations"]),
            protocols=tuple(protocol_from_dict(p) for p in x["protocols"]),
            keys=tuple(key_from_dict(k) for k in x["keys"]),
            managers=tuple(Manager(id=m["id"], org=OrgId(m["org"]), title=m["title"])
                           for m in x.get("managers", [])),
        )
    except DirectoryError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, KeyFormatError) as e:
        raise DirectoryError(f"malformed directory: {e!r}") from e


def directory_bytes(d: Directory) -> bytes:
    """The canonical bytes of a directory: sorted keys, compact, UTF-8."""
    return json.dumps(directory_to_dict(d), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def sign_directory(d: Directory, registry_key: SigningKeyPair) -> bytes:
    """The signed directory document, as bytes ready to serve."""
    body = directory_bytes(d)
    doc = {
        "version": 1,
        "directory": b64encode(body),
        "signature": {"key": registry_key.key_id,
                      "sig": b64encode(registry_key.sign(DIRECTORY_CONTEXT + body))},
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def verify_directory(document: bytes, pinned_public_key: bytes) -> Directory:
    """Verify a signed directory against the pinned registry key and parse it.

    Raises:
        DirectoryError: malformed, signed by another key, or the signature fails.
    """
    try:
        # Strict: a hostile document (nested too deeply, say) is malformed, not a crash.
        doc = strict_json.loads(document)
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise DirectoryError("not a version 1 signed directory")
        body = b64decode(doc["directory"])
        sig = doc["signature"]
        if sig["key"] != key_id(pinned_public_key):
            raise DirectoryError("the directory is signed by a key that is not pinned")
        ok = verify_signature(pinned_public_key, DIRECTORY_CONTEXT + body, b64decode(sig["sig"]))
    except DirectoryError:
        raise
    except (ValueError, KeyError, TypeError, KeyFormatError) as e:
        raise DirectoryError("malformed signed directory") from e
    if not ok:
        raise DirectoryError("the directory signature does not verify")
    try:
        content = strict_json.loads(body)
    except ValueError as e:
        raise DirectoryError("the signed directory body is not JSON") from e
    if not isinstance(content, dict):
        raise DirectoryError("the signed directory body is not an object")
    return directory_from_dict(cast(Json, content))
