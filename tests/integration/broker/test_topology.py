"""``broker.topology.provision`` against the session's real RabbitMQ node (wire spec 5)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from broker.errors import TopologyConflict
from broker.topology import (
    DEAD,
    DEAD_LETTER,
    DELIVER,
    DELIVERY_LIMIT,
    INGRESS,
    INGRESS_DELIVERY_LIMIT,
    INGRESS_MAX_LENGTH,
    SUBMIT,
    UNROUTED,
    Credentials,
    ManagementAPI,
    ProvisionReport,
    inbox_name,
    ingress_name,
    provision,
)
from protocols.loader import ProtocolFile
from protocols.model import Directory, Organisation, OrgId, Role, Unit, UnitId, amqp_user

pytestmark = pytest.mark.integration

Connect = Callable[[str, str, str], BlockingConnection]

VHOST = "infoshare-test-topology"
BROKER = "infoshare-broker"
DOOR = "leeds-cc/front-door"
POLICE = "wy-police/safeguarding-hub"
SCHOOL = "leeds-cc/education-safeguarding"
QUORUM = {"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
          "x-dead-letter-exchange": DEAD}
INGRESS_QUORUM = {"x-queue-type": "quorum", "x-delivery-limit": INGRESS_DELIVERY_LIMIT,
                  "x-dead-letter-exchange": DEAD, "x-max-length": INGRESS_MAX_LENGTH,
                  "x-max-length-bytes": 256 * 1024 * 1024, "x-overflow": "reject-publish"}


def _directory(wy: ProtocolFile, keep: Callable[[str], bool] = lambda a: True) -> Directory:
    orgs = tuple(Organisation(o.id, o.name, o.sector,
                              tuple(u for u in o.units if keep(u.address)))
                 for o in wy.organisations)
    return Directory(version=1, issued_at=datetime.now(UTC), organisations=orgs,
                     protocols=(wy.protocol,), keys=())


def _synthetic(*addresses: str) -> Directory:
    """A directory of made-up units, for tests that must not touch the WY units' users
    (RabbitMQ users are node-wide, and the module's main vhost uses those)."""
    orgs: dict[str, list[Unit]] = {}
    for a in addresses:
        org, _, unit = a.partition("/")
        orgs.setdefault(org, []).append(Unit(OrgId(org), UnitId(unit), unit,
                                             frozenset({Role("x")})))
    return Directory(version=1, issued_at=datetime.now(UTC), protocols=(), keys=(),
                     organisations=tuple(Organisation(OrgId(o), o, "test", tuple(us))
                                         for o, us in orgs.items()))


@dataclass(frozen=True)
class Provisioned:
    report: ProvisionReport
    directory: Directory
    credentials: Credentials
    management_url: str


@pytest.fixture(scope="module")
def provisioned(management: ManagementAPI, wy_protocol: ProtocolFile,
                vhost_factory: Callable[[str], Credentials]) -> Provisioned:
    credentials = vhost_factory(VHOST)
    directory = _directory(wy_protocol)
    report = provision(management.base_url, "guest", "guest", directory, credentials,
                       vhost=VHOST)
    return Provisioned(report, directory, credentials, management.base_url)


def _api(management: ManagementAPI, *parts: str) -> object:
    from urllib.parse import quote
    return management.get("/api/" + "/".join(quote(p, safe="") for p in parts))


def _login(connect: Connect, p: Provisioned, address: str) -> BlockingChannel:
    user = amqp_user(address) if "/" in address else address
    return connect(user, p.credentials.password(user), VHOST).channel()


def _refused(code: int, action: Callable[[], object]) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        action()
    assert caught.value.reply_code == code


# --- objects ---------------------------------------------------------------------------


def test_first_run_creates_every_object(provisioned: Provisioned) -> None:
    created = set(provisioned.report.created)
    units = [u.address for u in provisioned.directory.units()]
    assert len(units) == 35
    assert {f"vhost {VHOST}", f"exchange {SUBMIT}", f"exchange {UNROUTED}",
            f"exchange {DELIVER}", f"exchange {DEAD}", f"queue {INGRESS}",
            f"queue {DEAD_LETTER}", f"user {BROKER}"} <= created
    for a in units:
        assert {f"queue {ingress_name(a)}", f"queue {inbox_name(a)}", f"user {amqp_user(a)}",
                f"permissions {amqp_user(a)}", f"topic permissions {amqp_user(a)}"} <= created
    assert not provisioned.report.updated and not provisioned.report.removed


@pytest.mark.parametrize(("name", "kind", "internal", "arguments"), [
    (SUBMIT, "topic", False, {"alternate-exchange": UNROUTED}),
    (UNROUTED, "fanout", True, {}),
    (DELIVER, "direct", False, {}),
    (DEAD, "fanout", False, {})])
def test_exchanges(management: ManagementAPI, provisioned: Provisioned, name: str,
                   kind: str, internal: bool, arguments: dict[str, str]) -> None:
    found = _api(management, "exchanges", VHOST, name)
    assert isinstance(found, dict)
    assert (found["type"], found["durable"], found["auto_delete"], found["internal"],
            found["arguments"]) == (kind, True, False, internal, arguments)


def test_queues_are_quorum_with_delivery_limit_and_dead_lettering(
        management: ManagementAPI, provisioned: Provisioned) -> None:
    wanted = [(INGRESS, INGRESS_QUORUM)]
    for unit in provisioned.directory.units():
        wanted += [(ingress_name(unit.address), INGRESS_QUORUM),
                   (inbox_name(unit.address), QUORUM)]
    for name, arguments in wanted:
        found = _api(management, "queues", VHOST, name)
        assert isinstance(found, dict), name
        assert found["type"] == "quorum" and found["durable"] is True
        assert found["arguments"] == arguments, name
    dead = _api(management, "queues", VHOST, DEAD_LETTER)
    assert isinstance(dead, dict)
    assert dead["arguments"] == {"x-queue-type": "quorum"}


def test_bindings(management: ManagementAPI, provisioned: Provisioned) -> None:
    def bindings(exchange: str) -> set[tuple[str, str]]:
        found = _api(management, "exchanges", VHOST, exchange, "bindings", "source")
        assert isinstance(found, list)
        return {(b["destination"], b["routing_key"]) for b in found}

    assert bindings(SUBMIT) == {(ingress_name(u.address), u.address)
                                for u in provisioned.directory.units()}
    assert bindings(UNROUTED) == {(INGRESS, "")}
    assert bindings(DEAD) == {(DEAD_LETTER, "")}
    assert bindings(DELIVER) == {(inbox_name(u.address), u.address)
                                 for u in provisioned.directory.units()}


def test_permissions_are_exactly_the_wire_spec(management: ManagementAPI,
                                               provisioned: Provisioned) -> None:
    door = _api(management, "permissions", VHOST, "leeds-cc.front-door")
    assert isinstance(door, dict)
    assert (door["configure"], door["write"], door["read"]) == (
        "^$", r"^infoshare\.submit$", r"^infoshare\.inbox\.leeds-cc\.front-door$")
    topics = _api(management, "topic-permissions", VHOST, "leeds-cc.front-door")
    assert topics == [{"user": "leeds-cc.front-door", "vhost": VHOST, "exchange": SUBMIT,
                       "write": "^leeds-cc/front-door$", "read": "^$"}]
    broker = _api(management, "permissions", VHOST, BROKER)
    assert isinstance(broker, dict)
    assert (broker["configure"], broker["write"], broker["read"]) == (
        "^$", r"^infoshare\.deliver$", r"^infoshare\.ingress(\.[a-z0-9-]+\.[a-z0-9-]+)?$")
    assert _api(management, "topic-permissions", VHOST, BROKER) in (None, [])  # none at all
    user = _api(management, "users", "leeds-cc.front-door")
    assert isinstance(user, dict)
    assert user["tags"] in ([], "")


def test_credentials_file_is_private_and_complete(provisioned: Provisioned) -> None:
    path = provisioned.credentials.path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    expected = {amqp_user(u.address) for u in provisioned.directory.units()} | {BROKER}
    assert set(doc) == expected
    assert len(set(doc.values())) == len(doc)  # every user has its own password


# --- idempotence and convergence -------------------------------------------------------


def test_second_run_changes_nothing(management: ManagementAPI,
                                    provisioned: Provisioned) -> None:
    again = provision(management.base_url, "guest", "guest", provisioned.directory,
                      provisioned.credentials, vhost=VHOST)
    assert again == ProvisionReport()


@pytest.mark.parametrize(("password", "tags"), [("something-else", ""), (None, "management")],
                         ids=["password", "tags"])
def test_a_changed_password_or_tag_is_put_right(management: ManagementAPI,
                                                provisioned: Provisioned, connect: Connect,
                                                password: str | None, tags: str) -> None:
    user = amqp_user(POLICE)
    management.put(f"/api/users/{user}",
                   {"password": password or provisioned.credentials.password(user),
                    "tags": tags})
    report = provision(management.base_url, "guest", "guest", provisioned.directory,
                       provisioned.credentials, vhost=VHOST)
    assert report.updated == (f"user {user}",)
    assert report.created == () and report.removed == ()
    found = _api(management, "users", user)
    assert isinstance(found, dict) and found["tags"] in ([], "")
    assert _login(connect, provisioned, POLICE).is_open


def test_a_widened_permission_is_narrowed(management: ManagementAPI,
                                          provisioned: Provisioned) -> None:
    user = amqp_user(SCHOOL)
    management.put(f"/api/permissions/{VHOST}/{user}",
                   {"configure": ".*", "write": ".*", "read": ".*"})
    report = provision(management.base_url, "guest", "guest", provisioned.directory,
                       provisioned.credentials, vhost=VHOST)
    assert report.updated == (f"permissions {user}",)
    found = _api(management, "permissions", VHOST, user)
    assert isinstance(found, dict) and found["read"] == (
        r"^infoshare\.inbox\.leeds-cc\.education-safeguarding$")


def test_a_stray_binding_into_an_inbox_is_removed(management: ManagementAPI,
                                                  provisioned: Provisioned) -> None:
    # An administrator's mistake that would copy the police's mail to the school.
    management.post(f"/api/bindings/{VHOST}/e/{DELIVER}/q/{inbox_name(SCHOOL)}",
                    {"routing_key": POLICE, "arguments": {}})
    management.post(f"/api/bindings/{VHOST}/e/{SUBMIT}/q/{inbox_name(SCHOOL)}",
                    {"routing_key": "", "arguments": {}})
    report = provision(management.base_url, "guest", "guest", provisioned.directory,
                       provisioned.credentials, vhost=VHOST)
    assert sorted(report.removed) == sorted([
        f"binding {DELIVER} -> {inbox_name(SCHOOL)} [{POLICE}]",
        f"binding {SUBMIT} -> {inbox_name(SCHOOL)} []"])
    found = _api(management, "queues", VHOST, inbox_name(SCHOOL), "bindings")
    assert isinstance(found, list)
    assert {(b["source"], b["routing_key"]) for b in found} == {
        ("", inbox_name(SCHOOL)), (DELIVER, SCHOOL)}


def test_a_queue_with_other_arguments_is_refused_and_left_alone(
        management: ManagementAPI, wy_protocol: ProtocolFile,
        vhost_factory: Callable[[str], Credentials]) -> None:
    vhost = "infoshare-test-topology-conflict"
    credentials = vhost_factory(vhost)
    management.put(f"/api/vhosts/{vhost}", {})
    other = {"x-queue-type": "quorum", "x-delivery-limit": 5}
    queue = ingress_name(DOOR)
    management.put(f"/api/queues/{vhost}/{queue}",
                   {"durable": True, "auto_delete": False, "arguments": other})
    with pytest.raises(TopologyConflict) as caught:
        provision(management.base_url, "guest", "guest", _directory(wy_protocol), credentials,
                  vhost=vhost)
    message = str(caught.value)
    assert queue in message and "x-delivery-limit" in message
    assert "x-dead-letter-exchange" in message and "x-overflow" in message
    found = management.get(f"/api/queues/{vhost}/{queue}")
    assert found["arguments"] == other


def test_a_classic_queue_in_the_way_is_refused(
        management: ManagementAPI, wy_protocol: ProtocolFile,
        vhost_factory: Callable[[str], Credentials]) -> None:
    vhost = "infoshare-test-topology-classic"
    credentials = vhost_factory(vhost)
    management.put(f"/api/vhosts/{vhost}", {})
    management.put(f"/api/queues/{vhost}/{inbox_name(DOOR)}",
                   {"durable": True, "auto_delete": False, "arguments": {}})
    with pytest.raises(TopologyConflict, match="x-queue-type"):
        provision(management.base_url, "guest", "guest", _directory(wy_protocol), credentials,
                  vhost=vhost)


# --- units leaving the directory -------------------------------------------------------


def test_a_removed_unit_loses_its_user_and_keeps_a_non_empty_inbox(
        management: ManagementAPI, connect: Connect,
        vhost_factory: Callable[[str], Credentials]) -> None:
    vhost = "infoshare-test-topology-removal"
    credentials = vhost_factory(vhost)
    door, police, school_unit = "removal-a/door", "removal-b/police", "removal-a/school"
    # Its own broker user too: a user's password is node-wide.
    broker_user = "infoshare-broker-removal"
    provision(management.base_url, "guest", "guest", _synthetic(door, police, school_unit),
              credentials, vhost=vhost, broker_user=broker_user)
    # A message waits in the police inbox; the school is connected and idle.
    broker = connect(broker_user, credentials.password(broker_user), vhost).channel()
    broker.confirm_delivery()
    broker.basic_publish(DELIVER, police, b"{}", pika.BasicProperties(delivery_mode=2),
                         mandatory=True)
    school_user = amqp_user(school_unit)
    school_password = credentials.password(school_user)
    school = connect(school_user, school_password, vhost)

    report = provision(management.base_url, "guest", "guest",
                       _synthetic(door), credentials, vhost=vhost,
                       broker_user=broker_user)

    police_user = amqp_user(police)
    assert set(report.removed) == {
        f"permissions {police_user}", f"user {police_user}", f"permissions {school_user}",
        f"user {school_user}", f"topic permissions {police_user}",
        f"topic permissions {school_user}",
        f"binding {DELIVER} -> {inbox_name(police)} [{police}]",
        f"binding {DELIVER} -> {inbox_name(school_unit)} [{school_unit}]",
        f"binding {SUBMIT} -> {ingress_name(police)} [{police}]",
        f"binding {SUBMIT} -> {ingress_name(school_unit)} [{school_unit}]",
        f"queue {inbox_name(school_unit)}", f"queue {ingress_name(police)}",
        f"queue {ingress_name(school_unit)}"}
    assert report.kept == (f"queue {inbox_name(police)} (1 messages, 0 consumers)",)
    assert report.created == () and report.updated == ()
    assert management.get(f"/api/users/{police_user}") is None
    assert credentials.get(police_user) is None and credentials.get(school_user) is None
    # The kept inbox is unbound: nothing new reaches it, and the router's
    # mandatory publish to it comes back to be dead-lettered.
    assert management.get(f"/api/queues/{vhost}/{inbox_name(school_unit)}") is None
    with pytest.raises(pika.exceptions.UnroutableError):
        broker.basic_publish(DELIVER, police, b"{}", pika.BasicProperties(delivery_mode=2),
                             mandatory=True)
    remaining = connect("guest", "guest", vhost).channel().queue_declare(
        inbox_name(police), passive=True).method.message_count
    assert remaining == 1
    # The school's open connection was closed, and it cannot log in again.
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker):
        school.process_data_events(time_limit=5)
        school.channel()
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        connect(school_user, school_password, vhost)

    again = provision(management.base_url, "guest", "guest",
                      _synthetic(door), credentials, vhost=vhost,
                       broker_user=broker_user)
    assert not again.changed
    assert again.kept == report.kept


def test_a_user_still_used_by_another_vhost_only_loses_its_permissions_here(
        management: ManagementAPI, vhost_factory: Callable[[str], Credentials]) -> None:
    first, second = "infoshare-test-topology-shared-1", "infoshare-test-topology-shared-2"
    credentials = vhost_factory(first)
    vhost_factory(second)
    unit = "shared-org/door"
    only_door = _synthetic(unit)
    provision(management.base_url, "guest", "guest", only_door, credentials, vhost=first,
              broker_user="infoshare-broker-shared")
    provision(management.base_url, "guest", "guest", only_door, credentials, vhost=second,
              broker_user="infoshare-broker-shared")
    nobody = _synthetic()
    report = provision(management.base_url, "guest", "guest", nobody, credentials,
                       vhost=first,
              broker_user="infoshare-broker-shared")
    user = amqp_user(unit)
    assert f"permissions {user}" in report.removed
    assert f"user {user}" not in report.removed
    assert management.get(f"/api/users/{user}") is not None
    assert management.get(f"/api/permissions/{second}/{user}") is not None


# --- rights (wire spec 5) --------------------------------------------------------------


PROPS = pika.BasicProperties(delivery_mode=2, content_type="application/json",
                             type="envelope")


def _confirming(ch: BlockingChannel) -> BlockingChannel:
    ch.confirm_delivery()
    return ch


def test_a_unit_publishes_to_submit_and_the_broker_reads_it_from_its_ingress_queue(
        provisioned: Provisioned, connect: Connect) -> None:
    door = _confirming(_login(connect, provisioned, DOOR))
    door.basic_publish(SUBMIT, DOOR, b"{}", pika.BasicProperties(
        user_id=amqp_user(DOOR), delivery_mode=2), mandatory=True)
    broker = _login(connect, provisioned, BROKER)
    assert broker.basic_get(ingress_name(POLICE), auto_ack=True)[0] is None
    method, props, body = broker.basic_get(ingress_name(DOOR), auto_ack=True)
    assert method is not None and props.user_id == amqp_user(DOOR) and body == b"{}"


@pytest.mark.parametrize("routing_key", [POLICE, "", "#", "leeds-cc/*", f"{DOOR}.x"],
                         ids=["another-unit", "empty", "hash", "star", "longer"])
def test_a_unit_publishes_only_with_its_own_address(provisioned: Provisioned,
                                                     connect: Connect, routing_key: str) -> None:
    # Topic permissions: nobody can fill another unit's ingress queue (and so slow
    # its messages) by publishing with that unit's address.
    door = _confirming(_login(connect, provisioned, DOOR))
    _refused(403, lambda: door.basic_publish(SUBMIT, routing_key, b"{}", pika.BasicProperties(
        user_id=amqp_user(DOOR), delivery_mode=2), mandatory=True))


def test_what_no_units_queue_takes_reaches_the_shared_ingress_queue(
        management: ManagementAPI, provisioned: Provisioned, connect: Connect) -> None:
    # A user that is no unit's (an operator's mistake) may still write to submit: what
    # it publishes reaches the router through infoshare.ingress, to be refused and logged.
    stray = "stray-operator-user"
    management.put(f"/api/users/{stray}", {"password": "stray-pass-1234", "tags": ""})
    try:
        management.put(f"/api/permissions/{VHOST}/{stray}",
                       {"configure": "^$", "write": "^infoshare\\.submit$", "read": "^$"})
        ch = _confirming(connect(stray, "stray-pass-1234", VHOST).channel())
        ch.basic_publish(SUBMIT, "anything", b"{}", pika.BasicProperties(
            user_id=stray, delivery_mode=2), mandatory=True)
        method, props, _ = _login(connect, provisioned, BROKER).basic_get(INGRESS,
                                                                           auto_ack=True)
        assert method is not None and props.user_id == stray
        report = provision(management.base_url, "guest", "guest", provisioned.directory,
                           provisioned.credentials, vhost=VHOST)
        assert report.kept == (f"permissions {stray} (not managed by infoshare)",)
    finally:
        management.delete(f"/api/users/{stray}")


def test_a_full_ingress_queue_refuses_that_unit_alone(
        management: ManagementAPI, connect: Connect,
        vhost_factory: Callable[[str], Credentials]) -> None:
    vhost = "infoshare-test-topology-overflow"
    credentials = vhost_factory(vhost)
    flooder, other = "overflow-a/door", "overflow-b/door"
    broker_user = "infoshare-broker-overflow"
    provision(management.base_url, "guest", "guest", _synthetic(flooder, other), credentials,
              vhost=vhost, broker_user=broker_user)
    # A limit low enough to reach in a test; the arguments are otherwise provisioning's.
    management.put(f"/api/policies/{vhost}/small-ingress",
                   {"pattern": "^infoshare\\.ingress\\.", "apply-to": "queues",
                    "definition": {"max-length": 3}})
    channel = _confirming(connect(amqp_user(flooder), credentials.password(amqp_user(flooder)),
                                  vhost).channel())
    props = pika.BasicProperties(user_id=amqp_user(flooder), delivery_mode=2)

    accepted = 0
    with pytest.raises(pika.exceptions.NackError):
        for _ in range(10):
            channel.basic_publish(SUBMIT, flooder, b"{}", props, mandatory=True)
            accepted += 1
    # A quorum queue checks its length before it enqueues: it takes one past the limit.
    assert accepted in (3, 4)
    others = _confirming(connect(amqp_user(other), credentials.password(amqp_user(other)),
                                 vhost).channel())
    others.basic_publish(SUBMIT, other, b"{}", pika.BasicProperties(
        user_id=amqp_user(other), delivery_mode=2), mandatory=True)


def test_a_unit_reads_its_own_inbox(provisioned: Provisioned, connect: Connect) -> None:
    broker = _confirming(_login(connect, provisioned, BROKER))
    broker.basic_publish(DELIVER, DOOR, b"{}", PROPS, mandatory=True)
    method, _, body = _login(connect, provisioned, DOOR).basic_get(inbox_name(DOOR),
                                                                   auto_ack=True)
    assert method is not None and body == b"{}"


def test_a_unit_cannot_consume_another_units_inbox(provisioned: Provisioned,
                                                  connect: Connect) -> None:
    door = _login(connect, provisioned, DOOR)
    _refused(403, lambda: door.basic_get(inbox_name(POLICE)))
    door = _login(connect, provisioned, DOOR)
    _refused(403, lambda: door.basic_consume(inbox_name(POLICE), lambda *a: None))


def test_a_unit_cannot_read_ingress_or_the_dead_letters(provisioned: Provisioned,
                                                        connect: Connect) -> None:
    for queue in (INGRESS, ingress_name(DOOR), ingress_name(POLICE), DEAD_LETTER):
        door = _login(connect, provisioned, DOOR)
        _refused(403, lambda ch=door, q=queue: ch.basic_get(q))


@pytest.mark.parametrize(("exchange", "routing_key"), [
    (DELIVER, POLICE),                 # straight into another unit's inbox
    ("", inbox_name(POLICE)),          # through the default exchange
    ("", inbox_name(DOOR)),            # even into its own inbox, bypassing the broker
    (DEAD, ""),
    ("amq.direct", POLICE),
])
def test_a_unit_cannot_publish_around_the_broker(provisioned: Provisioned, connect: Connect,
                                                 exchange: str, routing_key: str) -> None:
    door = _confirming(_login(connect, provisioned, DOOR))
    _refused(403, lambda: door.basic_publish(exchange, routing_key, b"{}", pika.BasicProperties(
        user_id=amqp_user(DOOR), delivery_mode=2), mandatory=True))


def test_a_unit_cannot_publish_as_another_unit(provisioned: Provisioned,
                                               connect: Connect) -> None:
    door = _confirming(_login(connect, provisioned, DOOR))
    _refused(406, lambda: door.basic_publish(SUBMIT, DOOR, b"{}", pika.BasicProperties(
        user_id=amqp_user(POLICE), delivery_mode=2), mandatory=True))


@pytest.mark.parametrize("action", [
    "queue_declare", "exchange_declare", "queue_bind", "queue_delete", "queue_purge",
])
def test_a_unit_cannot_configure_anything(provisioned: Provisioned, connect: Connect,
                                          action: str) -> None:
    door = _login(connect, provisioned, DOOR)
    actions: dict[str, Callable[[], object]] = {
        "queue_declare": lambda: door.queue_declare("mine", durable=True),
        "exchange_declare": lambda: door.exchange_declare("mine", "fanout"),
        # Binding its own inbox to receive the police's mail too.
        "queue_bind": lambda: door.queue_bind(inbox_name(DOOR), DELIVER, POLICE),
        "queue_delete": lambda: door.queue_delete(inbox_name(DOOR)),
        "queue_purge": lambda: door.queue_purge(inbox_name(POLICE)),
    }
    _refused(403, actions[action])


def test_the_broker_cannot_read_inboxes(provisioned: Provisioned, connect: Connect) -> None:
    broker = _login(connect, provisioned, BROKER)
    _refused(403, lambda: broker.basic_get(inbox_name(DOOR)))


def test_the_broker_cannot_publish_to_submit_or_configure(provisioned: Provisioned,
                                                          connect: Connect) -> None:
    broker = _confirming(_login(connect, provisioned, BROKER))
    _refused(403, lambda: broker.basic_publish(SUBMIT, "", b"{}", PROPS, mandatory=True))
    broker = _login(connect, provisioned, BROKER)
    _refused(403, lambda: broker.queue_declare("mine", durable=True))
