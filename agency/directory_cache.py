"""The signed directory an agency decides with, kept between sends.

Fetching and verifying the directory on every send costs an HTTP exchange, a
signature check over the whole document and its parsing: more than building
and signing the envelope. So the last verified directory is kept and asked
for again once it is ``max_age`` seconds old; a registry client that revalidates
(:meth:`registry.client.RegistryClient.directory`) makes that a short answer
when the version has not changed.

Invariants:

- Only what ``fetch`` returned is ever handed out: trust (the pinned registry
  key, never a lower version than one seen) stays with ``fetch``.
- ``get(fresh=True)`` asks again whatever the age: callers do so before
  acting on an answer that a newer directory could change (a local refusal,
  a key not found), so a kept directory never refuses what the current one
  permits.
- With ``stale_after``, a directory younger than that is still used while
  ``fetch`` fails (the registry is down); without it, the failure is raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from protocols.model import Directory

__all__ = ["DirectoryCache"]

log = logging.getLogger("infoshare.client")


class DirectoryCache:
    """The last verified directory; thread-safe."""

    def __init__(self, fetch: Callable[[], Directory], *, max_age: float = 5.0,
                 stale_after: float | None = None) -> None:
        self._fetch = fetch
        self._max_age = max_age
        self._stale_after = stale_after
        self._current: Directory | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    @property
    def current(self) -> Directory | None:
        """The directory kept, without asking (None before the first)."""
        return self._current

    def get(self, fresh: bool = False) -> Directory:
        """The kept directory, or a new one if it is older than ``max_age`` or ``fresh``.

        Raises:
            Whatever ``fetch`` raises, unless a kept directory is younger than ``stale_after``.
        """
        with self._lock:
            age = time.monotonic() - self._at
            if self._current is not None and age < self._max_age and not fresh:
                return self._current
            try:
                new = self._fetch()
            except Exception as e:  # any failure of fetch is "cannot be had"
                if (self._current is not None and self._stale_after is not None
                        and age < self._stale_after):
                    log.warning("registry unreachable (%s); using directory version %d",
                                type(e).__name__, self._current.version)
                    return self._current
                raise
            if self._current is None or new.version >= self._current.version:
                self._current = new
            self._at = time.monotonic()
            return self._current
