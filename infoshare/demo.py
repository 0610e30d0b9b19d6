"""``infoshare demo``: the whole system on one machine, then an audit of what it did.

Starts a private RabbitMQ node, the registry on SQLite (served over HTTP), and
a router; loads the West Yorkshire protocol; generates keys for a few units
and a manager; provisions RabbitMQ; runs a scripted exchange between West
Yorkshire agencies; prints what happened and an audit of the transfer log.
Everything it makes lives under one home directory; nothing is left running
unless ``--keep-running`` is given.

The records in the scenario are invented; the demo prints codes and ids only.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from agency.client import AgencyClient
from agency.deployment import Deployment
from audit import export as audit_export
from audit import replay as audit_replay
from audit import report as audit_report
from audit import verify as audit_verify
from broker.node import NodeConfig, RabbitNode
from broker.router import DirectoryHolder, Router
from broker.topology import Credentials, amqp_url_for, provision
from broker.transfer_log import TransferLog
from keys import EncryptionKeyPair, NoteSigner, SigningKeyPair, new_keys, write_public_key
from protocols.envelope import Notice
from protocols.model import Consent, GroundId, amqp_user
from registry.app import create_app
from registry.changes import KeyOwner
from registry.client import RegistryClient
from registry.datadir import create_data_dir
from registry.store import Store

ORIGIN = "wy-iisp.example/transfer-log"
PROTOCOL = "wy-iisp-2016"
PROTOCOL_FILE = Path(__file__).resolve().parent.parent / "protocols" / "definitions" / (
    "west-yorkshire-iisp-2016.yaml")

#: The units that take part in the scripted exchange.
UNITS = (
    "leeds-cc/childrens-social-care",
    "leeds-cc/front-door",
    "leeds-cc/early-help",
    "leeds-cc/education-safeguarding",
    "leeds-cc/safeguarding-partnership",
    "wy-police/safeguarding-hub",
    "wy-police/intelligence-bureau",
    "bradford-mdc/front-door",
)
MANAGER = ("leeds-cc", "leeds-cc-mgr-01", "Head of Service, Children's Social Care")


@dataclass
class Unit:
    address: str
    signing: SigningKeyPair
    encryption: EncryptionKeyPair
    client: AgencyClient | None = None


@dataclass
class Outcome:
    step: str
    message_id: str
    kind: str
    sender: str
    recipient: str
    purpose: str
    decision: str
    reason: str | None


def _say(text: str) -> None:
    click.echo(text)


@contextmanager
def _serve_registry(store: Store, session_secret: str) -> Iterator[str]:
    """Serve the registry over real HTTP from a thread, for the length of the demo."""
    from werkzeug.serving import make_server

    # The demo prints its own account; one access log line per request is noise here.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app({"REGISTRY_STORE": store, "SECRET_KEY": session_secret})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="registry", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def run_demo(home: Path, *, keep_running: bool = False, fresh: bool = True) -> int:
    """Run the demo under ``home``; returns the exit status (0 when the audit is clean)."""
    if fresh and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(microsecond=0)

    _say(f"infoshare demo in {home}")
    _say("1. starting a private RabbitMQ node ...")
    # The pid in the node name lets two demos (or a demo and the tests) run at once.
    node = RabbitNode(NodeConfig.in_directory(home / "rabbitmq",
                                              name=f"infoshare-demo-{os.getpid()}"))
    node.start()
    try:
        return _with_node(home, node, now, keep_running)
    finally:
        if not keep_running:
            node.stop()
            _say("   RabbitMQ node stopped")


def _with_node(home: Path, node: RabbitNode, now: datetime, keep_running: bool) -> int:
    _say(f"   AMQP {node.config.amqp_port}, management {node.management_url}")

    _say("2. registry on SQLite: loading the West Yorkshire protocol ...")
    registry_dir = home / "registry"
    # The demo's secrets are made here and kept under its home; a real deployment
    # takes the passphrase from its operators (INFOSHARE_REGISTRY_PASSPHRASE).
    passphrase = secrets.token_urlsafe(24).encode("ascii")
    data_dir, signing = create_data_dir(registry_dir, passphrase)
    registry_key = signing.public
    store = Store(data_dir.database_url, signing_key=signing)
    store.create_tables()
    admin_id, _ = store.create_token("admin", "demo information governance officer",
                                     actor="demo:setup")
    store.initialise(actor=f"token:{admin_id}")
    tokens = {role: store.create_token(role, f"demo {role}", actor=f"token:{admin_id}")[1]
              for role in ("auditor", "agency")}
    store.load_protocol(PROTOCOL_FILE.read_text(encoding="utf-8"), actor=f"token:{admin_id}")

    # Keys and their public key files, registered as an administrator would:
    # each file says whose key it is and proves its holder has it.
    valid_from = now - timedelta(minutes=1)
    ig_officer = f"token:{admin_id}"
    broker_keys = new_keys("broker", "broker")
    broker_key = broker_keys.signing
    store.register_keys(KeyOwner("broker", "broker"), broker_keys.files, valid_from,
                        actor=ig_officer)
    units: dict[str, Unit] = {}
    for addr in UNITS:
        made = new_keys("unit", addr)
        assert made.encryption is not None
        store.register_keys(KeyOwner("unit", addr), made.files, valid_from, actor=ig_officer)
        units[addr] = Unit(addr, made.signing, made.encryption)
    org, manager_id, title = MANAGER
    store.register_manager(manager_id, org, title, actor=ig_officer)
    manager_keys = new_keys("manager", org, manager_id)
    manager_key = manager_keys.signing
    store.register_keys(store.manager_keys(manager_id), manager_keys.files, valid_from,
                        actor=ig_officer)
    _say(f"   registry version {store.directory().version}: {len(units)} units, one manager")

    with _serve_registry(store, data_dir.session_secret()) as registry_url:
        _say(f"   serving the registry at {registry_url}")
        agency_token = tokens["agency"]
        registry = RegistryClient(registry_url, agency_token, registry_key)
        directory = registry.directory()

        _say("3. provisioning RabbitMQ: exchanges, quorum queues, one user per unit ...")
        credentials = Credentials(home / "credentials.json")
        provision(node.management_url, "guest", "guest", directory, credentials)
        amqp_base = node.amqp_url

        deployment = Deployment(
            amqp_url=amqp_base, vhost="infoshare", registry_url=registry_url,
            registry_key=str(registry_dir / "registry-key.pub"),
            broker_key=str(home / "broker-key.pub"),
            credentials=str(home / "credentials.json"), agency_token=agency_token,
        )
        write_public_key(home / "broker-key.pub", broker_key.public)
        deployment.save(home)

        _say("4. starting the router ...")
        log_path = home / "transfer-log.db"
        transfer_log = TransferLog.open(f"sqlite:///{log_path}",
                                        signer=NoteSigner(ORIGIN, broker_key), origin=ORIGIN)
        router = Router(
            amqp_url=amqp_url_for(amqp_base, "infoshare-broker",
                                  credentials.password("infoshare-broker"), "infoshare"),
            transfer_log=transfer_log,
            directory=DirectoryHolder(registry.directory),
            broker_key=broker_key,
        )
        router_thread = threading.Thread(target=router.run, name="router", daemon=True)
        router_thread.start()
        if not router.ready.wait(30):
            raise click.ClickException("the router did not start")

        for unit in units.values():
            user = amqp_user(unit.address)
            unit.client = AgencyClient(
                unit=unit.address,  # type: ignore[arg-type]
                amqp_url=amqp_url_for(amqp_base, user, credentials.password(user), "infoshare"),
                signing_key=unit.signing, encryption_keys=[unit.encryption],
                directory=registry.directory, broker_key=broker_key.public,
                state_dir=home / "agencies" / user / "state",
            )

        _say("5. the exchange:")
        outcomes = _scenario(home, units, manager_key)
        router.stop()
        router_thread.join(timeout=30)
        transfer_log.checkpoint(datetime.now(UTC))

        _say("")
        _say(f"   {'step':<44} {'kind':<9} {'purpose':<22} decision")
        for o in outcomes:
            _say(f"   {o.step:<44} {o.kind:<9} {o.purpose:<22} {o.decision}"
                 + (f" ({o.reason})" if o.reason else ""))

        receipts = [e for e in (json.loads(b) for b in transfer_log.entries())
                    if e["kind"] == "receipt"]
        routed = sum(1 for e in receipts if e["decision"] == "routed")
        _say(f"   and {routed} of {len(receipts)} signed receipts, sent back by the units "
             "that opened the messages, routed")

        _say("")
        _say("6. audit: export, verify, replay, report ...")
        auditor = RegistryClient(registry_url, tokens["auditor"], registry_key)
        export_dir = home / "audit-export"
        audit_export(transfer_log, export_dir, directories=auditor.signed_directory,
                     registry_key=registry_key)
        result = audit_verify(export_dir)
        _say(f"   verify: {result.summary()}")
        mismatches = audit_replay(export_dir)
        _say(f"   replay: {len(mismatches)} decisions differ from a re-run of the policy")
        report = audit_report(export_dir)
        for line in report.summary_lines():
            _say(f"   {line}")
        _say(f"   export written to {export_dir}")
        transfer_log.close()
        ok = result.ok and not mismatches
        if keep_running:
            _say("--keep-running: the RabbitMQ node stays up; stop it with "
                 f"`infoshare node stop --data-dir {home / 'rabbitmq'}`")
        return 0 if ok else 1


def _wait_notice(client: AgencyClient, message_id: str, timeout: float = 20.0) -> Notice:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client.receive(client.state_dir.parent / "inbox", idle_timeout=0.3)
        found = client.notices(message_id)
        if found:
            return found[-1]
    raise click.ClickException(f"no notice for {message_id} within {timeout:.0f}s")


def _scenario(home: Path, units: dict[str, Unit], manager_key: SigningKeyPair) -> list[Outcome]:
    out: list[Outcome] = []

    def client(addr: str) -> AgencyClient:
        c = units[addr].client
        assert c is not None
        return c

    def send(step: str, sender: str, **kw: object) -> str:
        sent = client(sender).send(**kw)  # type: ignore[arg-type]
        notice = _wait_notice(client(sender), sent.message_id)
        out.append(Outcome(step, sent.message_id, str(kw["kind"]), sender, str(kw["recipient"]),
                           str(kw["purpose"]), notice.decision, notice.reason))
        _say(f"   - {step}: {notice.decision}" + (f" ({notice.reason})" if notice.reason else ""))
        return sent.message_id

    def receive(addr: str) -> None:
        client(addr).receive(home / "agencies" / amqp_user(addr) / "inbox", idle_timeout=0.5)

    # A Leeds social worker shares intelligence about a risk to a child with the police.
    send("Leeds CSC -> police intelligence (referral)", "leeds-cc/childrens-social-care",
         kind="referral", protocol=PROTOCOL, purpose="police-intelligence",
         recipient="wy-police/intelligence-bureau",
         record={"identity": {"child_ref": "LCC-C-000123"},
                 "concern": {"summary": "Adults not known to the family seen at the address"}},
         reasons="Possible exploitation; police hold the relevant intelligence",
         consent=Consent("not_sought", GroundId("serious-crime")), subject_informed=False)
    receive("wy-police/intelligence-bureau")

    # Police open a section 47 strategy discussion and ask Leeds' front door.
    request_id = send("police -> Leeds front door (s47 request)", "wy-police/safeguarding-hub",
                      kind="request", protocol=PROTOCOL, purpose="section-47-enquiry",
                      recipient="leeds-cc/front-door",
                      record={"identity": {"child_ref": "WYP-C-778"}},
                      reasons="Strategy discussion convened today",
                      consent=Consent("not_sought", GroundId("child-significant-harm")),
                      subject_informed=False)
    receive("leeds-cc/front-door")
    send("Leeds front door -> police (s47 response)", "leeds-cc/front-door",
         kind="response", protocol=PROTOCOL, purpose="section-47-enquiry",
         recipient="wy-police/safeguarding-hub", in_reply_to=request_id,
         record={"household": {"members": 4}, "concern": {"open_plan": "child in need"}},
         reasons="Relevant to the strategy discussion",
         consent=Consent("not_sought", GroundId("child-significant-harm")),
         subject_informed=False)
    receive("wy-police/safeguarding-hub")

    # A school refers to early help without consent: the protocol requires consent.
    send("school -> Leeds early help, no consent", "leeds-cc/education-safeguarding",
         kind="referral", protocol=PROTOCOL, purpose="early-help",
         recipient="leeds-cc/early-help",
         record={"identity": {"child_ref": "SCH-0042"}, "education": {"attendance": "falling"}},
         reasons="Attendance concerns", consent=Consent("not_sought", GroundId(
             "child-significant-harm")), subject_informed=True, precheck=False)

    # A case review asks the police for records; the police decline.
    review_id = send("partnership -> police (case review request)",
                     "leeds-cc/safeguarding-partnership", kind="request", protocol=PROTOCOL,
                     purpose="case-review-records", recipient="wy-police/safeguarding-hub",
                     record={"identity": {"child_ref": "CSPR-2026-07"}},
                     reasons="Rapid review",
                     consent=Consent("not_sought", GroundId("child-significant-harm")),
                     subject_informed=True, approvals=[manager_key])
    receive("wy-police/safeguarding-hub")
    send("police -> partnership (declined)", "wy-police/safeguarding-hub", kind="declined",
         protocol=PROTOCOL, purpose="case-review-records",
         recipient="leeds-cc/safeguarding-partnership", in_reply_to=review_id, record={},
         reasons="Disclosure would prejudice an ongoing investigation", consent=None,
         subject_informed=True)
    receive("leeds-cc/safeguarding-partnership")
    # Receipts sent by the receiving units are routed too; collect their notices.
    for addr in UNITS:
        receive(addr)
    time.sleep(0.5)
    for addr in UNITS:
        receive(addr)
    return out


@click.command()
@click.option("--home", type=click.Path(path_type=Path), default=Path("var/demo"),
              show_default=True, help="Where the demo keeps its node, registry, log and keys.")
@click.option("--keep-running", is_flag=True, help="Leave the RabbitMQ node running afterwards.")
def demo(home: Path, keep_running: bool) -> None:
    """Run the West Yorkshire demo end to end, then audit the transfer log."""
    status = run_demo(home.resolve(), keep_running=keep_running)
    if status:
        raise SystemExit(status)


__all__ = ["demo", "run_demo"]
