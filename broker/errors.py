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


class TopologyUnreachable(TopologyError):
    """The management API did not answer (down, refused, or TLS failed)."""

    code = "topology_unreachable"


class TopologyConflict(TopologyError):
    """An exchange or queue exists already with other properties or arguments.

    Provisioning never changes such an object (a quorum queue's arguments
    cannot be changed in place); an operator must decide what to do with it.
    """

    code = "topology_conflict"


class CredentialsError(BrokerError):
    """The credentials file is missing a user, unreadable, or readable by others."""

    code = "credentials_error"



class ConnectionFailed(BrokerError):
    """RabbitMQ could not be reached, refused the connection, or failed TLS verification."""

    code = "connection_failed"


class ConfigError(BrokerError):
    """The broker host's configuration is missing, malformed, or names unreadable files."""

    code = "config_error"
