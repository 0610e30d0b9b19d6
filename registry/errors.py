"""The exceptions of the registry, rooted in :class:`RegistryError`.

The store and the client raise these; only the adapters (the HTTP app and the
CLI) turn them into status codes or exit codes. Messages hold ids and codes,
never personal data.
"""

from __future__ import annotations

from collections.abc import Mapping


class RegistryError(Exception):
    """Base of every error raised by the registry package."""

    code = "registry_error"


class NotFound(RegistryError):
    """The protocol, organisation, unit, key, manager, token or version does not exist."""

    code = "not_found"


class Conflict(RegistryError):
    """The change does not fit the registry as it is (a duplicate, a stale version, a race)."""

    code = "conflict"


class LastBrokerKey(RegistryError):
    """The key is the broker's last valid one; revoking it needs a second confirmation."""

    code = "last_broker_key"


class Invalid(RegistryError):
    """The input is malformed or breaks a rule; ``fields`` maps field paths to messages.

    ``code`` names the reason where a more precise one helps the caller
    (``duplicate_key``, ``wrong_owner``...); by default it is ``invalid``.
    """

    code = "invalid"

    def __init__(self, message: str, fields: Mapping[str, list[str]] | None = None, *,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.fields: dict[str, list[str]] = {k: list(v) for k, v in (fields or {}).items()}
        if code is not None:
            self.code = code


class Unauthenticated(RegistryError):
    """No credentials, or credentials the registry does not accept."""

    code = "unauthenticated"


class Forbidden(RegistryError):
    """The credentials are valid but their role may not do this."""

    code = "forbidden"


class Throttled(RegistryError):
    """Too many failed authentications from one client; try again after ``retry_after`` s."""

    code = "throttled"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegistryUnavailable(RegistryError):
    """The registry could not be reached or answered with a server error."""

    code = "unavailable"


class UntrustedDirectory(RegistryError):
    """A directory failed verification against the pinned key, or went back in version."""

    code = "untrusted_directory"


class NotInitialised(RegistryError):
    """The data directory or database has not been set up with ``registry init``."""

    code = "not_initialised"
