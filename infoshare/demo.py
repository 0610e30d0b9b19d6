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
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from agency.client import AgencyClient
from agency.gateway.home import GatewayHome
from audit import export as audit_export
from audit import replay as audit_replay
from audit import report as audit_report
from audit import verify as audit_verify
from broker.host_config import BrokerConfig
from broker.node import NodeConfig, RabbitNode
from broker.router import DirectoryHolder, Router
from broker.topology import Credentials, amqp_url_for, provision
from broker.transfer_log import TransferLog
from infoshare.gateways import AccountSpec, RegistryAdmin, RunningGateway, start_gateway
from keys import NoteSigner, new_keys, write_public_key
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
MANAGER_ACCOUNT = AccountSpec("dana.manager", "leeds-cc/safeguarding-partnership", "manager",
                              "demo-manager-pw", manager_id="leeds-cc-mgr-01",
                              manager_passphrase="demo-manager-passphrase")
#: Sign-ins the demo makes (invented people; local accounts, printed with --keep-running).
ACCOUNTS = {
    "leeds-cc": (
        AccountSpec("sam.teacher", "leeds-cc/education-safeguarding", "practitioner",
                    "demo-practitioner-pw"),
        AccountSpec("ali.manager", "leeds-cc/education-safeguarding", "manager",
                    "demo-manager-pw", manager_id="leeds-cc-mgr-02",
                    manager_passphrase="demo-manager-passphrase"),
        MANAGER_ACCOUNT,
    ),
    "wy-police": (
        AccountSpec("pat.officer", "wy-police/marac-coordinator", "practitioner",
                    "demo-practitioner-pw"),
    ),
}


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
        # With --keep-running this is reached only once Ctrl-C stopped the rest.
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
    admin_id, admin_token = store.create_token("admin", "demo information governance officer",
                                               actor="demo:setup")
    store.initialise(actor=f"token:{admin_id}")
    tokens = {role: store.create_token(role, f"demo {role}", actor=f"token:{admin_id}")[1]
              for role in ("auditor", "agency")}
    store.load_protocol(PROTOCOL_FILE.read_text(encoding="utf-8"), actor=f"token:{admin_id}")

    # The broker's key and its public key file, registered as an administrator would:
    # the file says whose key it is and proves its holder has it. The units' and the
    # managers' keys are made by their gateways and registered through the API below.
    broker_keys = new_keys("broker", "broker")
    broker_key = broker_keys.signing
    store.register_keys(KeyOwner("broker", "broker"), broker_keys.files,
                        now - timedelta(minutes=1), actor=f"token:{admin_id}")

    with _serve_registry(store, data_dir.session_secret()) as registry_url:
        _say(f"   serving the registry at {registry_url}")
        agency_token = tokens["agency"]
        registry = RegistryClient(registry_url, agency_token, registry_key)
        directory = registry.directory()

        _say("3. provisioning RabbitMQ: exchanges, quorum queues, one user per unit ...")
        credentials = Credentials(home / "credentials.json")
        provision(node.management_url, "guest", "guest", directory, credentials)
        amqp_base = node.amqp_url

        # The broker host's configuration, as broker init writes it: the bundles read it.
        write_public_key(home / "broker.signing.pub", broker_key.public)
        BrokerConfig(home=home, origin=ORIGIN, amqp_urls=(node.url,),
                     management_url=node.management_url, vhost="infoshare", tls_ca=None,
                     registry_url=registry_url, registry_key=registry_dir / "registry-key.pub",
                     log_database={"url": f"sqlite:///{home / 'transfer-log.db'}"}).save()

        _say("4. two gateways, each from its organisation's bundle: Leeds and the police ...")
        passphrase = secrets.token_urlsafe(24).encode("ascii")
        # The administrator registers each gateway's public key files, and gives it a
        # token, through the registry's API.
        admin = RegistryAdmin(registry_url, admin_token)
        gateways = {
            org: start_gateway(home=home / "gateways" / org, org=org, broker_home=home,
                               registry=admin, passphrase=passphrase,
                               valid_from=now - timedelta(minutes=1), accounts=accounts,
                               case_units=tuple(u for u in UNITS if u.startswith(org + "/")))
            for org, accounts in ACCOUNTS.items()}
        for gw in gateways.values():
            _say(f"   {gw.org}: {gw.url} ({len(gw.tokens)} case systems)")
        # To follow docs/gateway.md on this machine: an agency token for a third gateway,
        # and the administrator's token, to register its keys through the API.
        (home / "tokens").mkdir(mode=0o700, exist_ok=True)
        for name, secret in (
                ("kirklees-mbc-gateway.token",
                 admin.post("/tokens", {"role": "agency",
                                        "label": "gateway kirklees-mbc"})["secret"]),
                ("admin.token", admin_token)):
            fd = os.open(home / "tokens" / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(secret + "\n")
        _say(f"   registry version {store.directory().version}: unit keys registered")

        _say("5. starting the router ...")
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

        _say("6. the exchange, through the gateways' API:")
        try:
            outcomes = _scenario(home, gateways, passphrase, broker_key.public)
        except BaseException:
            for gw in gateways.values():
                gw.stop()
            router.stop()
            raise
        if not keep_running:
            for gw in gateways.values():
                gw.stop()
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
        _say("7. audit: export, verify, replay, report ...")
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
        ok = result.ok and not mismatches
        if keep_running:
            _say("")
            _say("--keep-running: the gateways, the registry, the router and the RabbitMQ "
                 "node stay up until Ctrl-C")
            for org, gw in gateways.items():
                _say(f"   {org} gateway: {gw.url}/")
                for spec in ACCOUNTS[org]:
                    _say(f"     sign in as {spec.username} / {spec.password} ({spec.role}, "
                         f"{spec.unit})" + (f"; manager passphrase {spec.manager_passphrase}"
                                            if spec.manager_passphrase else ""))
            # Ctrl-C, or SIGTERM (a background job ignores SIGINT), stops everything.
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                _say("stopping ...")
            for gw in gateways.values():
                gw.stop()
            router.stop()
            router_thread.join(timeout=30)
        transfer_log.close()
        return 0 if ok else 1


def _wait_status(gw: RunningGateway, unit: str, message_id: str,
                 want: tuple[str, ...]) -> dict[str, Any]:
    try:
        return gw.wait_status(unit, message_id, want)
    except TimeoutError as e:
        raise click.ClickException(str(e)) from e


def _wait_inbox(gw: RunningGateway, unit: str, message_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _ = gw.call(unit, "GET", f"/inbox/{message_id}")
        if status == 200:
            return
        time.sleep(0.1)
    raise click.ClickException(f"{message_id} did not reach {unit}")


def _scenario(home: Path, gateways: dict[str, RunningGateway], passphrase: bytes,
              broker_public: bytes) -> list[Outcome]:
    out: list[Outcome] = []
    leeds, police = gateways["leeds-cc"], gateways["wy-police"]

    def send(step: str, gw: RunningGateway, sender: str, body: dict[str, Any],
             approve: tuple[str, str] | None = None) -> str:
        status, doc = gw.call(sender, "POST", "/messages", body)
        if status != 202:
            raise click.ClickException(f"{step}: {status} {doc.get('reason')} "
                                       f"{doc.get('message')}")
        mid = str(doc["message_id"])
        if approve is not None:
            username, manager_passphrase = approve
            manager = gw.gateway.store.account(username)
            assert manager is not None
            gw.gateway.approve(mid, manager, manager_passphrase)
            _say(f"   - {step}: waited for a manager, approved and countersigned")
        final = _wait_status(gw, sender, mid, ("routed", "refused", "receipted"))
        decision = "refused" if final["status"] == "refused" else "routed"
        out.append(Outcome(step, mid, body["kind"], sender, body["recipient"], body["purpose"],
                           decision, final.get("reason")))
        _say(f"   - {step}: {decision}" + (f" ({final['reason']})" if final.get("reason")
                                            else "") + f", log #{final['seq']}")
        return mid

    def fetch(gw: RunningGateway, unit: str, mid: str) -> None:
        _wait_inbox(gw, unit, mid)

    # A Leeds social worker shares intelligence about a risk to a child with the police.
    intel = send("Leeds CSC -> police intelligence (referral)", leeds,
                 "leeds-cc/childrens-social-care",
                 {"kind": "referral", "protocol": PROTOCOL, "purpose": "police-intelligence",
                  "recipient": "wy-police/intelligence-bureau",
                  "record": {"identity": {"child_ref": "LCC-C-000123"},
                             "concern": {"summary": "Adults not known to the family seen at "
                                                    "the address"}},
                  "reasons": "Possible exploitation; police hold the relevant intelligence",
                  "consent": "not_sought", "ground": "serious-crime",
                  "subject_informed": False, "case_reference": "LCC-C-000123"})
    fetch(police, "wy-police/intelligence-bureau", intel)

    # Police open a section 47 strategy discussion and ask Leeds' front door.
    request_id = send("police -> Leeds front door (s47 request)", police,
                      "wy-police/safeguarding-hub",
                      {"kind": "request", "protocol": PROTOCOL,
                       "purpose": "section-47-enquiry", "recipient": "leeds-cc/front-door",
                       "record": {"identity": {"child_ref": "WYP-C-778"}},
                       "reasons": "Strategy discussion convened today",
                       "consent": "not_sought", "ground": "child-significant-harm",
                       "subject_informed": False})
    fetch(leeds, "leeds-cc/front-door", request_id)
    response_id = send("Leeds front door -> police (s47 response)", leeds,
                       "leeds-cc/front-door",
                       {"kind": "response", "protocol": PROTOCOL,
                        "purpose": "section-47-enquiry",
                        "recipient": "wy-police/safeguarding-hub", "in_reply_to": request_id,
                        "record": {"household": {"members": 4},
                                   "concern": {"open_plan": "child in need"}},
                        "reasons": "Relevant to the strategy discussion",
                        "consent": "not_sought", "ground": "child-significant-harm",
                        "subject_informed": False})
    fetch(police, "wy-police/safeguarding-hub", response_id)

    # A school refers to early help without consent: the gateway refuses it before
    # anything is sent; a client that skips the check is refused by the broker too.
    school = "leeds-cc/education-safeguarding"
    early = {"kind": "referral", "protocol": PROTOCOL, "purpose": "early-help",
             "recipient": "leeds-cc/early-help",
             "record": {"identity": {"child_ref": "SCH-0042"},
                        "education": {"attendance": "falling"}},
             "reasons": "Attendance concerns", "consent": "not_sought",
             "ground": "child-significant-harm", "subject_informed": True}
    status, doc = leeds.call(school, "POST", "/messages", early)
    _say(f"   - the Leeds gateway refuses the school's early-help referral first: {status} "
         f"{doc.get('reason')}: {doc.get('message')}")
    keys = GatewayHome(leeds.home).unit_keys(school, passphrase)
    bundle = GatewayHome(leeds.home).bundle()
    with AgencyClient(
            unit=school,  # type: ignore[arg-type]
            amqp_url=[amqp_url_for(n, amqp_user(school), bundle.password(school),
                                   bundle.vhost) for n in bundle.amqp_nodes],
            signing_key=keys.signing, encryption_keys=keys.encryption,
            directory=leeds.gateway.directory.get, broker_key=broker_public,
            state_dir=home / "unchecked-client" / "state") as bare:
        sent = bare.send(kind="referral", protocol=PROTOCOL, purpose="early-help",
                         recipient="leeds-cc/early-help", record=early["record"],  # type: ignore[arg-type]
                         reasons="Attendance concerns",
                         consent=Consent("not_sought", GroundId("child-significant-harm")),
                         subject_informed=True, precheck=False)
    # The broker's notice comes to the school's queue, which the Leeds gateway reads.
    notice = _wait_notice(leeds.gateway.client(school), sent.message_id)
    out.append(Outcome("school -> Leeds early help, no consent", sent.message_id, "referral",
                       school, "leeds-cc/early-help", "early-help", notice.decision,
                       notice.reason))
    _say(f"   - school -> Leeds early help, no consent: {notice.decision} ({notice.reason}), "
         "by the broker, for a client that skipped the check")

    # A case review asks the police for records; a manager must approve; the police decline.
    review_id = send("partnership -> police (case review request)", leeds,
                     "leeds-cc/safeguarding-partnership",
                     {"kind": "request", "protocol": PROTOCOL,
                      "purpose": "case-review-records",
                      "recipient": "wy-police/safeguarding-hub",
                      "record": {"identity": {"child_ref": "CSPR-2026-07"}},
                      "reasons": "Rapid review", "consent": "not_sought",
                      "ground": "child-significant-harm", "subject_informed": True},
                     approve=(MANAGER_ACCOUNT.username,
                              MANAGER_ACCOUNT.manager_passphrase or ""))
    fetch(police, "wy-police/safeguarding-hub", review_id)
    declined_id = send("police -> partnership (declined)", police,
                       "wy-police/safeguarding-hub",
                       {"kind": "declined", "protocol": PROTOCOL,
                        "purpose": "case-review-records",
                        "recipient": "leeds-cc/safeguarding-partnership",
                        "in_reply_to": review_id, "record": {},
                        "reasons": "Disclosure would prejudice an ongoing investigation",
                        "subject_informed": True})
    fetch(leeds, "leeds-cc/safeguarding-partnership", declined_id)
    # Opening a record sends its receipt; wait until each sender sees "received".
    for gw, unit, mid in ((leeds, "leeds-cc/childrens-social-care", intel),
                          (police, "wy-police/safeguarding-hub", request_id),
                          (leeds, "leeds-cc/front-door", response_id),
                          (leeds, "leeds-cc/safeguarding-partnership", review_id),
                          (police, "wy-police/safeguarding-hub", declined_id)):
        _wait_status(gw, unit, mid, ("receipted",))
    return out


def _wait_notice(client: AgencyClient, message_id: str, timeout: float = 20.0) -> Notice:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = client.store.notices(message_id)
        if found:
            return found[-1]
        time.sleep(0.1)
    raise click.ClickException(f"no notice for {message_id} within {timeout:.0f}s")


@click.command()
@click.option("--home", type=click.Path(path_type=Path), default=Path("var/demo"),
              show_default=True, help="Where the demo keeps its node, registry, log and keys.")
@click.option("--keep-running", is_flag=True,
              help="Keep the node, registry, router and gateways running until Ctrl-C.")
def demo(home: Path, keep_running: bool) -> None:
    """Run the West Yorkshire demo end to end, then audit the transfer log."""
    status = run_demo(home.resolve(), keep_running=keep_running)
    if status:
        raise SystemExit(status)


__all__ = ["demo", "run_demo"]
