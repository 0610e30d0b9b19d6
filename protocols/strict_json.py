"""Strict JSON, as the wire spec reads it: what every parser of the wire and log formats uses.

Pure. The spec's JSON is UTF-8 with no duplicate keys; Python's ``json``
also takes ``NaN`` and ``Infinity``, keeps the last of two equal keys, guesses
UTF-16 and UTF-32 when given bytes, and raises ``RecursionError`` (not a
``ValueError``) on deeply nested input. :func:`loads` refuses all of these
with one exception type whose message never quotes the input, which may
come from anyone.
"""

from __future__ import annotations

import json
from typing import Any, Final, NoReturn

__all__ = ["StrictJSONError", "loads"]


class StrictJSONError(ValueError):
    """Bytes that are not strict JSON. The message says why, never what was read."""


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey
    return obj


def _no_constants(name: str) -> NoReturn:
    raise ValueError(name)


#: One decoder for every call: building one per call costs more than parsing a log line.
_DECODER: Final = json.JSONDecoder(object_pairs_hook=_no_duplicates,
                                   parse_constant=_no_constants)


def loads(data: bytes, *, ascii_only: bool = False) -> object:
    """Parse ``data`` as one strict JSON value: UTF-8 (or ASCII), no duplicate keys, no
    ``NaN`` or ``Infinity``.

    Raises:
        StrictJSONError: not ASCII or UTF-8, not JSON, a duplicate key, or nested
            too deeply for the parser.
    """
    try:
        # Decoding first: json.loads on bytes would also guess UTF-16 and UTF-32.
        text = bytes(data).decode("ascii" if ascii_only else "utf-8")
    except UnicodeDecodeError:
        raise StrictJSONError("not ASCII" if ascii_only else "not UTF-8") from None
    try:
        return _DECODER.decode(text)
    except _DuplicateKey:
        raise StrictJSONError("duplicate key") from None
    except RecursionError:
        raise StrictJSONError("nested too deeply") from None
    except ValueError:
        raise StrictJSONError("not JSON") from None
