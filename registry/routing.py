"""URL parts the registry reads as numbers: ASCII digits only.

werkzeug's ``int`` converter matches ``\\d``, which in Python also matches
Arabic-Indic, Devanagari and full-width digits, and ``int()`` reads them: so
``/directory/١`` served version 1. A registry version is ASCII digits; any other
value in that place is refused with a 422 that says so.
"""

from __future__ import annotations

import re

from werkzeug.exceptions import UnprocessableEntity
from werkzeug.routing import BaseConverter

#: Versions are 32-bit integers in the database.
MAX_VERSION = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,10}")


class PathValueInvalid(UnprocessableEntity):
    """A value in the path that cannot be what its place names."""

    registry_code = "invalid"

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name} in the path is not valid")
        self.fields = {name: [message]}


def ascii_version(value: str) -> int | None:
    """The registry version written in ``value``, or None when it is not ASCII digits."""
    if not _DIGITS.fullmatch(value):
        return None
    number = int(value)
    return number if number <= MAX_VERSION else None


class VersionConverter(BaseConverter):
    """``<version:name>``: a registry version in ASCII digits; anything else is a 422."""

    # Anything up to the next slash, so that other digits reach to_python and are
    # refused by name; a literal path such as /directory/versions still wins.
    regex = r"[^/]+"

    def to_python(self, value: str) -> int:
        number = ascii_version(value)
        if number is None:
            if value.isdigit() and len(value) <= 10:
                raise PathValueInvalid("version", "a registry version is written in the "
                                                  "ASCII digits 0 to 9")
            raise PathValueInvalid("version", "a registry version is a whole number from 0 "
                                              f"to {MAX_VERSION}, in ASCII digits")
        return number

    def to_url(self, value: object) -> str:
        return str(int(value))  # type: ignore[call-overload]
