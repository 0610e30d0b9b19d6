"""Connections to RabbitMQ: every node of the cluster, TLS verified against a CA file.

The broker's clients (the router and provisioning) connect through
:func:`connection_parameters`: one ``pika`` parameter set per node URL, in
the order given. An ``amqps://`` URL verifies the node's certificate and host
name against the CA file named by ``tls_ca`` (the system's CAs when none is
given); an ``amqp://`` URL is plain TCP, which only loopback deployments
should use.

:func:`check_reachable` opens one connection and closes it, so that a
command can say in one line that RabbitMQ is down instead of retrying
forever in the background.
"""

from __future__ import annotations

import contextlib
import ssl
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingConnection

from broker.errors import ConnectionFailed

__all__ = ["check_reachable", "connection_parameters", "describe", "tls_context"]


def tls_context(tls_ca: Path | None) -> ssl.SSLContext:
    """A client context that verifies certificates and host names against ``tls_ca``.

    Raises:
        ConnectionFailed: the CA file cannot be read or holds no certificate.
    """
    try:
        return ssl.create_default_context(cafile=None if tls_ca is None else str(tls_ca))
    except (OSError, ssl.SSLError) as e:
        raise ConnectionFailed(f"CA file {tls_ca}: not a readable PEM certificate") from e


def describe(url: str) -> str:
    """The URL without user and password, for messages."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def connection_parameters(urls: Sequence[str], *, tls_ca: Path | None = None,
                          ) -> list[pika.URLParameters]:
    """One parameter set per URL; ``amqps://`` ones verify the node against ``tls_ca``.

    Raises:
        ConnectionFailed: a URL is malformed, or the CA file cannot be read.
    """
    if not urls:
        raise ConnectionFailed("no RabbitMQ node is configured")
    context: ssl.SSLContext | None = None
    found = []
    for url in urls:
        try:
            if urllib.parse.urlsplit(url).scheme not in ("amqp", "amqps"):
                raise ValueError("not amqp")
            params = pika.URLParameters(url)
        except (ValueError, TypeError) as e:
            raise ConnectionFailed(f"{describe(url)}: not an AMQP URL "
                                   "(amqp://host:port or amqps://host:port)") from e
        if params.ssl_options is not None:
            context = context or tls_context(tls_ca)
            params.ssl_options = pika.SSLOptions(context, server_hostname=params.host)
        found.append(params)
    return found


def check_reachable(params: Sequence[pika.ConnectionParameters], *,
                    timeout: float = 10.0) -> None:
    """Open one connection (to the first node that answers) and close it.

    Raises:
        ConnectionFailed: no node accepted the connection; the message says why
            (refused, TLS, credentials) in one line and holds no password.
    """
    last = ""
    for p in params:
        p.connection_attempts = 1
        p.socket_timeout = timeout
        p.blocked_connection_timeout = timeout
        try:
            conn = BlockingConnection(p)
        except (pika.exceptions.ProbableAuthenticationError,
                pika.exceptions.ProbableAccessDeniedError,
                pika.exceptions.AuthenticationError) as e:
            raise ConnectionFailed(f"RabbitMQ at {p.host}:{p.port} refused the user "
                                   f"{_user(p)} or its virtual host ({type(e).__name__})"
                                   ) from e
        except (pika.exceptions.AMQPError, OSError) as e:
            last = f"{p.host}:{p.port}: {_why(e)}"
            continue
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            conn.close()
        return
    raise ConnectionFailed(f"RabbitMQ unreachable ({last})")


def _user(p: pika.ConnectionParameters) -> str:
    return str(getattr(p.credentials, "username", "?"))


#: What pika's wrapped socket and TLS errors mean, for a one-line message.
_REASONS = (
    ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not signed by the configured CA"),
    ("WRONG_VERSION_NUMBER", "TLS handshake failed: is this a plain amqp:// port?"),
    ("IncompatibleProtocolError", "no AMQP answer: is this an amqps:// port?"),
    ("Connection refused", "connection refused: is RabbitMQ running there?"),
    ("timed out", "timed out"),
    ("Name or service not known", "unknown host name"),
    ("Temporary failure in name", "host name lookup failed"),
)


def _why(e: BaseException) -> str:
    """One line about a failed connection; pika wraps the socket error in its own."""
    text = f"{type(e).__name__} {e} {e.args!r}"
    for marker, meaning in _REASONS:
        if marker in text:
            return meaning
    return type(e).__name__
