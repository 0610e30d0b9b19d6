"""The registry's history as an information governance officer reads it.

Every registry version (a change to the directory) and every token granted
or revoked, oldest first, each with who did it (the label of the actor's
token, not a bare id) and the change in words: "Added unit
leeds-cc/early-help with roles early-help". Built from what the store keeps;
nothing here writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from registry.store import HistoryEntry, Store, TokenInfo

__all__ = ["Event", "events", "summary"]

TOKEN_ACTOR = "token:"


@dataclass(frozen=True)
class Event:
    version: int | None
    at: datetime
    actor: str
    actor_label: str | None
    action: str
    summary: str
    detail: dict[str, Any]

    @property
    def who(self) -> str:
        """The actor as a person reads it: the token's label, else the recorded name."""
        return self.actor_label or self.actor


def _list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _protocol(d: Mapping[str, Any]) -> str:
    return f"Loaded protocol {d['protocol']} version {d['protocol_version']}" + (
        f", replacing version {d['previous_version']}" if d.get("previous_version") else "") + (
        f", with parties {_list(list(d['organisations']))}" if d.get("organisations") else "")


def _status(d: Mapping[str, Any]) -> str:
    text = (f"Set protocol {d['protocol']} version {d['protocol_version']} to "
            f"{d['status'].replace('_', ' ')} (was {d['previous_status'].replace('_', ' ')})")
    if "effective_from" in d:
        text += f", in force from {d['effective_from']}"
    if "ends_at" in d:
        text += f", ending {d['ends_at']}"
    return text


def _whose(d: Mapping[str, Any]) -> str:
    holder = d.get("holder", "unit")
    if holder == "manager":
        return f"manager {d.get('manager', '?')} of {d['owner']}"
    if holder == "broker":
        return "the broker"
    return f"unit {d['owner']}"


def _keys(d: Mapping[str, Any]) -> str:
    keys = list(d.get("keys") or [{"key_id": d["key_id"], "use": d["use"]}])
    uses = _list([k["use"] for k in keys])
    ids = ", ".join(k["key_id"] for k in keys)
    text = (f"Registered the {uses} key{'s' if len(keys) > 1 else ''} of {_whose(d)} ({ids}), "
            f"valid from {d['valid_from']}")
    if "valid_until" in d:
        text += f" until {d['valid_until']}"
    return text


def _revoke(d: Mapping[str, Any]) -> str:
    use = f"{d['use']} " if "use" in d else ""
    whose = _whose(d) if "holder" in d else d["owner"]
    return f"Revoked the {use}key {d['key_id']} of {whose} from {d['at']}: {d['reason']}"


def _roles(d: Mapping[str, Any]) -> str:
    return (f"Changed the roles of unit {d['unit']} to {_list(list(d['roles']))} "
            f"(were {_list(list(d['previous_roles']))})")


def _token(verb: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda d: f"{verb} {d['role']} token {d['token']} labelled \"{d['label']}\""


_SUMMARIES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "init": lambda d: "Created the registry",
    "load_protocol": _protocol,
    "set_protocol_status": _status,
    "add_unit": lambda d: f"Added unit {d['unit']} with roles {_list(list(d['roles']))}",
    "set_unit_roles": _roles,
    "remove_unit": lambda d: f"Removed unit {d['unit']}",
    "register_keys": _keys,
    "register_key": _keys,
    "revoke_key": _revoke,
    "register_manager": lambda d: f"Registered manager {d['manager']} of {d['org']}",
    "grant_token": _token("Granted an"),
    "revoke_token": _token("Revoked the"),
}


def summary(action: str, detail: Mapping[str, Any]) -> str:
    """One change in words; an unknown or damaged record is named, never a crash."""
    describe = _SUMMARIES.get(action)
    try:
        if describe is not None:
            return describe(detail)
    except (KeyError, TypeError, AttributeError):
        pass
    return f"{action.replace('_', ' ').capitalize()} ({', '.join(sorted(detail))})"


def _token_events(t: TokenInfo) -> list[tuple[datetime, str, str, dict[str, Any]]]:
    detail = {"token": t.id, "role": t.role, "label": t.label}
    out = [(t.created_at, t.created_by, "grant_token", detail)]
    if t.revoked_at is not None and t.revoked_by is not None:
        out.append((t.revoked_at, t.revoked_by, "revoke_token", detail))
    return out


def events(store: Store) -> list[Event]:
    """Every change and token event, oldest first (a change before a token event at one time)."""
    tokens = store.list_tokens()
    labels = {f"{TOKEN_ACTOR}{t.id}": t.label for t in tokens}

    def event(version: int | None, at: datetime, actor: str, action: str,
              detail: dict[str, Any]) -> Event:
        return Event(version, at, actor, labels.get(actor), action, summary(action, detail),
                     detail)

    versions: list[HistoryEntry] = store.history()
    out = [event(h.version, h.created_at, h.actor, h.action, h.detail) for h in versions]
    out += [event(None, at, actor, action, detail)
            for t in tokens for at, actor, action, detail in _token_events(t)]
    return sorted(out, key=lambda e: (e.at, e.version is None, e.version or 0))
