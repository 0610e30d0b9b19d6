"""Router throughput and latency against a raw RabbitMQ forwarding hop, in one run.

    python tests/bench/bench_router.py [--messages 5000] [--rate 200] [--seconds 15]

Starts a private RabbitMQ node, provisions the West Yorkshire topology, and:

1. baseline: the same pika machinery as the router (SelectConnection, confirms
   pipelined, acks on confirm) forwarding N preloaded 1 KiB-record envelopes
   from the sender's ingress queue to an inbox, with no parsing, no policy and no log;
2. router: N preloaded envelopes routed for real (parse, verify, decide,
   SQLite log with synchronous=FULL, deliver, notice, ack);
3. latency: envelopes submitted at a steady rate, submit-to-inbox p50/p99.

Figures are printed as messages/s and as a ratio to the baseline.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingConnection

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from broker.node import NodeConfig, RabbitNode  # noqa: E402
from broker.router import DirectoryHolder, Router, _Inbound  # noqa: E402
from broker.topology import (  # noqa: E402
    Credentials,
    amqp_url_for,
    inbox_name,
    ingress_name,
    provision,
)
from broker.transfer_log import TransferLog  # noqa: E402
from keys import EncryptionKeyPair, NoteSigner, SigningKeyPair  # noqa: E402
from protocols.envelope import build_envelope  # noqa: E402
from protocols.loader import load_protocol_file  # noqa: E402
from protocols.model import Consent, Directory, GroundId, KeyRecord, amqp_user  # noqa: E402

SENDER = "leeds-cc/childrens-social-care"
RECIPIENT = "wy-police/intelligence-bureau"
VHOST = "infoshare"


@dataclass
class Setup:
    node: RabbitNode
    directory: Directory
    credentials: Credentials
    amqp_base: str
    sender: SigningKeyPair
    recipient: EncryptionKeyPair
    broker_key: SigningKeyPair
    workdir: Path


def setup(workdir: Path) -> Setup:
    node = RabbitNode(NodeConfig.in_directory(workdir / "rabbit", name="infoshare-bench"))
    node.start()
    wy = load_protocol_file(ROOT / "protocols" / "definitions" /
                            "west-yorkshire-iisp-2016.yaml")
    sender, recipient = SigningKeyPair.generate(), EncryptionKeyPair.generate()
    broker_key = SigningKeyPair.generate()
    since = datetime.now(UTC) - timedelta(days=1)
    keys = (
        KeyRecord(key_id=sender.key_id, holder="unit", owner=SENDER, use="signing",
                  public=sender.public, valid_from=since),
        KeyRecord(key_id=recipient.key_id, holder="unit", owner=RECIPIENT, use="encryption",
                  public=recipient.public, valid_from=since),
    )
    directory = Directory(version=1, issued_at=since, organisations=wy.organisations,
                          protocols=(wy.protocol,), keys=keys)
    credentials = Credentials(workdir / "credentials.json")
    provision(node.management_url, "guest", "guest", directory, credentials, vhost=VHOST)
    amqp_base = f"amqp://{node.config.host}:{node.config.amqp_port}"
    return Setup(node, directory, credentials, amqp_base, sender, recipient, broker_key,
                 workdir)


def envelope(s: Setup) -> tuple[bytes, str]:
    body, env = build_envelope(
        kind="referral", protocol="wy-iisp-2016", purpose="police-intelligence", sender=SENDER,
        recipient=RECIPIENT, record={"identity": {"ref": "x" * 1024}}, reasons="bench",
        sender_key=s.sender, recipient_key=s.recipient.public, created_at=datetime.now(UTC),
        consent=Consent("not_sought", GroundId("serious-crime")), subject_informed=False)
    return body, env.header.message_id


def connect(s: Setup, user: str) -> BlockingConnection:
    return BlockingConnection(pika.URLParameters(
        amqp_url_for(s.amqp_base, user, s.credentials.password(user), VHOST)))


def preload(s: Setup, bodies: list[bytes]) -> None:
    conn = connect(s, amqp_user(SENDER))
    ch = conn.channel()
    ch.confirm_delivery()
    props = pika.BasicProperties(user_id=amqp_user(SENDER), delivery_mode=2, type="envelope")
    for body in bodies:
        ch.basic_publish("infoshare.submit", SENDER, body, props)
    conn.close()


def purge(s: Setup) -> None:
    for q in (inbox_name(RECIPIENT), inbox_name(SENDER), ingress_name(SENDER)):
        s.node.ctl("purge_queue", "-p", VHOST, q)


class RawForwarder(Router):
    """The router's pika machinery with none of its work: forward each body as it is."""

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._inbound = self._inbound, []
        ch = self._channel
        assert ch is not None
        for msg in batch:
            self._forward(ch, msg)

    def _forward(self, ch: pika.channel.Channel, msg: _Inbound) -> None:
        from broker.router import _Pending

        pending = _Pending(delivery_tag=msg.delivery_tag)
        self._publish_tag += 1
        ch.basic_publish("infoshare.deliver", RECIPIENT, msg.body, pika.BasicProperties(
            delivery_mode=2, type="envelope", headers={"infoshare-seq": self._publish_tag}),
            mandatory=True)
        self._awaiting[self._publish_tag] = pending
        pending.outstanding = 1


def count_arrivals(url: str, queue: str, n: int, done: Any) -> None:
    """Consume ``queue`` until ``n`` messages have arrived (run in its own process,
    so that it does not compete with the router for the interpreter lock)."""
    conn = BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1000)
    seen = 0

    def on(ch: Any, method: pika.spec.Basic.Deliver, props: pika.BasicProperties,
           body: bytes) -> None:
        nonlocal seen
        seen += 1
        if seen % 100 == 0 or seen >= n:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if seen >= n:
            done.set()

    ch.basic_consume(queue, on)
    while not done.is_set():
        conn.process_data_events(time_limit=0.05)
    conn.close()


def timed_drain(s: Setup, router: Router, n: int) -> float:
    ctx = multiprocessing.get_context("fork")
    done = ctx.Event()
    user = amqp_user(RECIPIENT)
    url = amqp_url_for(s.amqp_base, user, s.credentials.password(user), VHOST)
    counter = ctx.Process(target=count_arrivals, args=(url, inbox_name(RECIPIENT), n, done))
    counter.start()
    time.sleep(0.5)  # let the counter connect before the clock starts
    thread = threading.Thread(target=router.run, daemon=True)
    start = time.perf_counter()
    thread.start()
    if not done.wait(600):
        raise SystemExit("not every message arrived")
    elapsed = time.perf_counter() - start
    router.stop()
    thread.join(timeout=30)
    counter.join(timeout=10)
    return elapsed


def broker_url(s: Setup) -> str:
    return amqp_url_for(s.amqp_base, "infoshare-broker",
                        s.credentials.password("infoshare-broker"), VHOST)


def new_log(s: Setup, name: str) -> TransferLog:
    return TransferLog.open(f"sqlite:///{s.workdir / name}",
                            signer=NoteSigner("bench.example/log", s.broker_key),
                            origin="bench.example/log")


def throughput(s: Setup, n: int) -> tuple[float, float]:
    bodies = [envelope(s)[0] for _ in range(n)]
    purge(s)
    preload(s, bodies)
    raw = RawForwarder(amqp_url=broker_url(s), transfer_log=new_log(s, "unused.db"),
                       directory=DirectoryHolder(lambda: s.directory), broker_key=s.broker_key)
    t_raw = timed_drain(s, raw, n)
    purge(s)
    bodies = [envelope(s)[0] for _ in range(n)]
    preload(s, bodies)
    log = new_log(s, "router.db")
    router = Router(amqp_url=broker_url(s), transfer_log=log,
                    directory=DirectoryHolder(lambda: s.directory), broker_key=s.broker_key)
    t_router = timed_drain(s, router, n)
    assert log.size() == n, (log.size(), n)
    log.close()
    return n / t_raw, n / t_router


def latency(s: Setup, rate: float, seconds: float) -> list[float]:
    purge(s)
    log = new_log(s, "latency.db")
    router = Router(amqp_url=broker_url(s), transfer_log=log,
                    directory=DirectoryHolder(lambda: s.directory), broker_key=s.broker_key)
    thread = threading.Thread(target=router.run, daemon=True)
    thread.start()
    router.ready.wait(30)
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    done = threading.Event()

    def consume() -> None:
        conn = connect(s, amqp_user(RECIPIENT))
        ch = conn.channel()

        def on(ch: object, method: pika.spec.Basic.Deliver, props: pika.BasicProperties,
               body: bytes) -> None:
            got[str(props.message_id)] = time.perf_counter()

        ch.basic_consume(inbox_name(RECIPIENT), on, auto_ack=True)
        while not done.is_set():
            conn.process_data_events(time_limit=0.05)
        conn.close()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    conn = connect(s, amqp_user(SENDER))
    ch = conn.channel()
    ch.confirm_delivery()
    total = int(rate * seconds)
    envs = [envelope(s) for _ in range(total)]
    t0 = time.perf_counter()
    for i, (body, mid) in enumerate(envs):
        target = t0 + i / rate
        while (now := time.perf_counter()) < target:
            time.sleep(min(0.002, target - now))
        sent[mid] = time.perf_counter()
        ch.basic_publish("infoshare.submit", SENDER, body, pika.BasicProperties(
            user_id=amqp_user(SENDER), delivery_mode=2, type="envelope", message_id=mid))
    deadline = time.perf_counter() + 30
    while len(got) < total and time.perf_counter() < deadline:
        time.sleep(0.05)
    done.set()
    consumer.join(timeout=10)
    conn.close()
    router.stop()
    thread.join(timeout=30)
    log.close()
    return [(got[m] - sent[m]) * 1000 for m in sent if m in got]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="infoshare-bench-") as tmp:
        s = setup(Path(tmp))
        try:
            raw, routed = throughput(s, args.messages)
            print(f"raw forwarding hop (same pika machinery): {raw:8.0f} msgs/s  1.00")
            print(f"router (verify, decide, log, deliver):    {routed:8.0f} msgs/s  "
                  f"{routed / raw:.2f}")
            lat = sorted(latency(s, args.rate, args.seconds))
            p50 = statistics.median(lat)
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            print(f"submit-to-inbox latency at {args.rate:.0f} msgs/s over {len(lat)} messages: "
                  f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        finally:
            s.node.stop()


if __name__ == "__main__":
    main()
