"""The RabbitMQ names of wire spec section 5, shared by the broker and the agencies.

Pure: names and URLs only, no connection.
"""

from __future__ import annotations

import urllib.parse
from typing import Final

from protocols.model import amqp_user

__all__ = ["DELIVER", "INBOX_PREFIX", "INGRESS", "INGRESS_PREFIX", "SUBMIT", "VHOST",
           "amqp_url_for", "inbox_name", "ingress_name"]

VHOST: Final = "infoshare"
SUBMIT: Final = "infoshare.submit"
INGRESS: Final = "infoshare.ingress"
DELIVER: Final = "infoshare.deliver"
INBOX_PREFIX: Final = "infoshare.inbox."
#: Each unit's own ingress queue, fed by ``infoshare.submit`` with its address as
#: routing key (the per-unit topology that wire spec section 5 allows).
INGRESS_PREFIX: Final = "infoshare.ingress."


def inbox_name(address: str) -> str:
    """The inbox queue of a unit: ``org/unit`` -> ``infoshare.inbox.org.unit``."""
    return INBOX_PREFIX + amqp_user(address)


def ingress_name(address: str) -> str:
    """The ingress queue of a unit: ``org/unit`` -> ``infoshare.ingress.org.unit``."""
    return INGRESS_PREFIX + amqp_user(address)


def amqp_url_for(amqp_base_url: str, user: str, password: str, vhost: str) -> str:
    """``amqp_base_url`` with ``user:password`` and ``vhost`` put in (each percent-encoded).

    Credentials and a path already in the base URL are replaced; its query
    (e.g. ``heartbeat=30``) is kept.

    Raises:
        ValueError: the base URL is not ``amqp://`` or ``amqps://`` with a host.
    """
    parts = urllib.parse.urlsplit(amqp_base_url)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError("an AMQP URL is amqp://host[:port] or amqps://host[:port]")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}@{host}"
    path = "/" + urllib.parse.quote(vhost, safe="")
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, parts.query, ""))

