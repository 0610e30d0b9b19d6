"""Pure changes to a directory: each takes the latest directory and returns the next.

No I/O and no clock (``now`` is passed in). The store numbers, signs and
records what these return. Every function raises :class:`~registry.errors.Invalid`,
:class:`~registry.errors.NotFound` or :class:`~registry.errors.Conflict` and
never returns a half-changed directory. The ``detail`` each returns is what the
history shows: ids and codes only.

Invariants kept for every directory built here: organisations, units,
protocols and managers are sorted by id (so one registry state has one byte
form); keys keep the order in which they were registered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from keys import PublicKeyFile
from protocols.directory import format_time
from protocols.loader import NAME_MAX, NAME_PATTERN, ProtocolFile
from protocols.model import (
    Directory,
    KeyHolder,
    KeyRecord,
    Manager,
    Organisation,
    OrgId,
    Protocol,
    ProtocolStatus,
    Role,
    Unit,
    UnitId,
)
from protocols.text import TEXT_PATTERN, is_text, refused_characters
from registry.errors import Conflict, Invalid, LastBrokerKey, NotFound

Detail = dict[str, Any]
Change = tuple[Directory, Detail]

#: Free text kept in the directory (unit names, titles, reasons) is short by rule.
TEXT_MAX = 200
KEY_HOLDERS = ("unit", "manager", "broker")
KEY_USES = ("signing", "encryption")

_NAME = re.compile(NAME_PATTERN)


def is_name(value: object) -> bool:
    """True for a wire spec section 1 name (ids, roles)."""
    return isinstance(value, str) and len(value) <= NAME_MAX and bool(_NAME.fullmatch(value))


def check_name(field: str, value: object) -> None:
    if not is_name(value):
        raise Invalid(f"{field} is not a valid name", {field: [
            "lowercase letters and digits with single hyphens between them, "
            f"at most {NAME_MAX} characters"]})


#: Free text kept in the directory: see :mod:`protocols.text` for what it may hold.
TEXT_RE = TEXT_PATTERN


def check_text(field: str, value: object, max_len: int = TEXT_MAX) -> None:
    if not isinstance(value, str) or len(value) > max_len or not is_text(value):
        refused = refused_characters(value) if isinstance(value, str) else []
        why = (f"holds control or invisible formatting characters ({', '.join(refused[:5])}); "
               "retype it without them" if refused else
               f"between 1 and {max_len} characters, not only spaces")
        raise Invalid(f"{field} is not valid text", {field: [why]})


def check_roles(field: str, roles: Iterable[str]) -> frozenset[Role]:
    listed = list(roles)
    if not listed:
        raise Invalid(f"{field} is empty", {field: ["at least one role"]})
    for i, r in enumerate(listed):
        check_name(f"{field}.{i}", r)
    if len(set(listed)) != len(listed):
        raise Invalid(f"{field} names a role twice", {field: ["each role once"]})
    return frozenset(Role(r) for r in listed)


def _sorted_orgs(orgs: Iterable[Organisation]) -> tuple[Organisation, ...]:
    return tuple(sorted(orgs, key=lambda o: o.id))


def _sorted_units(units: Iterable[Unit]) -> tuple[Unit, ...]:
    return tuple(sorted(units, key=lambda u: u.id))


def _organisation(d: Directory, org: str) -> Organisation:
    found = d.organisation(org)
    if found is None:
        raise NotFound(f"organisation {org} is not registered")
    return found


def _with_org(d: Directory, org: Organisation) -> Directory:
    others = [o for o in d.organisations if o.id != org.id]
    return replace(d, organisations=_sorted_orgs([*others, org]))


def _merge_organisation(current: Organisation | None, loaded: Organisation) -> Organisation:
    """A party from a protocol file: its name, sector and units win; other units stay."""
    if current is None:
        return replace(loaded, units=_sorted_units(loaded.units))
    loaded_ids = {u.id for u in loaded.units}
    kept = [u for u in current.units if u.id not in loaded_ids]
    return replace(current, name=loaded.name, sector=loaded.sector,
                   units=_sorted_units([*kept, *loaded.units]))


def load_protocol(d: Directory, loaded: ProtocolFile) -> Change:
    """Add a protocol, or a new version of one; add or update its parties.

    Raises:
        Conflict: the protocol is registered at this version or a later one.
    """
    p = loaded.protocol
    existing = d.protocol(p.id)
    if existing is not None and p.version <= existing.version:
        raise Conflict(f"protocol {p.id} is at version {existing.version}; "
                       f"a new file must have a higher version than that")
    orgs = {o.id: o for o in d.organisations}
    for o in loaded.organisations:
        orgs[o.id] = _merge_organisation(orgs.get(o.id), o)
    protocols = [x for x in d.protocols if x.id != p.id]
    new = replace(d, organisations=_sorted_orgs(orgs.values()),
                  protocols=tuple(sorted([*protocols, p], key=lambda x: x.id)))
    return new, {"protocol": p.id, "protocol_version": p.version,
                 "previous_version": None if existing is None else existing.version,
                 "organisations": sorted(o.id for o in loaded.organisations)}


def set_protocol_status(d: Directory, protocol_id: str, status: str, *,
                        effective_from: datetime | None, ends_at: datetime | None) -> Change:
    """Change a protocol's status and, if given, its in-force dates.

    Raises:
        NotFound: no such protocol. Invalid: unknown status or ends before it starts.
    """
    try:
        new_status = ProtocolStatus(status)
    except ValueError as e:
        raise Invalid("unknown status", {"status": [
            "one of " + ", ".join(s.value for s in ProtocolStatus)]}) from e
    p = d.protocol(protocol_id)
    if p is None:
        raise NotFound(f"protocol {protocol_id} is not registered")
    changed: Protocol = replace(
        p, status=new_status,
        effective_from=p.effective_from if effective_from is None else effective_from,
        ends_at=p.ends_at if ends_at is None else ends_at)
    if changed.ends_at is not None and changed.ends_at <= changed.effective_from:
        raise Invalid("the protocol would end before it starts",
                      {"ends_at": ["must be later than effective_from"]})
    protocols = tuple(changed if x.id == p.id else x for x in d.protocols)
    detail: Detail = {"protocol": p.id, "protocol_version": p.version,
                      "status": new_status.value, "previous_status": p.status.value}
    if effective_from is not None:
        detail["effective_from"] = format_time(effective_from)
    if ends_at is not None:
        detail["ends_at"] = format_time(ends_at)
    return replace(d, protocols=protocols), detail


def add_unit(d: Directory, org: str, unit: str, name: str, roles: Iterable[str]) -> Change:
    """Add a unit to a registered organisation.

    Raises:
        Invalid: bad id, name or roles. NotFound: no such organisation.
        Conflict: the unit exists already.
    """
    check_name("id", unit)
    check_text("name", name)
    role_set = check_roles("roles", roles)
    o = _organisation(d, org)
    if any(u.id == unit for u in o.units):
        raise Conflict(f"unit {org}/{unit} exists already")
    new_unit = Unit(org=OrgId(o.id), id=UnitId(unit), name=name, roles=role_set)
    changed = replace(o, units=_sorted_units([*o.units, new_unit]))
    return _with_org(d, changed), {"unit": new_unit.address, "roles": sorted(role_set)}


def _unit(d: Directory, org: str, unit: str) -> tuple[Organisation, Unit]:
    o = _organisation(d, org)
    found = next((u for u in o.units if u.id == unit), None)
    if found is None:
        raise NotFound(f"unit {org}/{unit} is not registered")
    return o, found


def set_unit_roles(d: Directory, org: str, unit: str, roles: Iterable[str]) -> Change:
    """Replace a unit's roles.

    Raises:
        Invalid: bad roles. NotFound: no such unit.
    """
    role_set = check_roles("roles", roles)
    o, u = _unit(d, org, unit)
    changed = replace(u, roles=role_set)
    units = _sorted_units([changed if x.id == u.id else x for x in o.units])
    return _with_org(d, replace(o, units=units)), {
        "unit": u.address, "roles": sorted(role_set), "previous_roles": sorted(u.roles)}


def remove_unit(d: Directory, org: str, unit: str, now: datetime) -> Change:
    """Remove a unit that holds no key still valid at ``now``.

    A unit with live keys is refused rather than silently orphaning them: the
    administrator revokes them first, and the history says why.

    Raises:
        NotFound: no such unit. Conflict: the unit still has valid keys.
    """
    o, u = _unit(d, org, unit)
    live = sorted(k.key_id for k in d.keys
                  if k.holder == "unit" and k.owner == u.address and k.valid_at(now))
    if live:
        raise Conflict(f"unit {u.address} still has valid keys ({', '.join(live)}); "
                       "revoke them first")
    units = tuple(x for x in o.units if x.id != u.id)
    return _with_org(d, replace(o, units=units)), {"unit": u.address}


@dataclass(frozen=True)
class KeyOwner:
    """Whom keys are being registered for: what every offered key file must name."""

    holder: KeyHolder
    owner: str
    manager: str | None = None

    def describe(self) -> str:
        return {"unit": f"unit {self.owner}", "manager": f"manager {self.manager} of {self.owner}",
                "broker": "the broker"}[self.holder]

    def generate_command(self) -> str:
        if self.holder == "unit":
            return f"infoshare keys generate --unit {self.owner}"
        if self.holder == "manager":
            return f"infoshare keys generate --manager {self.manager} --org {self.owner}"
        return "infoshare keys generate --broker"


def _refuse(code: str, message: str, field: str, why: str) -> Invalid:
    return Invalid(message, {field: [why]}, code=code)


def _check_key_file(d: Directory, expected: KeyOwner, slot: str, f: PublicKeyFile,
                    offered: Mapping[str, PublicKeyFile]) -> None:
    """Refuse a key file for someone else, for another use, or without a valid proof."""
    if (f.holder, f.owner, f.manager) != (expected.holder, expected.owner, expected.manager):
        raise _refuse("wrong_owner", f"this file holds {f.describe()}, not a key of "
                      f"{expected.describe()}", slot,
                      f"choose the key files of {expected.describe()}, made with "
                      f"{expected.generate_command()}")
    if f.use != slot:
        raise _refuse("wrong_use", f"this file holds {f.describe()}, offered as the {slot} key",
                      slot, f"give the file of the {slot} key here (its name ends in "
                      f".{slot}.pub)")
    if f.use == "signing":
        if not (f.self_signed and f.proof_verifies(f.public)):
            raise _refuse("bad_proof", f"the proof in the file of {f.describe()} does not "
                          "verify", slot, "use the .pub file exactly as infoshare keys "
                          "generate wrote it, or generate the keys again")
        return
    signer = offered.get("signing")
    if signer is not None and signer.key_id == f.proof_key:
        vouching = signer.public
    else:
        known = d.key(f.proof_key)
        if known is None or (known.holder, known.owner, known.use) != (
                expected.holder, expected.owner, "signing") or known.revoked_at is not None:
            raise _refuse("proof_key_not_registered", f"the encryption key is vouched for by "
                          f"signing key {f.proof_key}, which is not a registered key of "
                          f"{expected.describe()}", slot, "register it together with the "
                          "signing key of the same pair of files")
        vouching = known.public
    if not f.proof_verifies(vouching):
        raise _refuse("bad_proof", f"the proof in the file of {f.describe()} does not verify",
                      slot, "use the .pub files exactly as infoshare keys generate wrote them")


def _check_owner_registered(d: Directory, expected: KeyOwner) -> None:
    if expected.holder == "unit":
        if d.unit(expected.owner) is None:
            raise NotFound(f"unit {expected.owner} is not registered")
    elif expected.holder == "manager":
        _organisation(d, expected.owner)
        m = next((x for x in d.managers if x.id == expected.manager), None)
        if m is None or m.org != expected.owner:
            raise NotFound(f"manager {expected.manager} is not registered for "
                           f"{expected.owner}")


def register_keys(d: Directory, expected: KeyOwner, offered: Mapping[str, PublicKeyFile],
                  valid_from: datetime, valid_until: datetime | None) -> Change:
    """Register public keys from their key files, keyed by the use they are offered for.

    A unit registers its signing key, its encryption key or both; a manager and
    the broker a signing key. Each file must name ``expected`` and the use it is
    offered for, and carry a proof that verifies (an encryption key's by the
    unit's signing key, offered with it or registered already).

    Raises:
        Invalid: no key, a file for someone else (``wrong_owner``), for another
            use (``wrong_use``), or whose proof fails (``bad_proof``,
            ``proof_key_not_registered``); validity that ends before it starts.
        NotFound: the unit or manager is not registered. Conflict: a key is registered already.
    """
    allowed = KEY_USES if expected.holder == "unit" else ("signing",)
    unknown = sorted(set(offered) - set(allowed))
    if unknown:
        raise Invalid(f"{expected.describe()} holds no {unknown[0]} key",
                      {unknown[0]: [f"{expected.describe()} registers "
                                    + " and ".join(allowed) + " keys only"]})
    if not offered:
        raise Invalid("no key file was given", {"_body": [
            "give the public key file of at least one key: " + " or ".join(allowed)]})
    if valid_until is not None and valid_until <= valid_from:
        raise Invalid("the keys would expire before they are valid",
                      {"valid_until": ["must be later than valid_from"]})
    _check_owner_registered(d, expected)
    records = []
    for slot in KEY_USES:
        f = offered.get(slot)
        if f is None:
            continue
        _check_key_file(d, expected, slot, f, offered)
        if d.key(f.key_id) is not None:
            raise Conflict(f"key {f.key_id} is registered already")
        records.append(KeyRecord(key_id=f.key_id, holder=expected.holder, owner=expected.owner,
                                 use=f.use, public=f.public, valid_from=valid_from,
                                 valid_until=valid_until, manager=expected.manager))
    if len({r.key_id for r in records}) != len(records):
        raise Invalid("the same key was offered twice", {"encryption": ["another key"]})
    detail: Detail = {"holder": expected.holder, "owner": expected.owner,
                      "keys": [{"key_id": r.key_id, "use": r.use} for r in records],
                      "valid_from": format_time(valid_from)}
    if valid_until is not None:
        detail["valid_until"] = format_time(valid_until)
    if expected.manager is not None:
        detail["manager"] = expected.manager
    return replace(d, keys=(*d.keys, *records)), detail


def revoke_key(d: Directory, key_id: str, reason: str, at: datetime, *, now: datetime,
               last_broker_key: bool = False) -> Change:
    """Revoke a key from ``at`` on (which may be in the past, for a compromise).

    Revoking the broker's last key valid at ``now`` leaves the broker unable to
    sign notices and checkpoints; that needs ``last_broker_key``.

    Raises:
        Invalid: empty or long reason. NotFound: no such key.
        Conflict: revoked already. LastBrokerKey: the last valid broker key.
    """
    check_text("reason", reason)
    k = d.key(key_id)
    if k is None:
        raise NotFound(f"key {key_id} is not registered")
    if k.revoked_at is not None:
        raise Conflict(f"key {key_id} was revoked already at {format_time(k.revoked_at)}")
    others = [x for x in d.keys if x.holder == "broker" and x.key_id != k.key_id
              and x.valid_at(now)]
    if k.holder == "broker" and k.valid_at(now) and not others and not last_broker_key:
        raise LastBrokerKey(f"key {key_id} is the broker's last valid key: without it no "
                            "notice or checkpoint can be signed; register the broker's new "
                            "key first, or confirm that the broker is to stop")
    revoked = replace(k, revoked_at=at, revocation_reason=reason)
    keys = tuple(revoked if x.key_id == k.key_id else x for x in d.keys)
    return replace(d, keys=keys), {"key_id": k.key_id, "holder": k.holder, "owner": k.owner,
                                   "use": k.use, "at": format_time(at), "reason": reason}


def register_manager(d: Directory, manager_id: str, org: str, title: str) -> Change:
    """Register a manager (known by a code, not a name) who may countersign for ``org``.

    Raises:
        Invalid: bad id or title. NotFound: no such organisation. Conflict: id taken.
    """
    check_name("id", manager_id)
    check_text("title", title)
    _organisation(d, org)
    if any(m.id == manager_id for m in d.managers):
        raise Conflict(f"manager {manager_id} is registered already")
    m = Manager(id=manager_id, org=OrgId(org), title=title)
    managers = tuple(sorted([*d.managers, m], key=lambda x: x.id))
    return replace(d, managers=managers), {"manager": m.id, "org": m.org}
