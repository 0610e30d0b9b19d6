"""The exceptions of the agency package, rooted in :class:`AgencyError`.

Third-party errors (pika, urllib, sqlite3) are translated into these at the
boundary with ``raise ... from e``; only the adapters (the CLI, the gateway)
turn them into exit codes or HTTP statuses. Messages hold ids and codes,
never personal data.
"""

from __future__ import annotations


class AgencyError(Exception):
    """Base of every error raised by the agency package."""

    code = "agency_error"


class ClientError(AgencyError):
    """The agency client could not do what it was asked."""

    code = "client_error"


class LocalRefusal(ClientError):
    """The client refused to send: the broker would refuse with ``reason`` (wire spec 7)."""

    code = "local_refusal"

    def __init__(self, reason: str) -> None:
        super().__init__(f"refused locally: {reason}")
        self.reason = reason


class InvalidMessage(ClientError, ValueError):
    """The arguments cannot make a valid envelope (e.g. a record key not of the name form)."""

    code = "invalid_message"


class ConnectionFailed(ClientError):
    """RabbitMQ could not be reached, or refused the credentials, after the retries."""

    code = "connection_failed"


class PublishFailed(ClientError):
    """A publish was not confirmed after the retries, or RabbitMQ refused it.

    ``detail`` is a code: ``nacked``, ``unroutable``, ``access_refused``,
    ``precondition_failed``, ``channel_closed`` or ``connection_lost``.
    """

    code = "publish_failed"

    def __init__(self, detail: str, message: str | None = None) -> None:
        super().__init__(message or f"publish failed: {detail}")
        self.detail = detail


class StateError(ClientError):
    """The client's state store, or a record file, cannot be opened or written."""

    code = "state_error"


class BundleError(AgencyError):
    """The organisation bundle is missing, readable by others, or not of its form."""

    code = "bundle_error"
