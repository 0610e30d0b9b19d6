"""The exceptions of the broker package, rooted in :class:`BrokerError`.

Third-party errors (pika, urllib, sqlite3) are translated into these at the
boundary with ``raise ... from e``; only the adapters (the CLI) turn them into
exit codes. Messages hold ids and codes, never personal data.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base of every error raised by the broker package."""

    code = "broker_error"


# --- provisioning (broker.topology) ----------------------------------------------------


class TopologyError(BrokerError):
    """The management API refused a request or could not be reached."""

    code = "topology_error"


class TopologyConflict(TopologyError):
    """An exchange or queue exists already with other properties or arguments.

    Provisioning never changes such an object (a quorum queue's arguments
    cannot be changed in place); an operator must decide what to do with it.
    """

    code = "topology_conflict"


class CredentialsError(BrokerError):
    """The credentials file is missing a user, unreadable, or readable by others."""

    code = "credentials_error"


class DeploymentError(BrokerError):
    """The deployment file is missing, malformed, or names files that cannot be read."""

    code = "deployment_error"


# --- the agency client (broker.client) -------------------------------------------------


class ClientError(BrokerError):
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
