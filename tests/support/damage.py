"""Damaged copies of canonical bytes, for tests that hold a fast path to its full parser."""

from __future__ import annotations

import random

#: What damage puts in a line of JSON: its punctuation, digits, hex, base64 and the
#: letters of null and true, a space, a backslash, a NUL and a non-ASCII byte.
JSON_LINE_ALPHABET = b'"{}[],:0123456789abcdefz-/=+ACQ AZnultrue\\\x00\xc3'


def damaged(data: bytes, rng: random.Random, alphabet: bytes) -> bytes:
    """One byte changed (to one of ``alphabet``), inserted or removed, or a piece of
    ``data`` repeated."""
    i = rng.randrange(len(data))
    match rng.randrange(4):
        case 0:
            return data[:i] + bytes([rng.choice(alphabet)]) + data[i + 1:]
        case 1:
            return data[:i] + bytes([rng.choice(alphabet)]) + data[i:]
        case 2:
            return data[:i] + data[i + 1:]
        case _:
            j = rng.randrange(i, min(len(data), i + 40) + 1)
            return data[:j] + data[i:j] + data[j:]
