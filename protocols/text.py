"""What free text may hold: names, titles, labels and reasons that people read.

Refused in every piece of free text, wherever it comes from (protocol files,
API bodies, forms, token labels):

- control characters (Unicode category Cc: C0, DEL and C1), which logs,
  terminals and PostgreSQL treat specially;
- format characters (category Cf): bidirectional overrides and isolates such
  as U+202E, zero-width characters, the soft hyphen, tag characters. They make
  text read differently from what it holds ("Early Help" with a hidden
  character is another name; "txt.exe" written backwards looks like an
  "exe.txt"), and a reviewer must see exactly what is stored;
- lone surrogates (Cs), which are not characters at all;
- text made only of spaces.

One-line text refuses every such character; prose (descriptions, security and
retention notes) may also hold line feeds. The patterns are matched whole
(``re.fullmatch``) and written so that JSON Schema, whose ``$`` does not
match before a final newline, reads them the same way once anchored.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["PROSE_PATTERN", "TEXT_PATTERN", "is_prose", "is_text", "refused_characters"]

_REFUSED_CATEGORIES = ("Cc", "Cf", "Cs")


def _escape(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


# Control, format and surrogate characters live in the first two planes and in
# plane 14 (tags); looking only there keeps the import fast.
_PLANES = (range(0x20000), range(0xE0000, 0xE1000))
_REFUSED_CODES = tuple(code for plane in _PLANES for code in plane
                       if unicodedata.category(chr(code)) in _REFUSED_CATEGORIES)


def _class_body(skip: frozenset[int] = frozenset()) -> str:
    """The refused characters as the body of a regex character class, in ranges."""
    ranges: list[tuple[int, int]] = []
    for code in _REFUSED_CODES:
        if code in skip:
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    return "".join(_escape(a) if a == b else f"{_escape(a)}-{_escape(b)}" for a, b in ranges)


# Spaces listed by hand: Python's and JSON Schema's "\s" differ.
_SPACE = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_REFUSED = _class_body()
_REFUSED_IN_PROSE = _class_body(frozenset({0x0A}))

#: One line of free text: no control, format or surrogate characters, not only spaces.
TEXT_PATTERN = f"[^{_REFUSED}]*[^{_REFUSED}{_SPACE}][^{_REFUSED}]*"
#: Prose: the same, with line feeds allowed.
PROSE_PATTERN = f"[^{_REFUSED_IN_PROSE}]*[^{_REFUSED_IN_PROSE}{_SPACE}\\n][^{_REFUSED_IN_PROSE}]*"

_TEXT = re.compile(TEXT_PATTERN)
_PROSE = re.compile(PROSE_PATTERN)


def is_text(value: object) -> bool:
    """True for one line of acceptable free text."""
    return isinstance(value, str) and _TEXT.fullmatch(value) is not None


def is_prose(value: object) -> bool:
    """True for acceptable free text that may run over several lines."""
    return isinstance(value, str) and _PROSE.fullmatch(value) is not None


def refused_characters(value: str, *, prose: bool = False) -> list[str]:
    """The code points of ``value`` that free text may not hold, as ``U+XXXX`` (for messages)."""
    return sorted({f"U+{ord(c):04X}" for c in value
                   if unicodedata.category(c) in _REFUSED_CATEGORIES
                   and not (prose and c == "\n")})
