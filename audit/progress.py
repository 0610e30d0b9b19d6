"""Progress bars (tqdm) for long audit commands, on a terminal only.

Piped or redirected, a command prints nothing but its result: no bar, no
progress lines.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm


def on_terminal(stream: TextIO | None = None) -> bool:
    s = stream or sys.stderr
    return bool(getattr(s, "isatty", lambda: False)())


@contextmanager
def byte_bar(label: str, *, enabled: bool = True) -> Iterator[
        Callable[[int, int, int], None] | None]:
    """A bar over a file's bytes with the entries read beside it: a ``Progress`` callback
    for verify, replay and report, or None off a terminal."""
    if not (enabled and on_terminal()):
        yield None
        return
    bar = tqdm(desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
               dynamic_ncols=True, leave=False)

    def update(entries: int, done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
        bar.set_postfix_str(f"{entries:,} entries", refresh=False)

    try:
        yield update
    finally:
        bar.close()


@contextmanager
def count_bar(label: str, unit: str = "entries", *, scale: bool = False,
              enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """A bar over a count (``update(done, total)``; total 0 when unknown), or None off a
    terminal."""
    if not (enabled and on_terminal()):
        yield None
        return
    bar = tqdm(desc=label, unit=unit, unit_scale=scale, file=sys.stderr, dynamic_ncols=True,
               leave=False)

    def update(done: int, total: int) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()
