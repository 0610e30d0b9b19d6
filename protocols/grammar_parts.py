"""The pieces both fast-path grammars are made of: the log's lines
(:mod:`protocols.log_grammar`) and the envelope's header
(:mod:`protocols.header_grammar`).

Pure. A name of wire spec section 1 is matched in a pattern by its
characters and length, which a character class does many times faster than
the name's own pattern; where its hyphens stand is checked on the captured
text (:func:`names_ok`). Names and times are few in a log (a few dozen
names, one time a second), so what was found good is remembered, in caches
with a bound so that distinct values cannot grow them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final, TypeVar

__all__ = ["CACHE_MAX", "NAME", "UUID4", "bounded_put", "names_ok", "one_of", "utc_time"]

NAME: Final = r"[a-z0-9-]{1,40}"
UUID4: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
_NAME_FORM: Final = re.compile(r"[a-z0-9](?:-?[a-z0-9])*")

#: Entries each cache holds at most; a full cache is emptied and starts again.
CACHE_MAX: Final = 4096
_NAMES: set[str] = set()
_TIMES: dict[str, datetime] = {}

V = TypeVar("V")


def one_of(values: Iterable[str]) -> str:
    """A pattern of exactly one of ``values`` (the longest tried first)."""
    return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))


def bounded_put(cache: dict[str, V], key: str, value: V) -> V:
    """``cache[key] = value``, emptying ``cache`` first when it is full; returns ``value``."""
    if len(cache) >= CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


def names_ok(*values: str | None) -> bool:
    """Each value (a name, or an address of two names) that is not None has its hyphens
    between characters; its characters and length are the pattern's to check."""
    for value in values:
        if value is None or value in _NAMES:
            continue
        if not all(_NAME_FORM.fullmatch(part) for part in value.split("/")):
            return False
        if len(_NAMES) >= CACHE_MAX:
            _NAMES.clear()
        _NAMES.add(value)
    return True


def utc_time(text: str) -> datetime | None:
    """The time of ``YYYY-MM-DDTHH:MM:SSZ`` (its digits matched already) when it is a
    date of the calendar, else None."""
    if (t := _TIMES.get(text)) is not None:
        return t
    try:
        t = datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                     int(text[14:16]), int(text[17:19]), tzinfo=UTC)
    except ValueError:
        return None
    return bounded_put(_TIMES, text, t)
