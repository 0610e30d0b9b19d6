"""The whole performance picture in one run, on one private RabbitMQ node.

    .venv/bin/python tests/bench/bench_performance.py [--messages 5000] [--entries 1000000]
    .venv/bin/python tests/bench/bench_performance.py --tiny      # the smoke run of CI

Prints, each against a baseline measured in the same run:

1. **hop**: the raw hop (a producer fills a quorum queue; a Python worker
   consumes it, republishes each body persistently with pipelined confirms and
   acks each on its confirm; a consumer takes them) against the full path (the
   SDK publishes envelopes; the router decides, logs, delivers and notifies; a
   consumer takes them from the inbox), at 1 KiB and 64 KiB records:
   messages/s, their ratio, and CPU microseconds per message of the worker or
   router process and of the RabbitMQ node, from ``/proc``;
2. **latency**: submit-to-inbox p50/p99/p99.9 with the SDK publishing at an
   offered 200 and 1,000 messages/s, each after the raw hop's at the same rate
   (a publisher waiting for each confirm as the SDK does), its floor;
3. **two routers**: 1 and 2 in the same run, sharing one PostgreSQL log;
4. **audit**: verify and replay against reading and hashing each line, with
   each run's peak memory (a process of its own each, so the figures are
   theirs), verify on two log sizes to show that its memory stays flat;
5. **log**: append rate of the transfer log when empty and when large, and an
   inclusion proof's time there (``--log-entries``);
6. **gateway**: its submit path against the bare SDK.

Every timed part runs in processes of its own (router, worker, consumer), so
the interpreter lock of one never slows another. Sizes are options; ``--tiny``
makes every one small so that the whole runs in a minute (no figure then means
anything). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
import pika.channel
import pika.frame
import pika.spec
from pika.adapters.blocking_connection import BlockingConnection

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Runnable as a plain script from a checkout.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(HERE))

import bench_audit  # noqa: E402

from agency.client import AgencyClient  # noqa: E402
from broker.node import NodeConfig, RabbitNode  # noqa: E402
from broker.postgres import PostgresInstance  # noqa: E402
from broker.router import DirectoryHolder, Router  # noqa: E402
from broker.topology import (  # noqa: E402
    Credentials,
    ManagementAPI,
    amqp_url_for,
    inbox_name,
    provision,
)
from broker.transfer_log import TransferLog  # noqa: E402
from keys import EncryptionKeyPair, NoteSigner, SigningKeyPair  # noqa: E402
from protocols import merkle  # noqa: E402
from protocols.directory import format_time  # noqa: E402
from protocols.loader import load_protocol_file  # noqa: E402
from protocols.log_format import Entry, EntryDraft, Evidence  # noqa: E402
from protocols.model import Consent, Directory, GroundId, KeyRecord, amqp_user  # noqa: E402

SENDER = "leeds-cc/childrens-social-care"
RECIPIENT = "wy-police/intelligence-bureau"
VHOST = "infoshare-bench"
RAW_IN, RAW_OUT = "bench.raw.in", "bench.raw.out"
ORIGIN = "bench.example/transfer-log"
CTX = multiprocessing.get_context("fork")
TICK = os.sysconf("SC_CLK_TCK")


# --- measuring ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def peak_rss_mib() -> float:
    """This process's peak RSS since it last exec'd (``VmHWM``; ``ru_maxrss`` would
    carry over the RSS of the process it was forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _audit_job(kind: str, d: str, key: str | None, out: Any) -> None:
    from audit import replay, verify
    from keys import NoteVerifier

    start = time.monotonic()
    cpu = time.process_time()
    if kind == "verify":
        ok = verify(Path(d), log_key=NoteVerifier.parse(key or "")).ok
    else:
        ok = replay(Path(d)) == []
    secs = time.monotonic() - start
    cpu = time.process_time() - cpu
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.put((ok, secs, peak_rss_mib(), children.ru_maxrss / 1024, cpu,
             children.ru_utime + children.ru_stime))


@dataclass
class AuditRun:
    """One ``audit verify`` or ``replay`` in a new interpreter: seconds, the peak RSS in
    MiB of that process and of its largest worker process, and the CPU seconds of each
    (the workers' together)."""

    secs: float
    rss: float
    workers_rss: float
    cpu: float
    workers_cpu: float


def audit_run(kind: str, d: Path, key: str | None = None) -> AuditRun:
    """``audit verify`` or ``replay`` of ``d`` in a new interpreter (see :class:`AuditRun`)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=_audit_job, args=(kind, str(d), key, out))
    p.start()
    ok, *figures = out.get()
    p.join()
    assert ok, f"{kind} failed"
    return AuditRun(*figures)


# --- the world ---------------------------------------------------------------------------


@dataclass
class World:
    node: RabbitNode
    directory: Directory
    credentials: Credentials
    amqp_base: str
    sender: SigningKeyPair
    sender_enc: EncryptionKeyPair
    recipient: EncryptionKeyPair
    broker_key: SigningKeyPair
    work: Path

    def url(self, user: str) -> str:
        return amqp_url_for(self.amqp_base, user, self.credentials.password(user), VHOST)

    @property
    def guest_url(self) -> str:
        return f"{self.amqp_base}/%2F"

    def beam_pid(self) -> int:
        pid = self.node.pid()
        assert pid is not None
        return pid


def make_world(work: Path) -> World:
    node = RabbitNode(NodeConfig.in_directory(work / "rabbit",
                                              name=f"infoshare-perf-{os.getpid()}"))
    node.start()
    wy = load_protocol_file(ROOT / "protocols" / "definitions" / "west-yorkshire-iisp-2016.yaml")
    sender, sender_enc = SigningKeyPair.generate(), EncryptionKeyPair.generate()
    recipient = EncryptionKeyPair.generate()
    since = datetime.now(UTC) - timedelta(days=1)
    keys = (
        KeyRecord(key_id=sender.key_id, holder="unit", owner=SENDER, use="signing",
                  public=sender.public, valid_from=since),
        KeyRecord(key_id=sender_enc.key_id, holder="unit", owner=SENDER, use="encryption",
                  public=sender_enc.public, valid_from=since),
        KeyRecord(key_id=recipient.key_id, holder="unit", owner=RECIPIENT, use="encryption",
                  public=recipient.public, valid_from=since),
    )
    directory = Directory(version=1, issued_at=since, organisations=wy.organisations,
                          protocols=(wy.protocol,), keys=keys)
    credentials = Credentials(work / "credentials.json")
    provision(node.management_url, "guest", "guest", directory, credentials, vhost=VHOST)
    return World(node, directory, credentials, f"amqp://{node.config.host}:{node.config.amqp_port}",
                 sender, sender_enc, recipient, SigningKeyPair.generate(), work)


def sdk(w: World, state: str) -> AgencyClient:
    return AgencyClient(unit=SENDER, amqp_url=w.url(amqp_user(SENDER)), signing_key=w.sender,
                        encryption_keys=[w.sender_enc], directory=lambda: w.directory,
                        broker_key=w.broker_key.public, state_dir=w.work / "sdk" / state)


def prepared(w: World, client: AgencyClient, n: int, record_bytes: int) -> list[Any]:
    record = {"identity": {"ref": "x" * record_bytes}}
    return [client.prepare(kind="referral", protocol="wy-iisp-2016",
                           purpose="police-intelligence", recipient=RECIPIENT, record=record,
                           reasons="bench", directory=w.directory,
                           consent=Consent("not_sought", GroundId("serious-crime")),
                           subject_informed=False) for _ in range(n)]


def purge(w: World) -> None:
    """Empty every queue of the vhost (notices left over, whatever a run left behind)."""
    api = ManagementAPI(w.node.management_url, "guest", "guest")
    for q in api.get(f"/api/queues/{VHOST}", "columns=name"):
        api.delete(f"/api/queues/{VHOST}/{urllib.parse.quote(q['name'], safe='')}/contents")


# --- processes: router, raw worker, consumer ----------------------------------------------


def _router_process(w: World, log_url: str, ready: Any) -> None:
    tlog = TransferLog.open(log_url, signer=NoteSigner(ORIGIN, w.broker_key), origin=ORIGIN)
    router = Router(amqp_url=w.url("infoshare-broker"), transfer_log=tlog,
                    directory=DirectoryHolder(lambda: w.directory), broker_key=w.broker_key)
    signal.signal(signal.SIGTERM, lambda *_: router.stop())
    t = threading.Thread(target=router.run)
    t.start()
    router.ready.wait(60)
    ready.set()
    t.join()
    tlog.close()


def _raw_worker_process(url: str, ready: Any) -> None:
    """Consume RAW_IN, republish each body to RAW_OUT persistently with confirms pipelined,
    ack each delivery on its publish's confirm: the least a forwarding hop does."""
    awaiting: dict[int, int] = {}
    tag = 0

    def on_message(ch: pika.channel.Channel, method: pika.spec.Basic.Deliver,
                   props: pika.spec.BasicProperties, body: bytes) -> None:
        nonlocal tag
        ch.basic_publish("", RAW_OUT, body, pika.BasicProperties(
            delivery_mode=2, type="envelope", message_id=props.message_id), mandatory=True)
        tag += 1
        awaiting[tag] = method.delivery_tag

    def on_confirm(frame: pika.frame.Method) -> None:
        done = frame.method.delivery_tag
        tags = [t for t in awaiting if t <= done] if frame.method.multiple else [done]
        for t in tags:
            ch.basic_ack(awaiting.pop(t))

    def on_channel(channel: pika.channel.Channel) -> None:
        nonlocal ch
        ch = channel
        ch.confirm_delivery(ack_nack_callback=on_confirm)
        ch.basic_qos(prefetch_count=1000,
                     callback=lambda _f: (ch.basic_consume(RAW_IN, on_message), ready.set()))

    ch: Any = None
    conn = pika.SelectConnection(pika.URLParameters(url),
                                 on_open_callback=lambda c: c.channel(on_open_callback=on_channel))
    signal.signal(signal.SIGTERM, lambda *_: conn.ioloop.add_callback_threadsafe(conn.close))
    conn.add_on_close_callback(lambda *_: conn.ioloop.stop())
    conn.ioloop.start()


def _consumer_process(url: str, queue: str, n: int, arrivals: Any, ready: Any) -> None:
    """Take ``n`` messages from ``queue``; send back each message id's arrival time
    (CLOCK_MONOTONIC, the same in every process)."""
    conn = BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1000)
    got: dict[str, float] = {}
    seen = 0

    def on(ch: Any, method: pika.spec.Basic.Deliver, props: pika.BasicProperties,
           body: bytes) -> None:
        nonlocal seen
        seen += 1
        got[str(props.message_id)] = time.monotonic()
        if seen % 100 == 0 or seen >= n:
            ch.basic_ack(method.delivery_tag, multiple=True)

    ch.basic_consume(queue, on)
    ready.set()
    while seen < n:
        conn.process_data_events(time_limit=0.05)
    conn.close()
    arrivals.put(got)


@contextmanager
def process(target: Callable[..., None], *args: Any) -> Iterator[tuple[Any, Any]]:
    """A child process that sets ``ready`` once working; SIGTERM and joined on exit."""
    ready = CTX.Event()
    p = CTX.Process(target=target, args=(*args, ready))
    p.start()
    try:
        yield p, ready
    finally:
        if p.is_alive():
            os.kill(p.pid or 0, signal.SIGTERM)
        p.join(60)
        if p.is_alive():
            p.kill()
            p.join()


@dataclass
class Drain:
    rate: float
    worker_us: float
    rabbit_us: float


def drain(w: World, n: int, out_url: str, out_queue: str,
          workers: Sequence[tuple[Callable[..., None], tuple[Any, ...]]]) -> Drain:
    """With ``n`` messages waiting, start the consumer then the workers; time until the
    consumer has all ``n``, and the workers' and the node's CPU time meanwhile."""
    arrivals = CTX.Queue()
    with process(_consumer_process, out_url, out_queue, n, arrivals) as (_, c_ready):
        c_ready.wait(60)
        beam = w.beam_pid()
        with contextlib.ExitStack() as stack:
            procs = [stack.enter_context(process(t, *a)) for t, a in workers]
            start = time.monotonic()
            cpu0 = [cpu_seconds(p.pid) for p, _ in procs]
            beam0 = cpu_seconds(beam)
            for _, ready in procs:
                ready.wait(60)
            got = arrivals.get(timeout=900)
            end = max(got.values())
            cpu1 = [cpu_seconds(p.pid) for p, _ in procs]
            beam1 = cpu_seconds(beam)
    return Drain(n / (end - start), (sum(cpu1) - sum(cpu0)) / n * 1e6, (beam1 - beam0) / n * 1e6)


def fill_raw(w: World, bodies: Sequence[bytes]) -> None:
    conn = BlockingConnection(pika.URLParameters(w.guest_url))
    ch = conn.channel()
    for q in (RAW_IN, RAW_OUT):
        ch.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_purge(q)
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2, type="envelope")
    for body in bodies:
        ch.basic_publish("", RAW_IN, body, props)
    conn.close()


def send_all(client: AgencyClient, envelopes: Sequence[Any]) -> None:
    for body, env in envelopes:
        client.publish(body, env)


# --- 1. hop ---------------------------------------------------------------------------------


def bench_hop(w: World, n: int, record_bytes: int, routers: int = 1,
              log_url: str | None = None, round_: int = 0) -> tuple[Drain, Drain]:
    client = sdk(w, f"hop-{record_bytes}-{routers}-{round_}")
    envelopes = prepared(w, client, n, record_bytes)
    fill_raw(w, [body for body, _ in envelopes])
    raw = drain(w, n, w.guest_url, RAW_OUT, [(_raw_worker_process, (w.guest_url,))])
    purge(w)
    send_all(client, envelopes)
    client.close()
    url = log_url or f"sqlite:///{w.work / f'hop-{record_bytes}.db'}"
    full = drain(w, n, w.url(amqp_user(RECIPIENT)), inbox_name(RECIPIENT),
                 [(_router_process, (w, url))] * routers)
    purge(w)
    return raw, full


# --- 2. latency -----------------------------------------------------------------------------


def paced(rate: float, n: int, offset: int = 0, every: int = 1) -> Iterator[int]:
    """``0..n-1``, each yielded at its time for an offered ``rate`` (item ``i`` at
    ``(i * every + offset) / rate`` seconds from the start)."""
    t0 = time.monotonic()
    for i in range(n):
        target = t0 + (i * every + offset) / rate
        while (now := time.monotonic()) < target:
            time.sleep(min(0.002, target - now))
        yield i


def _latencies(sent: dict[str, float], got: dict[str, float]) -> list[float]:
    return [(got[m] - sent[m]) * 1000 for m in sent if m in got]


def bench_raw_latency(w: World, rate: float, seconds: float) -> tuple[list[float], float]:
    """The raw hop at an offered ``rate``: publishers each waiting for their confirms, as
    the SDK does (as many as the full path's), the forwarding worker, a consumer; the
    floor of the full path's latency."""
    senders = _senders(rate)
    total = max(20, int(rate * seconds)) // senders * senders
    fill_raw(w, [])
    arrivals = CTX.Queue()
    sent: dict[str, float] = {}
    body = b"x" * 1400  # about an envelope of a 1 KiB record
    with contextlib.ExitStack() as stack:
        _, ready = stack.enter_context(process(_raw_worker_process, w.guest_url))
        ready.wait(60)
        _, c_ready = stack.enter_context(process(
            _consumer_process, w.guest_url, RAW_OUT, total, arrivals))
        c_ready.wait(60)
        t0 = time.monotonic()

        def send(offset: int) -> None:
            conn = BlockingConnection(pika.URLParameters(w.guest_url))
            ch = conn.channel()
            ch.confirm_delivery()
            for i in paced(rate, total // senders, offset, senders):
                mid = f"raw-{rate:.0f}-{offset}-{i}"
                sent[mid] = time.monotonic()
                ch.basic_publish("", RAW_IN, body, pika.BasicProperties(
                    delivery_mode=2, type="envelope", message_id=mid))
            conn.close()

        achieved = in_threads(send, senders, sent, t0)
        got = arrivals.get(timeout=300)
    purge(w)
    return _latencies(sent, got), achieved


def in_threads(send: Callable[[int], None], senders: int, sent: dict[str, float],
               t0: float) -> float:
    """Run ``send(0)``... ``send(senders - 1)`` side by side; the rate they achieved
    together, from ``t0`` to the last send."""
    threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(sent) / (max(sent.values()) - t0)


def _senders(rate: float) -> int:
    return max(1, int(rate // 250))  # one SDK publisher keeps up with about 400/s here


def bench_latency(w: World, rate: float, seconds: float, log_url: str,
                  routers: int = 1) -> tuple[list[float], float]:
    """Submit-to-inbox latencies in ms at an offered ``rate``, and the rate achieved."""
    total = max(20, int(rate * seconds))
    senders = _senders(rate)
    clients = [sdk(w, f"lat-{rate}-{routers}-{i}") for i in range(senders)]
    envelopes = [prepared(w, c, total // senders, 1024) for c in clients]
    total = sum(len(e) for e in envelopes)
    arrivals = CTX.Queue()
    sent: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        for _ in range(routers):
            _, ready = stack.enter_context(process(_router_process, w, log_url))
            ready.wait(60)
        _, c_ready = stack.enter_context(process(
            _consumer_process, w.url(amqp_user(RECIPIENT)), inbox_name(RECIPIENT), total,
            arrivals))
        c_ready.wait(60)
        t0 = time.monotonic()

        def send(client: AgencyClient, mine: Sequence[Any], offset: int) -> None:
            for i in paced(rate, len(mine), offset, senders):
                body, env = mine[i]
                sent[env.header.message_id] = time.monotonic()
                client.publish(body, env)

        achieved = in_threads(lambda i: send(clients[i], envelopes[i], i), senders, sent, t0)
        got = arrivals.get(timeout=300)
    for c in clients:
        c.close()
    return _latencies(sent, got), achieved


# --- 4. audit -------------------------------------------------------------------------------


def bench_audit_section(work: Path, entries: int, replay_entries: int) -> list[str]:
    signer = NoteSigner(bench_audit.ORIGIN, SigningKeyPair.generate())
    lines = []
    sizes = sorted({max(1000, entries // 10), entries})
    for size in sizes:
        d = work / f"export-{size}"
        t0 = time.monotonic()
        bench_audit.write_synthetic(d, size, signer)
        made = time.monotonic() - t0
        mib = sum(p.stat().st_size for p in d.iterdir()) / 2**20
        base = bench_audit.baseline(d)

        v = audit_run("verify", d, signer.verifier.line())
        lines.append(f"verify {size:>10,} entries ({mib:,.0f} MiB, made in {made:.0f}s): "
                     f"{size / v.secs:>9,.0f}/s  baseline {size / base:>9,.0f}/s  "
                     f"ratio {base / v.secs:.2f}  peak RSS {v.rss:.0f} MiB "
                     f"(workers {v.workers_rss:.0f})")
        shutil.rmtree(d)
    small, _ = bench_audit.build_replay_export(work, replay_entries, signer)
    base = bench_audit.baseline(small)
    per_entry = sum((small / f).stat().st_size for f in ("entries.jsonl", "evidence.jsonl")
                    ) / replay_entries
    evidence = (small / "evidence.jsonl").stat().st_size / replay_entries

    r = audit_run("replay", small)
    lines.append(f"replay {replay_entries:>10,} entries: {replay_entries / r.secs:>9,.0f}/s  "
                 f"baseline {replay_entries / base:>9,.0f}/s  ratio {base / r.secs:.3f}  "
                 f"peak RSS {r.rss:.0f} MiB (workers {r.workers_rss:.0f}); CPU µs an entry: "
                 f"replaying process {r.cpu / replay_entries * 1e6:.0f}, workers "
                 f"{r.workers_cpu / replay_entries * 1e6:.0f}")
    lines.append(f"export size per entry: {per_entry:,.0f} bytes, of which evidence "
                 f"{evidence:,.0f} ({evidence / per_entry:.0%})")
    return lines


# --- 5. the log at size ---------------------------------------------------------------------


_SIG = {"key": "ab" * 16, "sig": "A" * 86 + "=="}


def _routed(at: datetime, i: int, message_id: str) -> tuple[EntryDraft, Evidence]:
    """A routed referral's draft and evidence, as the router logs them (its header a
    stand-in whose hash the entry holds)."""
    import hashlib

    header = b'{"bench":%d}' % i
    sha = hashlib.sha256(header).hexdigest()
    draft = EntryDraft(
        at=format_time(at), message_id=message_id, kind="referral", decision="routed",
        reason=None, protocol="wy-iisp-2016", purpose="police-intelligence", sender=SENDER,
        recipient=RECIPIENT, in_reply_to=None,
        consent={"status": "not_sought", "ground": "serious-crime"}, subject_informed=False,
        data_categories=["identity"], header_sha256=sha,
        payload_sha256=hashlib.sha256(header + b"payload").hexdigest(), registry_version=1)
    return draft, Evidence(header=header, signatures=[_SIG], publisher=amqp_user(SENDER),
                           body_sha256=hashlib.sha256(header + b"body").hexdigest())


def _append(tlog: TransferLog, n: int, batch: int = 200) -> float:
    """Append ``n`` routed entries with random message ids, ``batch`` to a transaction as
    the router does; entries/s."""
    import uuid

    now = datetime(2026, 11, 30, tzinfo=UTC)
    start = time.monotonic()
    done = 0
    while done < n:
        with tlog.batch() as lb:
            for _ in range(min(batch, n - done)):
                lb.append(*_routed(now, done, str(uuid.uuid4())))
                done += 1
        tlog.checkpoint_if_due(now)
    return n / (time.monotonic() - start)


def fill_log(path: Path, signer: NoteSigner, n: int) -> None:
    """Grow the log at ``path`` to ``n`` entries cheaply: rows written straight with
    sqlite3 in large transactions, each a valid routed entry with a random message id
    (so the log's indexes grow as the router's do), with its evidence line, subtree
    hashes and frontier as :class:`TransferLog` writes them. The timed appends then go
    through the log itself."""
    import base64
    import hashlib
    import sqlite3
    import uuid

    tlog = TransferLog.open(f"sqlite:///{path}", signer=signer, origin=ORIGIN)
    tlog.close()
    # Templates from one entry made by the log's own classes, with markers in place of
    # what differs from entry to entry.
    mid0 = "00000000-0000-4000-8000-000000000000"
    draft, ev = _routed(datetime(2026, 11, 30, tzinfo=UTC), 0, mid0)
    entry0, line0 = Entry.with_evidence(draft, 0, ev)
    marks = {'"seq":0,': '"seq":{seq},', mid0: "{mid}", draft.header_sha256: "{hsha}",
             str(draft.payload_sha256): "{psha}", entry0.evidence_sha256: "{esha}",
             ev.body_sha256: "{bsha}", base64.b64encode(bytes(ev.header or b"")).decode():
             "{hb64}"}

    def template(data: bytes) -> str:
        text = data.decode().replace("{", "{{").replace("}", "}}")
        for old, new in marks.items():
            text = text.replace(old, new)
        return text

    e_tmpl, v_tmpl = template(entry0.to_bytes()), template(line0)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    (frontier,) = db.execute("SELECT hashes FROM frontier").fetchone()
    cr = merkle.CompactRange.from_bytes(frontier)
    for start in range(cr.size, n, 100_000):
        entries, evidence, subtrees = [], [], []
        for seq in range(start, min(n, start + 100_000)):
            header = b'{"bench":%d}' % seq
            hsha = hashlib.sha256(header).hexdigest()
            bsha = hashlib.sha256(header + b"body").hexdigest()
            line = v_tmpl.format(seq=seq, hb64=base64.b64encode(header).decode(),
                                 bsha=bsha).encode()
            mid = str(uuid.uuid4())
            entry = e_tmpl.format(
                seq=seq, mid=mid, hsha=hsha, esha=hashlib.sha256(line).hexdigest(),
                psha=hashlib.sha256(header + b"payload").hexdigest()).encode()
            completed: list[tuple[int, bytes]] = []
            leaf = merkle.leaf_hash(entry)
            cr.append(leaf, completed)
            entries.append((seq, mid, hsha, leaf, entry))
            evidence.append((seq, amqp_user(SENDER), bsha, line))
            subtrees += [(h // 8, (cr.size >> h) - 1, x) for h, x in completed if h % 8 == 0]
        db.executemany("INSERT INTO entries (seq, message_id, header_sha256, leaf_hash, body) "
                       "VALUES (?, ?, ?, ?, ?)", entries)
        db.executemany("INSERT INTO evidence (seq, publisher, body_sha256, line) "
                       "VALUES (?, ?, ?, ?)", evidence)
        db.executemany("INSERT INTO subtrees (level, idx, hash) VALUES (?, ?, ?)", subtrees)
        db.execute("UPDATE frontier SET size = ?, hashes = ? WHERE id = 1",
                   (cr.size, cr.to_bytes()))
        db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the timed appends start from a clean WAL
    db.close()


def bench_log_section(work: Path, entries: int, probe: int) -> list[str]:
    """Appends timed on an empty log, at a tenth of ``entries`` and at ``entries``; then
    inclusion proofs for random entries of the largest tree."""
    import random

    path = work / "big.db"
    signer = NoteSigner(ORIGIN, SigningKeyPair.generate())
    rates = []
    filled = 0.0
    for size in (0, entries // 10, entries - probe):
        tlog = TransferLog.open(f"sqlite:///{path}", signer=signer, origin=ORIGIN)
        if size > tlog.size():
            tlog.close()
            t0 = time.monotonic()
            fill_log(path, signer, size)
            filled += time.monotonic() - t0
            tlog = TransferLog.open(f"sqlite:///{path}", signer=signer, origin=ORIGIN)
        rates.append((tlog.size(), _append(tlog, probe)))
        tlog.close()
    tlog = TransferLog.open(f"sqlite:///{path}", signer=signer, origin=ORIGIN)
    size = tlog.size()
    times = []
    for seq in [0, size - 1, *random.sample(range(size), 48)]:
        t = time.monotonic()
        proof = tlog.inclusion_proof(seq, size)
        times.append((time.monotonic() - t) * 1000)
    assert merkle.verify_inclusion(tlog.entry(seq).leaf_hash, seq, size, proof, tlog.root())
    tlog.close()
    db_mib = path.stat().st_size / 2**20
    path.unlink()
    first = rates[0][1]
    appends = ", ".join(f"{rate:,.0f}/s at {at:,} ({rate / first:.2f})" for at, rate in rates)
    return [f"log of {size:,} entries (SQLite, {db_mib:,.0f} MiB, grown in {filled:.0f}s by "
            f"a direct writer): append {appends}; inclusion proof p50 "
            f"{statistics.median(times):.1f} ms, p99 {pct(times, 0.99):.1f} ms, "
            f"max {max(times):.1f} ms (50 proofs)"]


# --- 6. gateway -----------------------------------------------------------------------------


def bench_gateway_section(w: World, work: Path, clients: int, per: int) -> list[str]:
    import bench_gateway
    from gateway_world import gateway_world

    with gateway_world(w.node, work / "gw", "infoshare-bench-gw") as world:
        sdk_rate, sdk_routed, sdk_lat = bench_gateway.bench_sdk(world, work / "gw", clients, per)
        gw_rate, gw_routed, gw_lat = bench_gateway.bench_gateway(world, clients, per)
    return [f"gateway submit ({clients} clients x {per}): bare SDK {sdk_rate:,.0f}/s "
            f"p99 {pct(sdk_lat, 0.99) * 1000:.0f} ms; gateway API {gw_rate:,.0f}/s "
            f"p99 {pct(gw_lat, 0.99) * 1000:.0f} ms; ratio {gw_rate / sdk_rate:.2f}; "
            f"routed/s ratio {gw_routed / sdk_routed:.2f}"]


# --- main -----------------------------------------------------------------------------------


def hop_line(label: str, raw: Drain, full: Drain) -> str:
    return (f"{label:<28} raw {raw.rate:>7,.0f}/s  full {full.rate:>7,.0f}/s  "
            f"ratio {full.rate / raw.rate:.2f}  CPU us/msg: worker {raw.worker_us:,.0f} "
            f"router {full.worker_us:,.0f}, rabbit {raw.rabbit_us:,.0f} -> {full.rabbit_us:,.0f}")


def latency_line(label: str, lat: list[float], achieved: float) -> str:
    return (f"{label:<28} offered {achieved:>6,.0f}/s over {len(lat):,}: p50 "
            f"{statistics.median(lat):.1f} ms  p99 {pct(lat, 0.99):.1f} ms  "
            f"p99.9 {pct(lat, 0.999):.1f} ms")


def run_hop(w: World, args: argparse.Namespace) -> None:
    # Raw and full alternate, round after round: the raw hop alone moves by a factor of
    # two from minute to minute on a shared machine, and the ratio with it.
    for size, n in ((1024, args.messages), (65536, args.large_messages)):
        rounds = [bench_hop(w, n, size, round_=r) for r in range(args.rounds)]
        rounds.sort(key=lambda rf: rf[1].rate / rf[0].rate)
        raw, full = rounds[len(rounds) // 2]
        ratios = ", ".join(f"{f.rate / r.rate:.2f}" for r, f in rounds)
        print(hop_line(f"hop {size // 1024} KiB x {n:,}", raw, full)
              + f"  (median of {len(rounds)} rounds: {ratios})", flush=True)


def run_latency(w: World, args: argparse.Namespace) -> None:
    for rate in (200.0, 1000.0):
        lat, achieved = bench_raw_latency(w, rate, args.seconds)
        print(latency_line(f"raw hop at {rate:,.0f}/s", lat, achieved), flush=True)
        lat, achieved = bench_latency(w, rate, args.seconds,
                                      f"sqlite:///{w.work / f'lat-{rate:.0f}.db'}")
        print(latency_line(f"latency at {rate:,.0f}/s", lat, achieved), flush=True)


def run_routers(w: World, args: argparse.Namespace) -> None:
    with PostgresInstance(w.work / "pg") as pg:
        for routers in (1, 2):
            url = pg.create_database(f"perf{routers}")
            raw, full = bench_hop(w, args.messages, 1024, routers, url)
            print(hop_line(f"{routers} router(s), PostgreSQL", raw, full), flush=True)
            lat_url = pg.create_database(f"perflat{routers}")
            lat, achieved = bench_latency(w, 200.0, args.seconds, lat_url, routers)
            print(latency_line(f"{routers} router(s), PG, 200/s", lat, achieved), flush=True)


def run_gateway(w: World, args: argparse.Namespace) -> None:
    for line in bench_gateway_section(w, w.work, *args.gateway):
        print(line, flush=True)


def run_audit(w: World, args: argparse.Namespace) -> None:
    for line in bench_audit_section(w.work, args.entries, args.replay_entries):
        print(line, flush=True)


def run_log(w: World, args: argparse.Namespace) -> None:
    for line in bench_log_section(w.work, args.log_entries, min(20_000, args.log_entries // 3)):
        print(line, flush=True)


SECTIONS: dict[str, Callable[[World, argparse.Namespace], None]] = {
    "hop": run_hop, "latency": run_latency, "routers": run_routers, "gateway": run_gateway,
    "audit": run_audit, "log": run_log}


@contextmanager
def section(name: str) -> Iterator[None]:
    t = time.monotonic()
    yield
    print(f"  ({name}: {time.monotonic() - t:.0f}s)", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=5000, help="per throughput run at 1 KiB")
    ap.add_argument("--large-messages", type=int, default=1000, help="at 64 KiB")
    ap.add_argument("--rounds", type=int, default=3,
                    help="hop runs, raw and full alternating; the median ratio is shown")
    ap.add_argument("--seconds", type=float, default=10.0, help="per latency run")
    ap.add_argument("--entries", type=int, default=1_000_000, help="verify's log")
    ap.add_argument("--replay-entries", type=int, default=50_000)
    ap.add_argument("--log-entries", type=int, default=1_000_000,
                    help="the transfer log grown for append rate and proofs")
    ap.add_argument("--gateway", type=int, nargs=2, default=(20, 25),
                    metavar=("CLIENTS", "PER_CLIENT"))
    ap.add_argument("--only", nargs="*", default=None,
                    choices=list(SECTIONS))
    ap.add_argument("--tiny", action="store_true", help="every size small: a smoke run")
    args = ap.parse_args(argv)
    if args.tiny:
        args.messages, args.large_messages, args.seconds, args.rounds = 40, 10, 0.2, 1
        args.entries, args.replay_entries, args.log_entries = 3000, 300, 3000
        args.gateway = (2, 2)
    only = set(args.only or SECTIONS)
    started = time.monotonic()
    print(f"infoshare performance, {datetime.now(UTC).isoformat(timespec='seconds')}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="infoshare-perf-") as tmp:
        work = Path(tmp)
        work.chmod(0o711)  # PostgreSQL's own user must reach its data directory below
        w = make_world(work)
        try:
            for name in ("hop", "latency", "routers", "gateway"):
                if name in only:
                    with section(name):
                        SECTIONS[name](w, args)
        finally:
            w.node.stop()
        for name in ("audit", "log"):
            if name in only:
                with section(name):
                    SECTIONS[name](w, args)
    print(f"done in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
