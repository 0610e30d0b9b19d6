"""Signed registry directories, as the audit reads them: verified once each, by version.

Where they come from is the caller's: an export's ``registry/`` files, the log
server's cache, or the registry itself. Each is verified against the pinned
registry key before it is used; one that is missing or does not verify is a
sentence saying why, never a silent pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from protocols.directory import verify_directory
from protocols.errors import DirectoryError
from protocols.model import Directory

#: ``load(version)``: the signed directory document as served, or None if there is none.
LoadDocument = Callable[[int], bytes | None]


class Directories:
    """Directory versions from ``load``, each verified against ``key`` once."""

    def __init__(self, load: LoadDocument, key: bytes, *, where: str = "registry/") -> None:
        self._load = load
        self._key = key
        self._where = where
        self._cache: dict[int, Directory | str] = {}

    def get(self, version: int) -> Directory | str:
        """The directory of ``version``, or a sentence saying why it cannot be had."""
        if version not in self._cache:
            self._cache[version] = self._read(version)
        return self._cache[version]

    def _read(self, version: int) -> Directory | str:
        name = f"{self._where}directory-{version}.json"
        document = self._load(version)
        if document is None:
            return f"{name} is missing from the export"
        try:
            d = verify_directory(document, self._key)
        except DirectoryError as e:
            return f"{name}: {e}"
        if d.version != version:
            return f"{name} holds version {d.version}"
        return d


@dataclass
class Known:
    """What the registry directories name, to warn of a filter that matches nothing known."""

    organisations: set[str] = field(default_factory=set)
    units: set[str] = field(default_factory=set)
    purposes: set[str] = field(default_factory=set)

    def add(self, d: Directory) -> None:
        for org in d.organisations:
            self.organisations.add(org.id)
            self.units.update(u.address for u in org.units)
        for p in d.protocols:
            self.purposes.update(purpose.id for purpose in p.purposes)

    def warnings(self, *, organisation: str | None = None, unit: str | None = None,
                 purpose: str | None = None) -> list[str]:
        """A sentence for each filter given that names nothing the directories know."""
        out: list[str] = []
        if not (self.organisations or self.units or self.purposes):
            return out
        if organisation is not None and organisation not in self.organisations:
            out.append(f"no organisation {organisation!r} is in the registry: check the "
                       "spelling (an organisation id, such as leeds-cc)")
        if unit is not None and unit not in self.units:
            out.append(f"no unit {unit!r} is in the registry: a unit is org/unit, such as "
                       "wy-police/intelligence-bureau")
        if purpose is not None and purpose not in self.purposes:
            out.append(f"no purpose {purpose!r} is in the registry: check the spelling "
                       f"(purposes: {', '.join(sorted(self.purposes))})")
        return out
