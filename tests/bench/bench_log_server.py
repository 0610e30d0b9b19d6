"""Benchmark: the log server's pages with a large log, and its export over HTTP.

Not run by CI. Run from the repository root:

    python tests/bench/bench_log_server.py [--entries 100000] [--requests 200]

Builds a transfer log of ``--entries`` entries (varied purposes, months,
decisions, grounds and units; a checkpoint every 1,000 as the router signs
them) on SQLite, indexes and verifies it as ``infoshare log serve`` does at
its first start, then again as it does at a restart (baseline: the first
start), and serves it on loopback (werkzeug, threaded) to:

1. the auditors' pages, signed in as an auditor: ``--requests`` requests of
   each page, p50 and p99 in ms. Baseline: ``GET /static/audit.css`` in the same
   run (a static file: the cheapest request the server answers), each page's p99 as
   a ratio to it;
2. the export over HTTP (``/api/v1/export.tar``), in entries per second.
   Baseline: reading the same entries and evidence lines from the database
   directly (``TransferLog.entries`` and ``evidence_lines``), in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import http.cookiejar
import logging
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from envelope_factories import world  # noqa: E402
from log_factories import draft, evidence, mid  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from audit.log_index import LogIndex  # noqa: E402
from audit.web.app import create_app  # noqa: E402
from audit.web.auth import LocalToken  # noqa: E402
from audit.web.building import build  # noqa: E402
from audit.web.site import LogSite  # noqa: E402
from broker.transfer_log import TransferLog  # noqa: E402
from keys import NoteSigner, SigningKeyPair  # noqa: E402
from protocols.directory import sign_directory  # noqa: E402

ORIGIN = "bench.example/transfer-log"
TOKEN = "bench-auditor"
PURPOSES = ("safeguarding-referral", "section-47-enquiry", "police-intelligence",
            "early-help", "marac-referral")
UNITS = ("leeds-cc/front-door", "bradford-mbc/front-door", "wy-police/intelligence-bureau",
         "wy-police/safeguarding-hub", "kirklees-mbc/early-help")
REASONS = ("stale", "consent_required", "sender_not_permitted", "duplicate")


def make_log(path: Path, n: int, signer: NoteSigner) -> TransferLog:
    log = TransferLog.open(f"sqlite:///{path}", signer=signer, origin=ORIGIN)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    step = timedelta(days=365) / n
    for lo in range(0, n, 1000):
        with log.batch() as lb:
            for i in range(lo, min(n, lo + 1000)):
                ev = evidence(i)
                refused = i % 7 == 0
                consent = ({"status": "given", "ground": None} if i % 3 == 0 else
                           {"status": "not_sought", "ground": ("serious-crime" if i % 2
                                                               else "child-significant-harm")})
                assert ev.header is not None
                lb.append(draft(
                    i, at=(start + step * i).strftime("%Y-%m-%dT%H:%M:%SZ"), message_id=mid(i),
                    purpose=PURPOSES[i % len(PURPOSES)], sender=UNITS[i % len(UNITS)],
                    recipient=UNITS[(i + 2) % len(UNITS)], consent=consent,
                    decision="refused" if refused else "routed",
                    reason=REASONS[i % len(REASONS)] if refused else None,
                    header_sha256=hashlib.sha256(ev.header).hexdigest()), ev)
        log.checkpoint(start + step * min(n, lo + 1000))
    return log


def timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return sorted(out)


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-log-"))
    signer = NoteSigner(ORIGIN, SigningKeyPair.generate())
    t = time.perf_counter()
    log = make_log(work / "log.db", args.entries, signer)
    print(f"log of {args.entries:,} entries written in {time.perf_counter() - t:.1f} s",
          flush=True)
    site = LogSite(index=LogIndex(work / "index.sqlite", signer.verifier),
                   auth=LocalToken(TOKEN), live=log, registry_key=None)
    t = time.perf_counter()
    build(site)
    first = time.perf_counter() - t
    state = site.index.state()
    assert state.ok and state.checkpoint_size == args.entries, state
    # A restart of `infoshare log serve` on the same index: it takes the index up again
    # (its tiles checked against the signed root) and verifies only what is new.
    site = LogSite(index=LogIndex(work / "index.sqlite", signer.verifier),
                   auth=LocalToken(TOKEN), live=log, registry_key=None)
    t = time.perf_counter()
    build(site)
    again = time.perf_counter() - t
    assert site.index.state() == state
    print(f"start of the log server (index and verify the whole log): {first:6.1f} s "
          "(baseline)")
    print(f"restart on the index it left:                             {again:6.1f} s "
          f"(x{again / first:.3f} the baseline)", flush=True)
    # Every entry names registry version 7: the entry page re-runs its decision against
    # that signed directory, and the export carries it.
    w = world()
    document = sign_directory(w.directory, w.registry)
    site.registry_key = w.registry.public
    site.fetch_directory = lambda _version, _reader: document
    server = make_server("127.0.0.1", 0, create_app(site), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    html = opener.open(base + "/sign-in").read().decode()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert csrf
    opener.open(base + "/sign-in", urllib.parse.urlencode(
        {"token": TOKEN, "csrf_token": csrf.group(1), "next": "/timeline"}).encode()).read()

    def get(path: str) -> None:
        with opener.open(base + path) as r:
            r.read()

    pages = {
        "stylesheet (baseline)": "/static/audit.css",
        "timeline": "/timeline",
        "timeline, purpose and decision": "/timeline?purpose=police-intelligence&decision=refused",
        "timeline, unit and dates": "/timeline?unit=leeds-cc/front-door&from=2025-03-01"
                                    "&to=2025-04-30",
        "timeline, page 100": f"/timeline?before={args.entries - 5000}",
        "entry (proof, replay)": f"/entries/{args.entries // 2}",
        "charts page": "/charts",
        "chart SVG purpose-month": "/charts/purpose-month.svg",
        "report (1,000 rows)": "/report?purpose=early-help",
    }
    results = {}
    for name, path in pages.items():
        get(path)  # warm
        results[name] = timed(lambda p=path: get(p), args.requests)  # type: ignore[misc]
    baseline = pct(results["stylesheet (baseline)"], 0.99)
    print(f"\npages with {args.entries:,} entries, {args.requests} requests each "
          "(ms; p99 as a ratio to the baseline's p99)")
    for name, xs in results.items():
        print(f"  {name:34s} p50 {pct(xs, .5):7.1f}  p99 {pct(xs, .99):7.1f}  "
              f"x{pct(xs, .99) / baseline:6.1f}")

    def direct() -> None:
        n = 0
        for _e, _v in zip(log.entries(0, args.entries), log.evidence_lines(0, args.entries),
                          strict=True):
            n += 1
        assert n == args.entries

    request = urllib.request.Request(base + "/api/v1/export.tar",
                                     headers={"Authorization": f"Bearer {TOKEN}"})

    def over_http() -> None:
        total = 0
        with urllib.request.urlopen(request) as r:
            while chunk := r.read(1 << 20):
                total += len(chunk)
        assert total > 0

    d = min(timed(direct, 3))
    h = min(timed(over_http, 3))
    print(f"\nexport of {args.entries:,} entries with evidence")
    print(f"  from the database directly (baseline) {args.entries / d:12,.0f} entries/s")
    print(f"  over HTTP (/api/v1/export.tar)        {args.entries / h:12,.0f} entries/s  "
          f"(x{(args.entries / h) / (args.entries / d):.2f} the baseline's rate)")
    server.shutdown()
    log.close()
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
