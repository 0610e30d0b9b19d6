"""What the auditors' browser tests get: a served log of a real exchange, and its files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from auditing_world import Exchanged, RegistrySite
from router_world import World


@dataclass
class Audited:
    #: The log server's address (``infoshare log serve``, over HTTP).
    url: str
    registry: RegistrySite
    world: World
    ids: Exchanged
    #: Where the auditor's files are: auditor.token, agency.token, log-key.txt,
    #: registry-key.pub.
    home: Path
