"""Group commit: writes from many threads committed together, each caller answered only
once its write is durable.

A gateway's submissions arrive on many request threads at once, and each must
be committed (with ``synchronous=FULL`` on SQLite, an fsync) before it is
answered. Committed one by one they queue behind a single writer; committed
together they share one commit. There is no background thread: the first
caller to find no commit in progress leads, running every write waiting at
that moment (its own among them) in one transaction; the others wait for the
outcome of theirs and lead the next batch if theirs was not in it.

Invariants:

- A write's result is returned, or its exception raised, only after the
  transaction that held it committed (or failed).
- One failing write never takes another down: if the batch's transaction
  fails, every write of it is run again alone, in its own transaction, and
  gets its own outcome. A write must therefore be safe to run twice when the
  first run was rolled back, which any write in a transaction is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
C = TypeVar("C")

#: The most writes one transaction takes; more wait for the next.
MAX_BATCH = 256


class _Write(Generic[T, C]):
    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[C], T]) -> None:
        self.fn = fn
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[C]):
    """Runs writes in shared transactions opened by ``begin`` (a context manager that
    commits on a clean exit and rolls back on an exception)."""

    def __init__(self, begin: Callable[[], AbstractContextManager[C]]) -> None:
        self._begin = begin
        self._cond = threading.Condition()
        self._pending: list[_Write[Any, C]] = []
        self._busy = False

    def run(self, fn: Callable[[C], T]) -> T:
        """Run ``fn(connection)`` in a transaction shared with other callers; its result
        once committed.

        Raises:
            Whatever ``fn`` raised, or what the commit raised.
        """
        write: _Write[T, C] = _Write(fn)
        with self._cond:
            self._pending.append(write)
            while not write.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                batch, self._pending = (self._pending[:MAX_BATCH],
                                        self._pending[MAX_BATCH:])
                self._cond.release()
                try:
                    self._commit(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[return-value]  # set when error is None

    def _commit(self, batch: list[_Write[Any, C]]) -> None:
        try:
            with self._begin() as conn:
                results = [w.fn(conn) for w in batch]
        except BaseException as e:  # handed to the callers whose writes these were
            if len(batch) == 1:
                batch[0].error, batch[0].done = e, True
            else:
                for w in batch:
                    self._alone(w)
            return
        for w, result in zip(batch, results, strict=True):
            w.result, w.done = result, True

    def _alone(self, w: _Write[Any, C]) -> None:
        try:
            with self._begin() as conn:
                w.result = w.fn(conn)
        except BaseException as e:  # handed to the caller that owns the write
            w.error = e
        w.done = True
