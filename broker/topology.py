"""RabbitMQ topology and rights (wire spec section 5), provisioned through the management API.

:func:`provision` makes one virtual host match a :class:`~protocols.model.Directory`:

- exchanges ``infoshare.submit`` (topic, whose alternate exchange is
  ``infoshare.unrouted``), ``infoshare.unrouted`` (fanout, internal),
  ``infoshare.deliver`` (direct) and ``infoshare.dead`` (fanout), all durable;
- the quorum queue ``infoshare.ingress``, bound to unrouted: what no unit's
  queue takes (a user that is no unit's) still reaches the router;
- per unit, two quorum queues: ``infoshare.ingress.org.unit``, bound to
  submit with the unit's address, and ``infoshare.inbox.org.unit``, bound to
  deliver with the unit's address; each has a delivery limit and
  dead-lettering to ``infoshare.dead``, whose quorum queue
  ``infoshare.dead-letter`` keeps a poison message for an operator instead of
  dropping it;
- one AMQP user per unit (``org.unit``) that may write ``infoshare.submit``,
  with a topic permission that holds it to its own address as routing key,
  and read its own inbox and nothing else; and the broker's user, which may
  read the ingress queues and write ``infoshare.deliver``. Nobody but an
  administrator may configure anything.

**One unit cannot slow another** (the per-unit topology wire spec section 5
allows). Each unit's submissions wait in a queue of their own, of at most
:data:`INGRESS_MAX_LENGTH` messages (``overflow: reject-publish``: a unit that
floods is nacked, and only it), and the router takes from every unit's queue
side by side with a prefetch per queue, so the others' messages never wait
behind a flood. Topic permissions stop a unit publishing into another unit's
queue with that unit's address.

Invariants:

- **Idempotent.** Running it twice changes nothing the second time: every
  object is read first and written only when it differs. A queue or exchange
  that exists with other properties or arguments is never changed or deleted
  (a quorum queue's arguments cannot be changed in place, and deleting would
  lose messages): :class:`~broker.errors.TopologyConflict` names it.
- **Converging.** Bindings from the project's exchanges that the directory
  does not call for are removed, so nobody can be given a path into an inbox
  by a stray binding.
- **Nothing acknowledged is lost.** A unit that left the directory loses its
  permissions in the vhost (and its user, unless another vhost still grants
  it something) and its connections here are closed; its inbox and ingress
  queue are unbound, then deleted only if a live check over AMQP finds them
  empty with no consumer. Otherwise they are kept and reported (an ingress
  queue keeps the router as its consumer, which refuses whatever is left in it
  as ``unknown_sender``; an operator deletes it once it is empty). The management API's message
  counts come from periodic statistics and may be seconds old, so they are
  never trusted for this.
- Passwords live in a :class:`Credentials` file (JSON, mode 0600) and are
  never logged or put into an error. Whether RabbitMQ's user has the stored
  password is checked against its salted hash, without sending it anywhere.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
import secrets
import ssl
import stat
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

from broker.connection import connection_parameters, tls_context
from broker.errors import (
    ConfigError,
    ConnectionFailed,
    CredentialsError,
    TopologyConflict,
    TopologyError,
    TopologyUnreachable,
)
from broker.host_config import write_private_file
from protocols.amqp import (
    DELIVER,
    INBOX_PREFIX,
    INGRESS,
    INGRESS_PREFIX,
    SUBMIT,
    VHOST,
    amqp_url_for,
    inbox_name,
    ingress_name,
)
from protocols.model import Directory, amqp_user

__all__ = [
    "BROKER_USER",
    "DEAD",
    "DEAD_LETTER",
    "DELIVER",
    "DELIVERY_LIMIT",
    "INBOX_PREFIX",
    "INGRESS",
    "INGRESS_DELIVERY_LIMIT",
    "INGRESS_MAX_LENGTH",
    "INGRESS_PREFIX",
    "SUBMIT",
    "UNROUTED",
    "VHOST",
    "Credentials",
    "ManagementAPI",
    "ProvisionReport",
    "amqp_url_for",
    "broker_permissions",
    "inbox_name",
    "ingress_name",
    "provision",
    "unit_permissions",
    "unit_topic_permissions",
]

log = logging.getLogger("infoshare.topology")

BROKER_USER = "infoshare-broker"
#: Where submit sends what no unit's queue takes: anything published by a user that is
#: no unit's (units can use only their own address). It feeds ``infoshare.ingress``, so
#: that every publish RabbitMQ accepts still reaches the router and is decided.
UNROUTED = "infoshare.unrouted"
DEAD = "infoshare.dead"
DEAD_LETTER = "infoshare.dead-letter"
#: Deliveries of one inbox message before it is dead-lettered: enough for a
#: client to crash and restart many times, few enough that a message that
#: crashes every consumer ("poison") is set aside within minutes.
DELIVERY_LIMIT = 20
#: Deliveries of one ingress message before it is dead-lettered. RabbitMQ (before
#: 4.3) counts every hand-back, including those of a router that crashed or lost
#: its connection while it held the message, so this is not how poison is found:
#: the router counts a message's failures itself and dead-letters it after
#: ``broker.router.POISON_ATTEMPTS``, and it holds its messages rather than handing
#: them back while the log is away. What this limit still catches is a message
#: that kills every router that takes it, which no router lives to count. Each
#: router crash costs a message at most one delivery, and only while the router
#: held it (milliseconds, or a log outage), so 100 is a hundred crashes of
#: routers holding that very message: a crash loop of several minutes under a
#: supervisor that restarts in seconds, far beyond ordinary crashes and restarts.
INGRESS_DELIVERY_LIMIT = 100
#: Messages one unit may have waiting for the router; beyond it its publishes are
#: nacked (``reject-publish``), which slows that unit alone.
INGRESS_MAX_LENGTH = 10_000
INGRESS_MAX_BYTES = 256 * 1024 * 1024

#: A unit's AMQP user: ``org.unit`` with both parts of the wire spec name form.
_UNIT_USER = re.compile(r"[a-z0-9](?:-?[a-z0-9])*\.[a-z0-9](?:-?[a-z0-9])*")
_HASHES = {
    "rabbit_password_hashing_sha256": hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
    "rabbit_password_hashing_md5": hashlib.md5,
}


def _exactly(name: str) -> str:
    """A regex matching only ``name``. Names and addresses hold letters, digits, hyphens,
    dots and slashes, and only the dots need escaping; re.escape would escape hyphens
    too, unlike the spec."""
    if not re.fullmatch(r"[a-z0-9./-]+", name):
        raise ValueError("a resource name of letters, digits, hyphens, dots and slashes")
    return "^" + name.replace(".", r"\.") + "$"


def _permissions(write: str, read: str) -> dict[str, str]:
    return {"configure": "^$", "write": write, "read": read}


def unit_permissions(address: str) -> dict[str, str]:
    """A unit may publish to submit and consume its own inbox; dots escaped."""
    return _permissions(_exactly(SUBMIT), _exactly(inbox_name(address)))


def unit_topic_permissions(address: str) -> dict[str, str]:
    """On ``infoshare.submit`` a unit may publish only with its own address as routing key."""
    return {"exchange": SUBMIT, "write": _exactly(address), "read": "^$"}


def broker_permissions() -> dict[str, str]:
    # infoshare.ingress and every unit's ingress queue, infoshare.ingress.org.unit.
    ingress = _exactly(INGRESS)[:-1] + r"(\.[a-z0-9-]+\.[a-z0-9-]+)?$"
    return _permissions(_exactly(DELIVER), ingress)


def _quorum_arguments(*, dead_letter: bool, ingress: bool = False) -> dict[str, Any]:
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if dead_letter:
        args["x-delivery-limit"] = INGRESS_DELIVERY_LIMIT if ingress else DELIVERY_LIMIT
        args["x-dead-letter-exchange"] = DEAD
    if ingress:
        args["x-max-length"] = INGRESS_MAX_LENGTH
        args["x-max-length-bytes"] = INGRESS_MAX_BYTES
        args["x-overflow"] = "reject-publish"
    return args


# --- credentials -----------------------------------------------------------------------


class Credentials:
    """AMQP passwords by user name, in a JSON file readable only by its owner.

    The file is rewritten atomically (temporary file created 0600, fsync,
    rename), so a crash leaves the old or the new file, never half of one.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, str]:
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise CredentialsError(f"{self.path}: cannot read ({e.strerror})") from e
        if mode & 0o077:
            raise CredentialsError(f"{self.path}: mode {mode:04o} lets others read it; "
                                   "chmod 600 it")
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except OSError as e:
            raise CredentialsError(f"{self.path}: cannot read ({e.strerror})") from e
        except ValueError as e:
            raise CredentialsError(f"{self.path}: not a credentials file") from e
        if not isinstance(doc, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
            raise CredentialsError(f"{self.path}: not a credentials file")
        return doc

    def _store(self, doc: dict[str, str]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private_file(self.path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        except OSError as e:
            raise CredentialsError(f"{self.path}: cannot write ({e.strerror})") from e
        except ConfigError as e:
            raise CredentialsError(str(e)) from e

    def users(self) -> list[str]:
        return sorted(self._load())

    def get(self, user: str) -> str | None:
        return self._load().get(user)

    def password(self, user: str) -> str:
        """The password of ``user``.

        Raises:
            CredentialsError: no password for ``user``, or the file cannot be read.
        """
        found = self.get(user)
        if found is None:
            raise CredentialsError(f"{self.path}: no password for user {user}")
        return found

    def ensure(self, user: str) -> tuple[str, bool]:
        """The password of ``user``, generated and stored first if there is none.

        Returns ``(password, created)``.
        """
        doc = self._load()
        if user in doc:
            return doc[user], False
        doc[user] = secrets.token_urlsafe(24)
        self._store(doc)
        return doc[user], True

    def set(self, user: str, password: str) -> None:
        doc = self._load()
        doc[user] = password
        self._store(doc)

    def forget(self, user: str) -> bool:
        doc = self._load()
        if doc.pop(user, None) is None:
            return False
        self._store(doc)
        return True


# --- the management API ----------------------------------------------------------------


def _path(*segments: str) -> str:
    """``/api/...`` with every segment percent-encoded (vhost names may hold ``/``)."""
    return "/api/" + "/".join(urllib.parse.quote(s, safe="") for s in segments)


class ManagementAPI:
    """A small client of RabbitMQ's management HTTP API (basic auth, JSON).

    Raises :class:`~broker.errors.TopologyError` for anything but success;
    ``get`` answers None for 404 and ``delete`` False.
    """

    def __init__(self, base_url: str, user: str, password: str, *,
                 timeout: float = 15.0, tls_ca: Path | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # An https:// API is verified against the CA file (the system's CAs without one).
        self._context = tls_context(tls_ca) if base_url.startswith("https:") else None
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._auth = f"Basic {token}"
        self._timeout = timeout

    def _call(self, method: str, path: str, body: object = None,
              query: str = "") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            self.base_url + path + (f"?{query}" if query else ""), data=data, method=method,
            # No Accept header: some endpoints (a queue's contents) answer it with 406.
            headers={"Authorization": self._auth, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout,
                                        context=self._context) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return 404, None
            raise TopologyError(f"management API {method} {path}: HTTP {e.code} "
                                f"{_reason_of(e)}") from e
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                reason = "its TLS certificate is not signed by the configured CA"
            raise TopologyUnreachable(f"management API at {self.base_url} unreachable: "
                                      f"{reason}") from e
        except (OSError, ValueError) as e:
            raise TopologyError(f"management API {method} {path}: {type(e).__name__}") from e

    def get(self, path: str, query: str = "") -> Any:
        return self._call("GET", path, query=query)[1]

    def put(self, path: str, body: object) -> None:
        status, _ = self._call("PUT", path, body)
        if status == 404:
            raise TopologyError(f"management API PUT {path}: HTTP 404")

    def post(self, path: str, body: object) -> None:
        status, _ = self._call("POST", path, body)
        if status == 404:
            raise TopologyError(f"management API POST {path}: HTTP 404")

    def delete(self, path: str) -> bool:
        return self._call("DELETE", path)[0] != 404

    def amqp_endpoint(self) -> str:
        """The node's AMQP listener as ``amqp[s]://host:port`` (the host is the management
        URL's); a TLS listener is preferred."""
        overview = self.get("/api/overview")
        host = urllib.parse.urlsplit(self.base_url).hostname or "127.0.0.1"
        found = {str(listener.get("protocol")): int(listener["port"])
                 for listener in (overview or {}).get("listeners", [])}
        if "amqp/ssl" in found:
            return f"amqps://{host}:{found['amqp/ssl']}"
        if "amqp" in found:
            return f"amqp://{host}:{found['amqp']}"
        raise TopologyError("the node has no AMQP listener")


def _reason_of(e: urllib.error.HTTPError) -> str:
    # RabbitMQ's error bodies name objects and arguments, never message content.
    try:
        doc = json.loads(e.read() or b"{}")
    except (OSError, ValueError):
        return ""
    reason = doc.get("reason") if isinstance(doc, dict) else None
    return str(reason)[:300] if reason else ""


# --- provisioning ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisionReport:
    """What :func:`provision` did, one line per object (``"queue infoshare.ingress"``).

    ``kept`` lists what was left in place on purpose: the inboxes of units
    that left the directory while still holding messages, and users with
    permissions in the vhost that provisioning does not manage.
    """

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)


@dataclass
class _Changes:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def freeze(self) -> ProvisionReport:
        return ProvisionReport(tuple(self.created), tuple(self.updated), tuple(self.removed),
                               tuple(self.kept))


@dataclass(frozen=True)
class _Binding:
    source: str
    queue: str
    routing_key: str


def provision(management_url: str, admin_user: str, admin_password: str,
              directory: Directory, credentials: Credentials, *, vhost: str = VHOST,
              broker_user: str = BROKER_USER, amqp_url: str | None = None,
              tls_ca: Path | None = None) -> ProvisionReport:
    """Make ``vhost`` match wire spec section 5 for the units of ``directory``.

    New users get a random password, stored in ``credentials`` first. ``amqp_url``
    (any credentials in it are ignored) is where the live emptiness check of a
    removed unit's inbox connects; by default the node's AMQP listener, found
    through the management API. ``tls_ca`` is the CA file that an ``https://``
    management API and an ``amqps://`` node are verified against.

    Raises:
        TopologyConflict: an exchange or queue exists with other properties.
        TopologyError: the management API refused a request or is unreachable.
        CredentialsError: the credentials file cannot be read or written.
    """
    api = ManagementAPI(management_url, admin_user, admin_password, tls_ca=tls_ca)
    changes = _Changes()
    units = sorted(u.address for u in directory.units())
    wanted_users = {amqp_user(a): unit_permissions(a) for a in units}
    if broker_user in wanted_users:
        raise TopologyError(f"broker user {broker_user} is also a unit's user")
    wanted_users[broker_user] = broker_permissions()
    wanted_queues = {
        INGRESS: _quorum_arguments(dead_letter=True, ingress=True),
        DEAD_LETTER: _quorum_arguments(dead_letter=False),
        **{ingress_name(a): _quorum_arguments(dead_letter=True, ingress=True) for a in units},
        **{inbox_name(a): _quorum_arguments(dead_letter=True) for a in units},
    }
    wanted_bindings = {
        _Binding(UNROUTED, INGRESS, ""),
        _Binding(DEAD, DEAD_LETTER, ""),
        *(_Binding(SUBMIT, ingress_name(a), a) for a in units),
        *(_Binding(DELIVER, inbox_name(a), a) for a in units),
    }
    wanted_topics = {amqp_user(a): unit_topic_permissions(a) for a in units}

    _ensure_vhost(api, vhost, changes)
    # The alternate exchange first: submit names it.
    _ensure_exchange(api, vhost, UNROUTED, "fanout", changes, internal=True)
    _ensure_exchange(api, vhost, SUBMIT, "topic", changes,
                     arguments={"alternate-exchange": UNROUTED})
    for name, kind in ((DELIVER, "direct"), (DEAD, "fanout")):
        _ensure_exchange(api, vhost, name, kind, changes)
    for name, args in wanted_queues.items():
        _ensure_queue(api, vhost, name, args, changes)
    for user, perms in wanted_users.items():
        _ensure_user(api, vhost, user, perms, credentials, changes)
        _ensure_topic_permissions(api, vhost, user, wanted_topics.get(user), changes)
    _remove_users(api, vhost, set(wanted_users) | {admin_user}, credentials, changes)
    _converge_bindings(api, vhost, wanted_bindings, changes)
    _remove_unit_queues(api, vhost, set(wanted_queues), changes, credentials, broker_user,
                        amqp_url, tls_ca)
    report = changes.freeze()
    log.info("provisioned vhost=%s created=%d updated=%d removed=%d kept=%d", vhost,
             len(report.created), len(report.updated), len(report.removed), len(report.kept))
    return report


def _ensure_vhost(api: ManagementAPI, vhost: str, changes: _Changes) -> None:
    if api.get(_path("vhosts", vhost)) is None:
        api.put(_path("vhosts", vhost), {"description": "infoshare", "tags": ""})
        changes.created.append(f"vhost {vhost}")


def _ensure_exchange(api: ManagementAPI, vhost: str, name: str, kind: str,
                     changes: _Changes, *, internal: bool = False,
                     arguments: dict[str, Any] | None = None) -> None:
    wanted = {"type": kind, "durable": True, "auto_delete": False, "internal": internal,
              "arguments": arguments or {}}
    path = _path("exchanges", vhost, name)
    found = api.get(path)
    if found is None:
        api.put(path, wanted)
        changes.created.append(f"exchange {name}")
        return
    differs = sorted(k for k, v in wanted.items() if found.get(k) != v)
    if differs:
        raise TopologyConflict(f"exchange {name} in vhost {vhost} exists with other "
                               f"{', '.join(differs)}; delete or rename it first")


def _ensure_queue(api: ManagementAPI, vhost: str, name: str, arguments: dict[str, Any],
                  changes: _Changes) -> None:
    wanted = {"durable": True, "auto_delete": False, "arguments": arguments}
    path = _path("queues", vhost, name)
    found = api.get(path)
    if found is None:
        api.put(path, wanted)
        changes.created.append(f"queue {name}")
        return
    differs = [k for k in ("durable", "auto_delete") if found.get(k) != wanted[k]]
    if found.get("exclusive"):
        differs.append("exclusive")
    have = found.get("arguments") or {}
    differs += [f"argument {k}" for k in sorted(set(have) | set(arguments))
                if have.get(k) != arguments.get(k)]
    if differs:
        raise TopologyConflict(
            f"queue {name} in vhost {vhost} exists with other {', '.join(differs)} "
            f"(wanted {json.dumps(arguments, sort_keys=True)}); it is left as it is: "
            "move its messages and delete it, then provision again")


def _tags(user: dict[str, Any]) -> list[str]:
    tags = user.get("tags") or []
    if isinstance(tags, str):
        tags = [t for t in tags.split(",") if t]
    return sorted(str(t) for t in tags)


def _password_matches(user: dict[str, Any], password: str) -> bool:
    """Whether RabbitMQ's salted hash (4-byte salt || H(salt || password)) is of ``password``."""
    hasher = _HASHES.get(str(user.get("hashing_algorithm")))
    try:
        stored = base64.b64decode(str(user.get("password_hash") or ""), validate=True)
    except ValueError:
        return False
    if hasher is None or len(stored) <= 4:
        return False
    salt = stored[:4]
    return secrets.compare_digest(hasher(salt + password.encode("utf-8")).digest(), stored[4:])


def _ensure_user(api: ManagementAPI, vhost: str, user: str, permissions: dict[str, str],
                 credentials: Credentials, changes: _Changes) -> None:
    password, _ = credentials.ensure(user)
    path = _path("users", user)
    found = api.get(path)
    if found is None:
        api.put(path, {"password": password, "tags": ""})
        changes.created.append(f"user {user}")
    elif _tags(found) or not _password_matches(found, password):
        # Either someone gave the user tags (management access, administrator)
        # or the stored password is not the user's: both are put right.
        api.put(path, {"password": password, "tags": ""})
        changes.updated.append(f"user {user}")
    perm_path = _path("permissions", vhost, user)
    have = api.get(perm_path)
    if have is None:
        api.put(perm_path, permissions)
        changes.created.append(f"permissions {user}")
    elif any(have.get(k) != v for k, v in permissions.items()):
        api.put(perm_path, permissions)
        changes.updated.append(f"permissions {user}")


def _ensure_topic_permissions(api: ManagementAPI, vhost: str, user: str,
                              wanted: dict[str, str] | None, changes: _Changes) -> None:
    """Exactly ``wanted`` (or none) as the user's topic permissions in the vhost.

    A user without any topic permission may use every routing key, so a unit's
    must always be there; the broker's user publishes to no topic exchange.
    """
    path = _path("topic-permissions", vhost, user)
    have = [{k: str(p.get(k)) for k in ("exchange", "write", "read")}
            for p in api.get(path) or []]
    if have == ([wanted] if wanted else []):
        return
    if have:
        api.delete(path)
    if wanted:
        api.put(path, wanted)
        (changes.updated if have else changes.created).append(f"topic permissions {user}")
    else:
        changes.removed.append(f"topic permissions {user}")


def _remove_users(api: ManagementAPI, vhost: str, keep: set[str], credentials: Credentials,
                  changes: _Changes) -> None:
    for perm in api.get(_path("vhosts", vhost, "permissions")) or []:
        user = str(perm.get("user"))
        if user in keep:
            continue
        found = api.get(_path("users", user))
        if found is None:
            continue
        if _tags(found) or not _UNIT_USER.fullmatch(user):
            # An operator's or another tool's user: not provisioning's to remove.
            changes.kept.append(f"permissions {user} (not managed by infoshare)")
            continue
        api.delete(_path("permissions", vhost, user))
        changes.removed.append(f"permissions {user}")
        if api.delete(_path("topic-permissions", vhost, user)):
            changes.removed.append(f"topic permissions {user}")
        # Deleting a user or its permissions does not close its connections.
        for conn in api.get(_path("connections", "username", user)) or []:
            if conn.get("vhost") == vhost:
                api.delete(_path("connections", str(conn.get("name"))))
        if not api.get(_path("users", user, "permissions")):
            api.delete(_path("users", user))
            credentials.forget(user)
            changes.removed.append(f"user {user}")


def _converge_bindings(api: ManagementAPI, vhost: str, wanted: set[_Binding],
                       changes: _Changes) -> None:
    for exchange in sorted({b.source for b in wanted}):
        existing = api.get(_path("exchanges", vhost, exchange, "bindings", "source")) or []
        have: set[_Binding] = set()
        for b in existing:
            dest = str(b.get("destination"))
            binding = _Binding(exchange, dest, str(b.get("routing_key", "")))
            if b.get("destination_type") == "queue" and binding in wanted:
                have.add(binding)
                continue
            kind = "q" if b.get("destination_type") == "queue" else "e"
            api.delete(_path("bindings", vhost, "e", exchange, kind, dest,
                             str(b.get("properties_key", "~"))))
            changes.removed.append(f"binding {exchange} -> {dest} [{binding.routing_key}]")
        for binding in sorted(wanted - have, key=lambda b: (b.source, b.queue)):
            if binding.source != exchange:
                continue
            api.post(_path("bindings", vhost, "e", exchange, "q", binding.queue),
                     {"routing_key": binding.routing_key, "arguments": {}})
            changes.created.append(
                f"binding {exchange} -> {binding.queue} [{binding.routing_key}]")


def _remove_unit_queues(api: ManagementAPI, vhost: str, wanted: set[str], changes: _Changes,
                        credentials: Credentials, broker_user: str, amqp_url: str | None,
                        tls_ca: Path | None) -> None:
    queues = api.get(_path("queues", vhost), query="columns=name") or []
    stale = sorted(str(q["name"]) for q in queues
                   if str(q.get("name", "")).startswith((INBOX_PREFIX, INGRESS_PREFIX))
                   and q["name"] not in wanted)
    if not stale:
        return
    counts = _live_counts(api, vhost, stale, credentials, broker_user, amqp_url, tls_ca)
    for name in stale:
        if name not in counts:
            changes.kept.append(f"queue {name} (could not check that it is empty)")
            continue
        count = counts[name]
        if count is None:
            continue  # deleted meanwhile by someone else
        if count == (0, 0):
            api.delete(_path("queues", vhost, name))
            changes.removed.append(f"queue {name}")
        else:
            changes.kept.append(f"queue {name} ({count[0]} messages, {count[1]} consumers)")


def _live_counts(api: ManagementAPI, vhost: str, queues: Iterable[str],
                 credentials: Credentials, broker_user: str,
                 amqp_url: str | None, tls_ca: Path | None
                 ) -> dict[str, tuple[int, int] | None]:
    """Ready messages and consumers of each queue, asked of the queue itself over AMQP.

    A passive declare needs no permission on the queue, so the broker's user
    (which can configure nothing) asks. None means the queue no longer exists;
    a queue that could not be asked is absent from the answer, and is then kept.
    """
    counts: dict[str, tuple[int, int] | None] = {}
    try:
        base = api.amqp_endpoint() if amqp_url is None else amqp_url
        url = amqp_url_for(base, broker_user, credentials.password(broker_user), vhost)
        params = connection_parameters([url], tls_ca=tls_ca)[0]
        params.connection_attempts = 2
        params.socket_timeout = 10
        params.blocked_connection_timeout = 10
        with _closing(pika.BlockingConnection(params)) as conn:
            for name in queues:
                channel = conn.channel()
                try:
                    ok = channel.queue_declare(name, passive=True).method
                except pika.exceptions.ChannelClosedByBroker as e:
                    if e.reply_code == 404:
                        counts[name] = None
                    continue
                counts[name] = (int(ok.message_count), int(ok.consumer_count))
                channel.close()
    except (pika.exceptions.AMQPError, OSError, ValueError, CredentialsError,
            TopologyError, ConnectionFailed) as e:
        log.warning("live check of removed inboxes failed (%s); keeping them",
                    type(e).__name__)
    return counts


@contextlib.contextmanager
def _closing(conn: pika.BlockingConnection) -> Iterator[pika.BlockingConnection]:
    try:
        yield conn
    finally:
        if conn.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                conn.close()
