"""The world a fault scenario runs in, with real parts only.

- a registry (SQLite) served over real HTTP from a thread, which can be
  stopped and served again on the same port;
- a RabbitMQ vhost on a private node or cluster, provisioned by
  ``broker.topology.provision``;
- routers as ``infoshare broker run`` processes (kill -9 is a real crash);
- senders and recipients as processes of their own (``actors.py``), each
  journalling what it did for the checker.

A :class:`Scenario` starts and crashes them, waits for events (a log that
grows, journals that say everything was confirmed and processed) rather than
for fixed times, and ends with :meth:`Scenario.finish`: the checker's counts
and a verified, replayed export of the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pika
import sqlalchemy as sa
from checker import History, LogVerdict, Result, check, entry_key, verify_log
from werkzeug.serving import BaseWSGIServer, make_server

from broker.host_config import (
    CREDENTIALS_FILE,
    KEY_FILE,
    TOKEN_FILE,
    BrokerConfig,
    write_private_file,
)
from broker.node import RabbitNode
from broker.topology import DEAD_LETTER, Credentials, ManagementAPI, provision
from broker.transfer_log import TransferLog
from keys import (
    EncryptionKeyPair,
    NoteSigner,
    SigningKeyPair,
    b64decode,
    b64encode,
    new_keys,
    write_private_key,
)
from protocols.amqp import amqp_url_for, ingress_name
from protocols.envelope import EnvelopeRefused, parse_envelope
from protocols.model import amqp_user
from registry.app import create_app
from registry.changes import KeyOwner
from registry.client import RegistryClient
from registry.datadir import create_data_dir
from registry.store import Store

REPO = Path(__file__).resolve().parents[2]
ACTORS = Path(__file__).resolve().parent / "actors.py"
WY = REPO / "protocols" / "definitions" / "west-yorkshire-iisp-2016.yaml"
PASSPHRASE = "fault scenario passphrase"
ORIGIN = "faults.test.example/transfer-log"

#: Units that send referrals (any unit may, for safeguarding-referral) ...
SENDERS = ("leeds-cc/education-safeguarding", "kirklees-mbc/public-health",
           "wakefield-mdc/early-help")
#: ... to the front doors, which receive them with the SDK and send receipts back.
RECIPIENTS = ("leeds-cc/front-door", "bradford-mdc/front-door")
#: The unit that floods the broker with bodies that are not envelopes.
FLOODER = "calderdale-mbc/education-safeguarding"
UNITS = (*SENDERS, *RECIPIENTS, FLOODER)

_DECISION = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO infoshare\.router "
                       rb"(?:decision seq=(\d+) message_id=(\S+)|redelivery )", re.M)


def wait_for(what: str, ready: Callable[[], bool], timeout: float,
             interval: float = 0.05) -> float:
    """Poll ``ready`` until it holds; returns the seconds it took.

    Raises:
        AssertionError: not within ``timeout`` seconds.
    """
    start = time.monotonic()
    while not ready():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)
    return time.monotonic() - start


# --- the registry ----------------------------------------------------------------------


@dataclass
class UnitKeys:
    signing: SigningKeyPair
    encryption: EncryptionKeyPair


class RegistryServer:
    """The registry on SQLite, served over HTTP from a thread; it can go away and come back."""

    def __init__(self, root: Path) -> None:
        now = datetime.now(UTC) - timedelta(minutes=5)
        data_dir, signing = create_data_dir(root / "registry", b"registry passphrase")
        self.key = signing.public
        self.key_file = data_dir.path / "registry-key.pub"
        self.store = Store(data_dir.database_url, signing_key=signing)
        self.store.initialise(actor="faults")
        self.store.load_protocol(WY.read_text(encoding="utf-8"), actor="faults")
        broker = new_keys("broker", "broker")
        self.broker_key = broker.signing
        self.store.register_keys(KeyOwner("broker", "broker"), broker.files, now,
                                 actor="faults")
        self.units: dict[str, UnitKeys] = {}
        for address in UNITS:
            made = new_keys("unit", address)
            assert made.encryption is not None
            self.store.register_keys(KeyOwner("unit", address), made.files, now,
                                     actor="faults")
            self.units[address] = UnitKeys(made.signing, made.encryption)
        self.agency_token = self.store.create_token("agency", "faults", actor="faults")[1]
        self.auditor_token = self.store.create_token("auditor", "faults", actor="faults")[1]
        self._app = create_app({"REGISTRY_STORE": self.store,
                                "SECRET_KEY": data_dir.session_secret()})
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request
        self.port = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving: from now on connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def directories(self, version: int) -> bytes:
        return RegistryClient(self.url, self.auditor_token, self.key).signed_directory(version)


# --- processes -------------------------------------------------------------------------


class Process:
    """A child process with its output in a file."""

    def __init__(self, name: str, args: list[str], output: Path, env: dict[str, str]) -> None:
        self.name = name
        self.output = output
        with output.open("ab") as f:
            self.proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT,
                                         env={**os.environ, **env}, cwd=REPO)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9: a crash."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout=30)


class Router(Process):
    def wait_ready(self, since: int = 0, timeout: float = 60) -> None:
        def ready() -> bool:
            if not self.alive:
                raise AssertionError(f"{self.name} exited:\n{self.text()[-3000:]}")
            return b"consuming" in self.output.read_bytes()[since:]
        wait_for(f"{self.name} consuming", ready, timeout)

    def decision_times(self) -> list[float]:
        """Wall-clock times of the decisions (and redeliveries) this router logged."""
        return [_time(m.group(1)) for m in _DECISION.finditer(self.output.read_bytes())]

    def decisions(self) -> list[tuple[float, int, str]]:
        """(time, seq, message id or "None") of each decision this router logged."""
        return [(_time(m.group(1)), int(m.group(2)), m.group(3).decode())
                for m in _DECISION.finditer(self.output.read_bytes()) if m.group(2)]


def _time(stamp: bytes) -> float:
    return datetime.strptime(stamp.decode(), "%Y-%m-%d %H:%M:%S,%f").timestamp()


# --- the scenario ----------------------------------------------------------------------


@dataclass
class Fault:
    what: str
    ended: float  # wall-clock time the fault was over (process back, node back ...)
    began: float | None = None  # wall-clock time it began, where it lasted a while
    recovered: float | None = None  # seconds to the first message routed after it
    #: The longest time in which nothing was routed while the fault lasted.
    stalled: float | None = None


@dataclass
class Outcome:
    name: str
    messages: int
    faults: list[Fault]
    result: Result
    log: LogVerdict
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def recovery(self) -> str:
        times = [f.recovered for f in self.faults if f.recovered is not None]
        return f"{max(times):.2f}" if times else "-"

    def line(self) -> str:
        return (f"{self.name}: messages={self.messages} faults={len(self.faults)} "
                f"{self.result.line()} recovery_max={self.recovery}s {self.log.line()}")


class Scenario:
    """One fault scenario in its own vhost, home directory and transfer log."""

    def __init__(self, name: str, root: Path, registry: RegistryServer,
                 nodes: list[RabbitNode], *, log_url: str | None = None) -> None:
        self.name = name
        self.root = root
        self.registry = registry
        self.nodes = nodes
        self.vhost = f"faults-{name}"
        # The broker host's directory, as `infoshare broker init` makes it.
        self.home = root / "home"
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.credentials = Credentials(self.home / CREDENTIALS_FILE)
        self.log_url = log_url or f"sqlite:///{self.home / 'transfer-log.db'}"
        self.routers: list[Router] = []
        self.senders: dict[str, Process] = {}
        self.recipients: dict[str, Process] = {}
        self.sender_journals: dict[str, Path] = {}
        self.recipient_journals: dict[str, Path] = {}
        self.faults: list[Fault] = []
        self._seq = 0
        self.management.delete(f"/api/vhosts/{self.vhost}")
        provision(nodes[0].management_url, "guest", "guest",
                  RegistryClient(registry.url, registry.agency_token, registry.key).directory(),
                  self.credentials, vhost=self.vhost)
        write_private_key(self.home / KEY_FILE, kind="signing", owner="broker",
                          private=registry.broker_key.seed, public=registry.broker_key.public,
                          passphrase=PASSPHRASE.encode())
        write_private_file(self.home / TOKEN_FILE, registry.agency_token + "\n")
        BrokerConfig(home=self.home, origin=ORIGIN, amqp_urls=tuple(self.amqp_bases),
                     management_url=nodes[0].management_url, vhost=self.vhost, tls_ca=None,
                     registry_url=registry.url, registry_key=registry.key_file,
                     log_database={"url": self.log_url}).save()

    @property
    def management(self) -> ManagementAPI:
        """The management API of the first node that is running."""
        node = next((n for n in self.nodes if n.pid() is not None), self.nodes[0])
        return ManagementAPI(node.management_url, "guest", "guest")

    @property
    def amqp_bases(self) -> list[str]:
        return [f"amqp://{n.config.host}:{n.config.amqp_port}" for n in self.nodes]

    def _urls(self, user: str) -> list[str]:
        """The user's URL on every node; each actor starts on another node (in turn)."""
        password = self.credentials.password(user)
        urls = [amqp_url_for(b, user, password, self.vhost) for b in self.amqp_bases]
        first = self._seq % len(urls)
        return urls[first:] + urls[:first]

    def _next(self, what: str) -> str:
        self._seq += 1
        return f"{what}-{self._seq}"

    # --- routers ----------------------------------------------------------------------

    def start_router(self, *, env: dict[str, str] | None = None, ready: bool = True,
                     args: Sequence[str] = ()) -> Router:
        name = self._next("router")
        router = Router(name, [sys.executable, "-m", "infoshare.cli", "-v", "broker", "run",
                               "--home", str(self.home), *args],
                        self.root / f"{name}.log",
                        {"INFOSHARE_PASSPHRASE": PASSPHRASE, **(env or {})})
        self.routers.append(router)
        if ready:
            router.wait_ready()
        return router

    def crash_router(self, router: Router, *, env: dict[str, str] | None = None) -> Router:
        """kill -9 ``router`` and start another in its place, as a supervisor would."""
        router.kill()
        again = self.start_router(env=env, ready=False)
        self.faults.append(Fault("router kill -9", time.time()))
        again.wait_ready()
        return again

    def first_routed_after(self, t: float) -> float | None:
        times = [d for r in self.routers for d in r.decision_times() if d >= t - 0.001]
        return max(0.0, min(times) - t) if times else None

    # --- actors -----------------------------------------------------------------------

    def _spec(self, name: str, doc: dict[str, Any]) -> Path:
        path = self.root / f"{name}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        return path

    def start_sender(self, unit: str, count: int, *, rate: float | None = None,
                     kind: str = "valid", window: int = 256,
                     message_ids: dict[int, str] | None = None,
                     recipients: tuple[str, ...] = RECIPIENTS) -> Process:
        name = self._next(f"send-{amqp_user(unit)}")
        journal = self.root / f"{name}.journal"
        self.sender_journals[name] = journal
        keys = self.registry.units[unit]
        spec = self._spec(name, {
            "unit": unit, "amqp": self._urls(amqp_user(unit)), "count": count, "rate": rate,
            "kind": kind, "window": window, "journal": str(journal),
            "signing_seed": b64encode(keys.signing.seed),
            "message_ids": {str(k): v for k, v in (message_ids or {}).items()},
            "recipients": {r: b64encode(self.registry.units[r].encryption.public)
                           for r in recipients}})
        proc = Process(name, [sys.executable, str(ACTORS), "send", str(spec)],
                       self.root / f"{name}.log", {})
        self.senders[name] = proc
        return proc

    def start_recipient(self, unit: str) -> Process:
        name = self._next(f"recv-{amqp_user(unit)}")
        self.recipient_journals.setdefault(unit, self.root / f"{amqp_user(unit)}.journal")
        keys = self.registry.units[unit]
        spec = self._spec(name, {
            "unit": unit, "amqp": self._urls(amqp_user(unit)),
            "journal": str(self.recipient_journals[unit]),
            "signing_seed": b64encode(keys.signing.seed),
            "encryption_secret": b64encode(keys.encryption.secret),
            "registry_url": self.registry.url, "registry_token": self.registry.agency_token,
            "registry_key": b64encode(self.registry.key),
            "broker_key": b64encode(self.registry.broker_key.public),
            "state_dir": str(self.root / amqp_user(unit) / "state"),
            "out_dir": str(self.root / amqp_user(unit) / "records")})
        proc = Process(name, [sys.executable, str(ACTORS), "receive", str(spec)],
                       self.root / f"{name}.log", {})
        self.recipients[name] = proc
        return proc

    def start_recipients(self) -> None:
        for unit in RECIPIENTS:
            self.start_recipient(unit)

    def start_flow(self, messages: int, *, rate: float, routers: int = 1) -> list[Router]:
        """The usual cast: ``routers`` routers, both recipients, and every sender sending
        its share of ``messages`` at ``rate`` a second. Returns the routers."""
        started = [self.start_router() for _ in range(routers)]
        self.start_recipients()
        for i, unit in enumerate(SENDERS):
            share = messages // len(SENDERS) + (1 if i < messages % len(SENDERS) else 0)
            self.start_sender(unit, share, rate=rate)
        return started

    # --- observing --------------------------------------------------------------------

    def open_log(self) -> TransferLog:
        return TransferLog.open(self.log_url, signer=NoteSigner(ORIGIN,
                                                                self.registry.broker_key),
                                origin=ORIGIN)

    def entries(self) -> list[dict[str, Any]]:
        """Every committed entry of the log (read without the routers' lock)."""
        engine = sa.create_engine(self.log_url)
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table("entries"):
                    return []
                rows = conn.execute(sa.text("SELECT body FROM entries ORDER BY seq")).all()
        except sa.exc.OperationalError:
            return []  # the database is away: nothing can be read just now
        finally:
            engine.dispose()
        return [json.loads(bytes(r[0])) for r in rows]

    def log_size(self) -> int:
        engine = sa.create_engine(self.log_url)
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table("entries"):
                    return 0
                return int(conn.execute(sa.text("SELECT count(*) FROM entries")).scalar_one())
        except sa.exc.OperationalError:
            return 0  # the database is away just now
        finally:
            engine.dispose()

    def history(self) -> History:
        units = {name: path for name, path in self.sender_journals.items()}
        return History.read(units, self.recipient_journals)

    def settled(self, set_aside: frozenset[str] = frozenset()) -> bool:
        """Every sender done, and every confirmed message processed or refused in the log
        (or ``set_aside``: expected in the dead-letter queue), and every processed
        message's receipt logged."""
        if any(p.alive for p in self.senders.values()):
            return False
        h = self.history()
        entries = self.entries()
        refused = {entry_key(e) for e in entries if e["decision"] == "refused"}
        receipts = {e["in_reply_to"] for e in entries if e["kind"] == "receipt"}
        waiting = [k for k in h.confirmed
                   if k not in h.processed and k not in refused and k not in set_aside]
        return not waiting and set(h.processed) <= receipts

    def wait_settled(self, timeout: float = 180, set_aside: frozenset[str] = frozenset(),
                     interval: float = 0.25) -> float:
        return wait_for(f"{self.name}: everything confirmed processed or refused",
                        lambda: self.settled(set_aside), timeout, interval=interval)

    def wait_log_grows(self, by: int = 1, timeout: float = 60) -> None:
        start = self.log_size()
        wait_for(f"{self.name}: log grows by {by}", lambda: self.log_size() >= start + by,
                 timeout)

    def ingress_depth(self) -> int:
        """Messages in the ingress queues, ready or taken and not yet acked (the management
        API's figures, a few seconds old at most)."""
        vhost = urllib.parse.quote(self.vhost, safe="")
        queues = self.management.get(f"/api/queues/{vhost}", query="columns=name,messages")
        return sum(int(q.get("messages") or 0) for q in queues or []
                   if str(q["name"]).startswith("infoshare.ingress"))

    def delivery_counts(self, unit: str, count: int = 20) -> list[int]:
        """``x-delivery-count`` of the first messages in ``unit``'s ingress queue (looked at
        and put back, which counts as one more delivery)."""
        path = (f"/api/queues/{urllib.parse.quote(self.vhost, safe='')}/"
                f"{ingress_name(unit)}/get")
        found = self.management._call("POST", path, {"count": count,
                                                     "ackmode": "reject_requeue_true",
                                                     "encoding": "base64"})[1] or []
        return [int((m["properties"].get("headers") or {}).get("x-delivery-count", 0))
                for m in found]

    def dead_letters(self) -> list[str]:
        """The keys of the messages in the dead-letter queue (taken out of it)."""
        path = f"/api/queues/{urllib.parse.quote(self.vhost, safe='')}/{DEAD_LETTER}/get"
        found = self.management._call("POST", path, {"count": 10000,
                                                     "ackmode": "ack_requeue_false",
                                                     "encoding": "base64"})[1] or []
        keys = []
        for m in found:
            body = b64decode(m["payload"])
            try:
                keys.append(parse_envelope(body).header.message_id)
            except EnvelopeRefused:
                import hashlib
                keys.append(f"sha256:{hashlib.sha256(body).hexdigest()}")
        return keys

    # --- the end ----------------------------------------------------------------------

    def measure_recoveries(self) -> None:
        times = sorted(d for r in self.routers for d in r.decision_times())
        for f in self.faults:
            if f.recovered is None:
                f.recovered = self.first_routed_after(f.ended)
            if f.began is not None:
                marks = [f.began, *(t for t in times if f.began < t < f.ended), f.ended]
                f.stalled = max(b - a for a, b in pairwise(marks))

    def wait_quiet(self, seconds: float, timeout: float = 120) -> None:
        """Wait until neither the log nor the recipients' journals have changed for
        ``seconds``: for a scenario where some messages never arrive."""
        last: tuple[int, int] = (-1, -1)
        since = time.monotonic()

        def quiet() -> bool:
            nonlocal last, since
            now = (self.log_size(), sum(self.history().processed.values()))
            if now != last:
                last, since = now, time.monotonic()
            return time.monotonic() - since >= seconds and not any(
                p.alive for p in self.senders.values())
        wait_for(f"{self.name}: quiet", quiet, timeout, interval=0.25)

    def finish(self, *, settle_timeout: float = 180,
               set_aside: frozenset[str] = frozenset(), quiet: float | None = None,
               interval: float = 0.25) -> Outcome:
        """Wait until everything settled (``set_aside``: keys expected to be dead-lettered;
        ``quiet``: or until nothing changed for that long), stop every process, check."""
        with contextlib.suppress(AssertionError):
            if quiet is not None:
                self.wait_quiet(quiet, settle_timeout)
            else:
                self.wait_settled(settle_timeout, set_aside, interval)
        self.measure_recoveries()
        for p in [*self.senders.values(), *self.recipients.values(), *self.routers]:
            p.stop()
        dead = self.dead_letters()
        history = self.history()
        result = check(history, self.entries(), dead)
        transfer_log = self.open_log()
        try:
            verdict = verify_log(transfer_log, self.root / "export",
                                 directories=self.registry.directories,
                                 registry_key=self.registry.key)
        finally:
            transfer_log.close()
        outcome = Outcome(self.name, len(history.attempted), self.faults, result, verdict,
                          {"dead": sorted(dead)})
        print(outcome.line(), flush=True)
        return outcome

    def cleanup(self) -> None:
        for p in [*self.senders.values(), *self.recipients.values(), *self.routers]:
            if p.alive:
                p.kill()
        with contextlib.suppress(Exception):
            self.management.delete(f"/api/vhosts/{self.vhost}")


def assert_clean(outcome: Outcome, *, dead: set[str] | None = None) -> None:
    """The verdict every scenario must reach: 0 lost, 0 duplicated, 0 unexpected, a log
    that verifies and replays, and nothing dead-lettered but what the scenario expects."""
    r = outcome.result
    assert r.counts == (0, 0, 0), f"{outcome.line()}\n{r.examples()}"
    assert outcome.log.ok, f"{outcome.line()}\n{outcome.log.detail}"
    assert set(outcome.notes["dead"]) == (dead or set()), outcome.line()
    assert r.confirmed == r.sent, f"not every message was confirmed: {outcome.line()}"


@contextlib.contextmanager
def scenario(name: str, root: Path, registry: RegistryServer, nodes: list[RabbitNode],
             **kw: Any) -> Iterator[Scenario]:
    s = Scenario(name, root, registry, nodes, **kw)
    try:
        yield s
    finally:
        s.cleanup()


def connection(url: str) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    return pika.BlockingConnection(params)

