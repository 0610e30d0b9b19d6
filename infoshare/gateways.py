"""Gateways run in this process, set up the way an organisation's IT team would.

For the demo and the tests: from the broker host's files, make an
organisation's bundle, ``init`` its gateway home, register the public key
files it wrote (with their proofs of possession) through the registry's API
as its administrator would, add accounts and case-system tokens, then serve
the gateway over real HTTP with its courier running.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agency.bundle import write_bundle
from agency.gateway.api import token_digest
from agency.gateway.app import create_app
from agency.gateway.auth import make_account, make_manager_account
from agency.gateway.courier import Courier
from agency.gateway.home import GatewayHome, init_home
from agency.gateway.runtime import open_gateway
from agency.gateway.service import Gateway
from infoshare.bundle_cli import make_bundle
from protocols.directory import format_time
from protocols.model import amqp_user

__all__ = ["AccountSpec", "RegistryAdmin", "RunningGateway", "start_gateway"]


@dataclass(frozen=True)
class AccountSpec:
    username: str
    unit: str
    role: str
    password: str
    manager_id: str | None = None
    manager_passphrase: str | None = None


@dataclass
class RunningGateway:
    org: str
    home: Path
    gateway: Gateway
    courier: Courier
    url: str
    tokens: dict[str, str]
    _server: Any = None
    _thread: threading.Thread | None = None
    _stopped: bool = field(default=False)

    def call(self, unit: str, method: str, path: str,
             body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """One API call as the case system of ``unit``; returns (status, JSON)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/api/v1{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.tokens[unit]}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def wait_status(self, unit: str, message_id: str, want: tuple[str, ...],
                    timeout: float = 30.0) -> dict[str, Any]:
        """The status of a sent message once it is one of ``want``.

        Raises:
            TimeoutError: it was not, ``timeout`` seconds on.
        """
        deadline = time.monotonic() + timeout
        while True:
            status, doc = self.call(unit, "GET", f"/messages/{message_id}")
            if status == 200 and doc["status"] in want:
                return dict(doc)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{message_id} still {doc.get('status')} after "
                                   f"{timeout:.0f}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.courier.stop()
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.gateway.close()


class RegistryAdmin:
    """The registry's administrator, through the registry's API (an admin token)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self._token = token

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body under ``/api/v1``; the JSON answer.

        Raises:
            RuntimeError: the registry refused, with its message.
        """
        req = urllib.request.Request(
            f"{self.url}/api/v1{path}", data=json.dumps(body).encode("utf-8"), method="POST",
            headers={"Authorization": f"Bearer {self._token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                answer: dict[str, Any] = json.loads(r.read())
                return answer
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"the registry refused POST {path}: HTTP {e.code} "
                               f"{e.read(4096).decode('utf-8', 'replace')}") from e

    def register_unit_keys(self, unit: str, public_dir: Path, valid_from: datetime) -> None:
        """Register a unit's two keys with the request body its gateway wrote beside their
        public key files."""
        org, unit_id = unit.split("/")
        self.post(f"/organisations/{org}/units/{unit_id}/keys",
                  self._body(public_dir / f"{amqp_user(unit)}.keys.json", valid_from))

    def register_manager(self, manager_id: str, org: str, public_dir: Path,
                         valid_from: datetime) -> None:
        """Register a manager, then their key with the body their gateway wrote."""
        self.post("/managers", {"id": manager_id, "org": org, "title": "Team manager"})
        self.post(f"/managers/{manager_id}/keys", self._body(
            public_dir / f"{org}.manager.{manager_id}.keys.json", valid_from))

    @staticmethod
    def _body(path: Path, valid_from: datetime) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(path.read_text(encoding="ascii"))
        return {**body, "valid_from": format_time(valid_from)}


def start_gateway(*, home: Path, org: str, broker_home: Path, registry: RegistryAdmin,
                  passphrase: bytes, valid_from: datetime,
                  accounts: tuple[AccountSpec, ...] = (), case_units: tuple[str, ...] = (),
                  folder_units: tuple[str, ...] = (), port: int = 0, serve: bool = True,
                  start: bool = True) -> RunningGateway:
    """Set up and start the gateway of ``org`` under ``home``; with ``start=False`` only
    set it up (for ``infoshare agency serve`` to run)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per HTTP request
    bundle_path = home.parent / f"{org}.bundle.json"
    write_bundle(bundle_path, make_bundle(broker_home, org))
    token = registry.post("/tokens", {"role": "agency", "label": f"gateway {org}"})["secret"]
    init_home(home, bundle_path, token, passphrase, folder_units=folder_units)
    gh = GatewayHome(home)
    for unit in sorted(gh.bundle().units):
        registry.register_unit_keys(unit, home / "public", valid_from)
    gateway, courier = open_gateway(home, passphrase, None)
    for spec in accounts:
        if spec.role == "manager":
            assert spec.manager_id and spec.manager_passphrase
            made, _ = make_manager_account(
                home / "public", username=spec.username, unit=spec.unit,
                password=spec.password, manager_id=spec.manager_id,
                manager_passphrase=spec.manager_passphrase)
            registry.register_manager(spec.manager_id, org, home / "public", valid_from)
        else:
            made = make_account(username=spec.username, unit=spec.unit, role=spec.role,
                                password=spec.password)
        gateway.store.add_account(made)
    tokens = {}
    for unit in case_units:
        tokens[unit] = secrets.token_urlsafe(24)
        gateway.store.add_case_system(id=secrets.token_hex(6), unit=unit, label="case system",
                                      token_sha256=token_digest(tokens[unit]))
    running = RunningGateway(org=org, home=home, gateway=gateway, courier=courier, url="",
                             tokens=tokens)
    if not start:
        gateway.close()
        running._stopped = True
        return running
    if serve:
        from werkzeug.serving import make_server

        app = create_app(gateway, gh.session_secret())
        server = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name=f"gateway-{org}",
                                  daemon=True)
        thread.start()
        running.url = f"http://127.0.0.1:{server.server_port}"
        running._server, running._thread = server, thread
    courier.start()
    return running
