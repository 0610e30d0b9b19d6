"""A router on the session's RabbitMQ node, in a vhost of its own, and units to talk to it.

:func:`running_world` provisions the West Yorkshire units (and a charity that
is not a signatory), starts a :class:`~broker.router.Router` on a SQLite
transfer log in a thread, and stops it afterwards. The :class:`World` lets a
test build envelopes as any unit, publish them as any unit's AMQP user, and
take what arrives in any inbox.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingConnection

from broker.router import DirectoryHolder, Router
from broker.topology import Credentials, ManagementAPI, amqp_url_for, inbox_name, provision
from broker.transfer_log import TransferLog
from keys import EncryptionKeyPair, NoteSigner, SigningKeyPair
from protocols.envelope import Notice, build_envelope, parse_notice
from protocols.loader import ProtocolFile
from protocols.model import (
    Consent,
    Directory,
    GroundId,
    KeyRecord,
    Manager,
    Organisation,
    OrgId,
    ProtocolId,
    ProtocolStatus,
    Role,
    Unit,
    UnitId,
    amqp_user,
)

ORIGIN = "test.example/transfer-log"
P = "wy-iisp-2016"
SUSPENDED = "wy-iisp-2016-suspended"
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
SERIOUS_CRIME = Consent("not_sought", GroundId("serious-crime"))

LEEDS_CSC = "leeds-cc/childrens-social-care"
LEEDS_DOOR = "leeds-cc/front-door"
LEEDS_EH = "leeds-cc/early-help"
LEEDS_SCHOOL = "leeds-cc/education-safeguarding"
POLICE_HUB = "wy-police/safeguarding-hub"
POLICE_INTEL = "wy-police/intelligence-bureau"
CHARITY = "example-charity/helpline"
UNITS = (LEEDS_CSC, LEEDS_DOOR, LEEDS_EH, LEEDS_SCHOOL, POLICE_HUB, POLICE_INTEL, CHARITY)


@dataclass
class Keys:
    signing: SigningKeyPair = field(default_factory=SigningKeyPair.generate)
    encryption: EncryptionKeyPair = field(default_factory=EncryptionKeyPair.generate)


@dataclass
class World:
    source: list[Directory]  # source[0] is what the router's registry serves
    keys: dict[str, Keys]
    manager: SigningKeyPair
    broker_key: SigningKeyPair
    credentials: Credentials
    amqp_base: str
    log: TransferLog
    router: Router
    vhost: str
    connections: dict[str, BlockingConnection] = field(default_factory=dict)
    stash: dict[str, list[tuple[Any, bytes]]] = field(default_factory=dict)

    @property
    def directory(self) -> Directory:
        return self.source[0]

    @directory.setter
    def directory(self, value: Directory) -> None:
        self.source[0] = value

    def channel(self, unit: str) -> Any:
        conn = self.connections.get(unit)
        if conn is None or not conn.is_open:
            user = amqp_user(unit)
            conn = BlockingConnection(pika.URLParameters(
                amqp_url_for(self.amqp_base, user, self.credentials.password(user),
                             self.vhost)))
            self.connections[unit] = conn
        ch = conn.channel()
        ch.confirm_delivery()
        return ch

    def publish(self, unit: str, body: bytes, *, user_id: str | None = None,
                message_id: str | None = None) -> None:
        ch = self.channel(unit)
        # The unit's own address is the routing key (wire spec 5).
        ch.basic_publish("infoshare.submit", unit, body, pika.BasicProperties(
            user_id=user_id or amqp_user(unit), delivery_mode=2,
            content_type="application/json", type="envelope", message_id=message_id),
            mandatory=True)
        ch.close()

    def take(self, unit: str, match: Callable[[Any, bytes], bool],
             timeout: float = 20.0) -> tuple[Any, bytes]:
        """The first message in ``unit``'s inbox that ``match``es; others are kept aside."""
        kept = self.stash.setdefault(unit, [])
        for i, (props, body) in enumerate(kept):
            if match(props, body):
                return kept.pop(i)
        ch = self.channel(unit)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                method, props, body = ch.basic_get(inbox_name(unit), auto_ack=True)
                if method is None:
                    time.sleep(0.05)
                    continue
                if match(props, body):
                    return props, body
                kept.append((props, body))
        finally:
            ch.close()
        raise AssertionError(f"nothing matching arrived at {unit} within {timeout}s")

    def notice(self, unit: str, message_id: str | None) -> Notice:
        def is_it(props: Any, body: bytes) -> bool:
            return props.type == "notice" and parse_notice(
                body, self.broker_key.public).message_id == message_id
        _, body = self.take(unit, is_it)
        return parse_notice(body, self.broker_key.public)

    def envelope(self, unit: str, message_id: str) -> tuple[Any, bytes]:
        return self.take(unit, lambda p, b: p.type == "envelope" and p.message_id == message_id)

    def build(self, sender: str = LEEDS_CSC, recipient: str = POLICE_INTEL, *,
              kind: str = "referral", protocol: str = P, purpose: str = "police-intelligence",
              record: dict[str, Any] | None = None,
              consent: Consent | None = SERIOUS_CRIME,
              subject_informed: bool = False, in_reply_to: str | None = None,
              signer: SigningKeyPair | None = None,
              countersigners: tuple[SigningKeyPair, ...] = (),
              recipient_key: bytes | None = None, created_at: datetime | None = None,
              message_id: str | None = None) -> tuple[bytes, str]:
        sender_keys = self.keys.get(sender) or Keys()
        rkeys = self.keys.get(recipient) or Keys()
        body, env = build_envelope(
            kind=kind, protocol=protocol, purpose=purpose, sender=sender, recipient=recipient,
            record={"identity": {"ref": "T-1"}} if record is None else record,
            reasons="test", sender_key=signer or sender_keys.signing,
            recipient_key=recipient_key or rkeys.encryption.public,
            created_at=created_at or datetime.now(UTC), consent=consent,
            subject_informed=subject_informed, in_reply_to=in_reply_to,
            countersigners=countersigners, message_id=message_id)
        return body, env.header.message_id


def _directory(wy: ProtocolFile, keys: dict[str, Keys], manager: SigningKeyPair,
               broker_key: SigningKeyPair) -> Directory:
    suspended = dataclasses.replace(wy.protocol, id=ProtocolId(SUSPENDED),
                                    status=ProtocolStatus.SUSPENDED)
    charity = Organisation(id=OrgId("example-charity"), name="Example Charity", sector="voluntary",
                           units=(Unit(OrgId("example-charity"), UnitId("helpline"), "Helpline",
                                       frozenset({Role("front-door")})),))
    records = [KeyRecord(key_id=broker_key.key_id, holder="broker", owner="broker", use="signing",
                         public=broker_key.public, valid_from=LONG_AGO),
               KeyRecord(key_id=manager.key_id, holder="manager", owner="leeds-cc",
                         use="signing", public=manager.public, valid_from=LONG_AGO,
                         manager="leeds-mgr-1")]
    for addr, k in keys.items():
        records.append(KeyRecord(key_id=k.signing.key_id, holder="unit", owner=addr,
                                 use="signing", public=k.signing.public, valid_from=LONG_AGO))
        records.append(KeyRecord(key_id=k.encryption.key_id, holder="unit", owner=addr,
                                 use="encryption", public=k.encryption.public,
                                 valid_from=LONG_AGO))
    return Directory(version=3, issued_at=datetime.now(UTC).replace(microsecond=0),
                     organisations=(*wy.organisations, charity),
                     protocols=(wy.protocol, suspended), keys=tuple(records),
                     managers=(Manager("leeds-mgr-1", OrgId("leeds-cc"), "Service manager"),))


@dataclass
class RegistryFeed:
    """A real registry for the router: the keys it holds for each unit and for the
    broker, and how the router fetches (and verifies) its current directory."""

    keys: dict[str, Keys]
    broker_key: SigningKeyPair
    fetch: Callable[[], Directory]


@contextmanager
def running_world(*, management_url: str, amqp_base: str, wy_protocol: ProtocolFile,
                  credentials: Credentials, vhost: str, log_path: Path,
                  registry: RegistryFeed | None = None,
                  batch_delay: float = 0.005) -> Iterator[World]:
    """Provision ``vhost``, start a router on a log at ``log_path``; stop it on exit.

    The router's directory is made here (tests may swap it), or with ``registry``
    fetched from a real registry as ``infoshare broker run`` fetches it.
    """
    manager = SigningKeyPair.generate()
    if registry is None:
        keys = {u: Keys() for u in UNITS}
        broker_key = SigningKeyPair.generate()
        directory = _directory(wy_protocol, keys, manager, broker_key)
    else:
        keys, broker_key, directory = registry.keys, registry.broker_key, registry.fetch()
    provision(management_url, "guest", "guest", directory, credentials, vhost=vhost)
    log = TransferLog.open(f"sqlite:///{log_path}", signer=NoteSigner(ORIGIN, broker_key),
                           origin=ORIGIN)
    source = [directory]  # what the router's registry returns; tests may swap it
    fetch = (lambda: source[0]) if registry is None else registry.fetch
    router = Router(amqp_url=amqp_url_for(amqp_base, "infoshare-broker",
                                          credentials.password("infoshare-broker"), vhost),
                    transfer_log=log, directory=DirectoryHolder(fetch),
                    broker_key=broker_key, directory_refresh=0.2, batch_delay=batch_delay)
    w = World(source, keys, manager, broker_key, credentials, amqp_base, log, router, vhost)
    thread = threading.Thread(target=router.run, daemon=True)
    thread.start()
    assert router.ready.wait(30), "router did not start consuming"
    try:
        yield w
    finally:
        router.stop()
        thread.join(timeout=30)
        for conn in w.connections.values():
            if conn.is_open:
                conn.close()
        log.close()
    assert not thread.is_alive(), "router did not stop on request"


def remove_vhost(management: ManagementAPI, vhost: str, credentials: Credentials) -> None:
    """Delete ``vhost`` (if named) and every user of ``credentials`` no vhost still uses."""
    if vhost:
        management.delete(f"/api/vhosts/{vhost}")
    for user in credentials.users():
        if not management.get(f"/api/users/{user}/permissions"):
            management.delete(f"/api/users/{user}")
