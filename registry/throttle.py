"""Slowing down repeated failed authentication from one client address.

After ``limit`` failures within ``window`` seconds an address is refused
(HTTP 429 with Retry-After) until its oldest failure leaves the window. The
worker never sleeps: a refused request is answered at once. State is per
process (each gunicorn worker counts on its own), bounded in size, and the
clock is injected so tests need no waiting.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

#: Addresses remembered at most; the least recently failing are forgotten first.
MAX_ADDRESSES = 10_000


class FailureThrottle:
    def __init__(self, *, limit: int = 5, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _prune(self, address: str, now: float) -> deque[float] | None:
        q = self._failures.get(address)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[address]
            return None
        return q

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or None if it may try now."""
        with self._lock:
            now = self._clock()
            q = self._prune(address, now)
            if q is None or len(q) < self.limit:
                return None
            # The address may try again when enough failures have aged out.
            oldest_to_expire = q[len(q) - self.limit]
            return max(1, math.ceil(oldest_to_expire + self.window - now))

    def record_failure(self, address: str) -> None:
        with self._lock:
            now = self._clock()
            q = self._prune(address, now)
            if q is None:
                q = self._failures[address] = deque()
            q.append(now)
            # Only the last ``limit`` failures matter for the decision.
            while len(q) > self.limit:
                q.popleft()
            self._failures.move_to_end(address)
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)
