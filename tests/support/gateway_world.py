"""A whole deployment for gateway tests: registry over HTTP, a RabbitMQ vhost, a real
router, and a Leeds and a police gateway set up from their bundles.

Used by the gateway's integration, browser, fault and benchmark code.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from broker.host_config import BrokerConfig
from broker.node import RabbitNode
from broker.router import DirectoryHolder, Router
from broker.topology import Credentials, ManagementAPI, amqp_url_for, provision
from broker.transfer_log import TransferLog
from infoshare.gateways import AccountSpec, RegistryAdmin, RunningGateway, start_gateway
from keys import NoteSigner, new_keys, write_public_key
from protocols.directory import format_time
from protocols.model import Directory
from registry.app import create_app
from registry.client import RegistryClient
from registry.datadir import create_data_dir
from registry.store import Store

WY = Path(__file__).resolve().parents[2] / "protocols" / "definitions" / (
    "west-yorkshire-iisp-2016.yaml")
PROTOCOL = "wy-iisp-2016"
PASSPHRASE = b"gateway test passphrase"
ORIGIN = "test.example/transfer-log"

SCHOOL = "leeds-cc/education-safeguarding"
CSC = "leeds-cc/childrens-social-care"
POLICE_MARAC = "wy-police/marac-coordinator"
POLICE_HUB = "wy-police/safeguarding-hub"
POLICE_INTEL = "wy-police/intelligence-bureau"
EARLY_HELP = "leeds-cc/early-help"

ACCOUNTS = {
    "leeds-cc": (
        AccountSpec("sam.teacher", SCHOOL, "practitioner", "practitioner-pw-1"),
        AccountSpec("ali.manager", SCHOOL, "manager", "manager-pw-1",
                    manager_id="leeds-cc-mgr-02", manager_passphrase="manager passphrase 1"),
    ),
    "wy-police": (
        AccountSpec("pat.officer", POLICE_MARAC, "practitioner", "practitioner-pw-2"),
    ),
}
CASE_UNITS = {"leeds-cc": (SCHOOL, CSC, EARLY_HELP),
              "wy-police": (POLICE_MARAC, POLICE_HUB, POLICE_INTEL)}


class HeldDirectory:
    """The router's directory fetch, which a test can hold at the version it has, so that
    the router decides with an older directory than the gateways (as it does for up to
    its refresh interval after a registry change)."""

    def __init__(self, fetch: Callable[[], Directory]) -> None:
        self._fetch = fetch
        self._last: Directory | None = None
        self.held = False

    def __call__(self) -> Directory:
        if not self.held or self._last is None:
            self._last = self._fetch()
        return self._last

    @property
    def version(self) -> int:
        """The version the router has (-1 before its first)."""
        return -1 if self._last is None else self._last.version

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self.held = True
        try:
            yield
        finally:
            self.held = False


@dataclass
class World:
    home: Path
    store: Store
    admin: RegistryAdmin
    registry_url: str
    registry_key: bytes
    vhost: str
    transfer_log: TransferLog
    router: Router
    router_directory: HeldDirectory
    gateways: dict[str, RunningGateway] = field(default_factory=dict)

    @property
    def leeds(self) -> RunningGateway:
        return self.gateways["leeds-cc"]

    @property
    def police(self) -> RunningGateway:
        return self.gateways["wy-police"]

    def wait_status(self, gw: RunningGateway, unit: str, message_id: str,
                    want: tuple[str, ...], timeout: float = 30.0) -> dict[str, Any]:
        return gw.wait_status(unit, message_id, want, timeout)

    def wait_leaf(self, gw: RunningGateway, unit: str, message_id: str, source: str,
                  timeout: float = 30.0) -> dict[str, Any]:
        """The status of a sent message once its leaf hash comes from ``source``."""
        deadline = time.monotonic() + timeout
        while True:
            status, doc = gw.call(unit, "GET", f"/messages/{message_id}")
            if status == 200 and doc.get("leaf_hash_source") == source:
                return dict(doc)
            if time.monotonic() > deadline:
                raise AssertionError(f"{message_id}: leaf from {doc.get('leaf_hash_source')}, "
                                     f"not {source}")
            time.sleep(0.05)


@contextlib.contextmanager
def gateway_world(node: RabbitNode, home: Path, vhost: str, *,
                  serve_gateways: bool = True,
                  gateway_orgs: tuple[str, ...] = ("leeds-cc", "wy-police"),
                  setup_only: tuple[str, ...] = (),
                  folder_units: tuple[str, ...] = ()) -> Iterator[World]:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    data_dir, registry_signing = create_data_dir(home / "registry", b"registry passphrase")
    store = Store(data_dir.database_url, signing_key=registry_signing)
    store.initialise(actor="test")
    store.load_protocol(WY.read_text(encoding="utf-8"), actor="test")
    _, admin_token = store.create_token("admin", "information governance", actor="test")
    app = create_app({"REGISTRY_STORE": store, "SECRET_KEY": data_dir.session_secret()})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    registry_url = f"http://127.0.0.1:{server.server_port}"
    # From here on, everything goes through the registry's API as an administrator's
    # would: public key files with their proofs of possession, tokens.
    admin = RegistryAdmin(registry_url, admin_token)
    broker = new_keys("broker", "broker")
    broker_key = broker.signing
    admin.post("/broker/keys", {"signing": broker.files["signing"].to_json(),
                                "valid_from": format_time(now)})
    token = admin.post("/tokens", {"role": "agency", "label": "router"})["secret"]
    management = ManagementAPI(node.management_url, "guest", "guest")
    management.delete(f"/api/vhosts/{vhost}")
    credentials = Credentials(home / "credentials.json")
    provision(node.management_url, "guest", "guest", store.directory(), credentials,
              vhost=vhost)
    amqp_base = f"amqp://{node.config.host}:{node.config.amqp_port}"
    write_public_key(home / "broker.signing.pub", broker_key.public)
    (home / "registry.token").write_text(token + "\n")
    (home / "registry.token").chmod(0o600)
    BrokerConfig(home=home, origin="test.example/transfer-log", amqp_urls=(amqp_base,),
                 management_url=node.management_url, vhost=vhost, tls_ca=None,
                 registry_url=registry_url, registry_key=data_dir.path / "registry-key.pub",
                 log_database={"url": f"sqlite:///{home / 'transfer-log.db'}"}).save()
    gateways = {org: start_gateway(home=home / "gateways" / org, org=org, broker_home=home,
                                   registry=admin, passphrase=PASSPHRASE, valid_from=now,
                                   accounts=ACCOUNTS[org], case_units=CASE_UNITS[org],
                                   serve=serve_gateways, start=org not in setup_only,
                                   folder_units=tuple(u for u in folder_units
                                                      if u.startswith(org + "/")))
                for org in gateway_orgs}
    transfer_log = TransferLog.open(f"sqlite:///{home / 'transfer-log.db'}",
                                    signer=NoteSigner(ORIGIN, broker_key), origin=ORIGIN)
    registry = RegistryClient(registry_url, token, registry_signing.public)
    router_directory = HeldDirectory(registry.directory)
    router = Router(amqp_url=amqp_url_for(amqp_base, "infoshare-broker",
                                          credentials.password("infoshare-broker"), vhost),
                    transfer_log=transfer_log, directory=DirectoryHolder(router_directory),
                    broker_key=broker_key)
    router_thread = threading.Thread(target=router.run, name="router", daemon=True)
    router_thread.start()
    assert router.ready.wait(30), "the router did not start"
    world = World(home, store, admin, registry_url, registry_signing.public, vhost,
                  transfer_log, router, router_directory, gateways)
    try:
        yield world
    finally:
        for gw in gateways.values():
            gw.stop()
        router.stop()
        router_thread.join(timeout=30)
        transfer_log.close()
        server.shutdown()
        management.delete(f"/api/vhosts/{vhost}")
        for user in credentials.users():
            if not management.get(f"/api/users/{user}/permissions"):
                management.delete(f"/api/users/{user}")
