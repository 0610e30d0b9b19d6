"""What the browser tests get: a served registry and its tokens."""

from __future__ import annotations

from dataclasses import dataclass

from registry.store import Store


@dataclass
class Site:
    url: str
    store: Store
    admin: str
    auditor: str
    key_ids: list[str]
