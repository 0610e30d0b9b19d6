"""The gateway's exceptions, under :class:`agency.errors.AgencyError`.

Only the adapters (the API, the pages, the commands) map them to HTTP
statuses or exit codes. Messages hold codes, ids and sentences saying what to
change, never personal data.
"""

from __future__ import annotations

from agency.errors import AgencyError


class GatewayError(AgencyError):
    code = "gateway_error"


class StoreUnavailable(GatewayError):
    """The gateway's database cannot be opened or written."""

    code = "store_unavailable"


class Invalid(GatewayError):
    """A request is not of the documented form; ``fields`` names what is wrong."""

    code = "invalid"

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


class Refused(GatewayError):
    """The protocol does not permit this; ``reason`` is a wire spec reason code."""

    code = "refused"

    def __init__(self, reason: str, sentence: str, message_id: str | None = None) -> None:
        super().__init__(sentence)
        self.reason = reason
        self.sentence = sentence
        self.message_id = message_id


class NotFound(GatewayError):
    code = "not_found"


class Conflict(GatewayError):
    """The request conflicts with the message's state (e.g. approved already)."""

    code = "conflict"


class Unauthenticated(GatewayError):
    code = "unauthenticated"


class Forbidden(GatewayError):
    code = "forbidden"


class WrongPassphrase(GatewayError):
    """A manager's passphrase did not open the manager's key: nothing was signed."""

    code = "wrong_passphrase"


class SetupError(GatewayError):
    """The gateway's home is missing, incomplete, or its key does not open."""

    code = "setup_error"
