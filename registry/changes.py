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
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from protocols.directory import format_time
from protocols.loader import NAME_MAX, NAME_PATTERN, ProtocolFile
from protocols.model import (
    Directory,
    KeyRecord,
    Manager,
    Organisation,
    OrgId,
    Protocol,
    ProtocolStatus,
    Role,
    Unit,
    UnitId,
    split_address,
)
from protocols.text import TEXT_PATTERN, is_text, refused_characters
from registry.errors import Conflict, Invalid, NotFound

Detail = dict[str, Any]
Change = tuple[Directory, Detail]

#: Free text kept in the directory (unit names, titles, reasons) is short by rule.
TEXT_MAX = 200
KEY_HOLDERS = ("unit", "manager", "broker")
KEY_USES = ("signing", "encryption")
BROKER_OWNER = "broker"

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


def register_key(d: Directory, key: KeyRecord) -> Change:
    """Register a public key for a unit, a manager or the broker.

    Raises:
        Invalid: the holder, use, owner form or validity is wrong.
        NotFound: the owning unit, organisation or manager is not registered.
        Conflict: a key with this id is registered already.
    """
    if key.holder not in KEY_HOLDERS:
        raise Invalid("unknown holder", {"holder": ["one of " + ", ".join(KEY_HOLDERS)]})
    if key.use not in KEY_USES:
        raise Invalid("unknown use", {"use": ["one of " + ", ".join(KEY_USES)]})
    if key.valid_until is not None and key.valid_until <= key.valid_from:
        raise Invalid("the key would expire before it is valid",
                      {"valid_until": ["must be later than valid_from"]})
    if key.holder == "unit":
        org, unit = split_address(key.owner)
        if not (is_name(org) and is_name(unit)):
            raise Invalid("owner is not a unit address", {"owner": ["org/unit"]})
        if key.manager is not None:
            raise Invalid("a unit key names no manager", {"manager": ["only for manager keys"]})
        if d.unit(key.owner) is None:
            raise NotFound(f"unit {key.owner} is not registered")
    elif key.holder == "manager":
        check_name("owner", key.owner)
        if key.use != "signing":
            raise Invalid("a manager holds a signing key only", {"use": ["must be signing"]})
        if key.manager is None:
            raise Invalid("a manager key names its manager", {"manager": ["required"]})
        _organisation(d, key.owner)
        m = next((x for x in d.managers if x.id == key.manager), None)
        if m is None or m.org != key.owner:
            raise NotFound(f"manager {key.manager} is not registered for {key.owner}")
    else:
        if key.owner != BROKER_OWNER:
            raise Invalid("a broker key is owned by the broker", {"owner": ["must be broker"]})
        if key.manager is not None:
            raise Invalid("a broker key names no manager", {"manager": ["only for manager keys"]})
    if d.key(key.key_id) is not None:
        raise Conflict(f"key {key.key_id} is registered already")
    detail: Detail = {"key_id": key.key_id, "holder": key.holder, "owner": key.owner,
                      "use": key.use, "valid_from": format_time(key.valid_from)}
    if key.valid_until is not None:
        detail["valid_until"] = format_time(key.valid_until)
    if key.manager is not None:
        detail["manager"] = key.manager
    return replace(d, keys=(*d.keys, key)), detail


def revoke_key(d: Directory, key_id: str, reason: str, at: datetime) -> Change:
    """Revoke a key from ``at`` on (which may be in the past, for a compromise).

    Raises:
        Invalid: empty or long reason. NotFound: no such key. Conflict: revoked already.
    """
    check_text("reason", reason)
    k = d.key(key_id)
    if k is None:
        raise NotFound(f"key {key_id} is not registered")
    if k.revoked_at is not None:
        raise Conflict(f"key {key_id} was revoked already at {format_time(k.revoked_at)}")
    revoked = replace(k, revoked_at=at, revocation_reason=reason)
    keys = tuple(revoked if x.key_id == k.key_id else x for x in d.keys)
    return replace(d, keys=keys), {"key_id": k.key_id, "owner": k.owner,
                                   "at": format_time(at), "reason": reason}


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
