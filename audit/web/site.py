"""What the log server and the auditors' pages serve, whatever the log is.

A :class:`LogSite` holds the index, how tokens are checked, and where the
log and the registry directories come from: a live log (``infoshare log
serve``, handed in by the composition root, directories fetched from the
registry with the reader's own token) or an export (``infoshare audit
serve``, directories from its files).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from audit.directories import Directories, Known
from audit.log_index import LogIndex
from audit.log_sources import ExportLog, ReadableLog
from audit.web.auth import Authenticator, Reader
from protocols.directory import verify_directory
from protocols.errors import DirectoryError
from protocols.model import Directory

#: ``fetch(version, reader)``: a signed directory document from the registry.
FetchDirectory = Callable[[int, Reader], bytes]


@dataclass
class LogSite:
    index: LogIndex
    auth: Authenticator
    #: The live log to follow, or None for an export.
    live: ReadableLog | None = None
    export: ExportLog | None = None
    #: The registry's key, pinned; without it an export's own key is used.
    registry_key: bytes | None = None
    fetch_directory: FetchDirectory | None = None
    #: Seconds between looks at the live log for a newer checkpoint.
    follow_every: float = 1.0
    _last_follow: float = 0.0
    _following: threading.Lock = field(default_factory=threading.Lock)
    _export_directories: Directories | None = None
    #: Directories verified so far, by version: they never change.
    _parsed: dict[int, Directory] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "served log" if self.live is not None else "export"

    def follow(self) -> None:
        """Catch up with the live log, at most every ``follow_every`` seconds; a thread
        that finds another catching up goes on with what is indexed."""
        if self.live is None or time.monotonic() - self._last_follow < self.follow_every:
            return
        if not self._following.acquire(blocking=False):
            return
        try:
            self.index.follow(self.live)
            self._last_follow = time.monotonic()
        finally:
            self._following.release()

    def registry_key_in_use(self) -> bytes | None:
        if self.registry_key is not None:
            return self.registry_key
        return None if self.export is None else self.export.registry_key()

    def directories(self, reader: Reader | None) -> Directories | None:
        """The signed directories, verified against the pinned key; None without a key."""
        key = self.registry_key_in_use()
        if key is None:
            return None
        if self.export is not None:
            if self._export_directories is None:
                self._export_directories = Directories(self.export.directory_document, key)
            return self._export_directories

        def load(version: int) -> bytes | None:
            document = self.index.directory(version)
            if document is not None or self.fetch_directory is None or reader is None:
                return document
            try:
                document = self.fetch_directory(version, reader)
                verify_directory(document, key)
            except (DirectoryError, OSError, ValueError):
                return None
            except Exception:  # the registry client's own errors: unavailable, refused
                return None
            self.index.keep_directory(version, document)
            return document

        return Directories(load, key, where="registry ")

    def directory(self, version: int, reader: Reader | None) -> Directory | None:
        if version in self._parsed:
            return self._parsed[version]
        dirs = self.directories(reader)
        found = None if dirs is None else dirs.get(version)
        if not isinstance(found, Directory):
            return None
        self._parsed[version] = found
        return found

    def known(self, reader: Reader | None) -> Known:
        """What the directories of the versions the log names know of."""
        known = Known()
        for version in self.index.registry_versions():
            d = self.directory(version, reader)
            if d is not None:
                known.add(d)
        return known
