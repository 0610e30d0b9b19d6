"""Benchmark: read /api/v1/directory from a served registry under a short local load.

Not run by CI. Builds a registry in a temporary data directory (the West
Yorkshire protocol, two keys per unit, registered from their key files), serves it with
gunicorn (or werkzeug, threaded) on 127.0.0.1, then reads the directory from
a few client threads for a bounded number of requests and prints p50/p99
latency and requests per second. The gunicorn server is started as an
operator would (``infoshare registry serve --port 0``), its port read from the
line it prints::

    python tests/bench/bench_registry.py [--clients 4] [--requests 500] [--workers 2]

Both servers are measured in the same run: werkzeug's threaded server is the
baseline, and gunicorn's figure is printed as a ratio to it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from keys import new_keys  # noqa: E402
from registry.changes import KeyOwner  # noqa: E402
from registry.datadir import create_data_dir  # noqa: E402
from registry.store import Store  # noqa: E402

PASSPHRASE = "bench-passphrase, long enough"
WY_FILE = ROOT / "protocols" / "definitions" / "west-yorkshire-iisp-2016.yaml"


def build(data_dir: Path) -> str:
    dd, key = create_data_dir(data_dir, PASSPHRASE.encode())
    store = Store(dd.database_url, signing_key=key)
    store.initialise(actor="bench")
    store.load_protocol(WY_FILE.read_text("utf-8"), actor="bench")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for unit in store.directory().units():
        store.register_keys(KeyOwner("unit", unit.address), new_keys("unit", unit.address).files,
                            start, actor="bench")
    _, secret = store.create_token("agency", "bench", actor="bench")
    store.close()
    return secret


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the registry did not start")


def listening_port(server: subprocess.Popen[str]) -> int:
    """The port ``registry serve --port 0`` says it got."""
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("registry listening on "):
            return int(line.rsplit(":", 1)[1])
    raise SystemExit("the registry did not start")


def client(port: int, token: str, count: int, out: list[float], errors: list[int],
           deadline: float) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        conn.request("GET", "/api/v1/directory", headers=headers)
        response = conn.getresponse()
        response.read()
        out.append(time.perf_counter() - t0)
        if response.status != 200:
            errors.append(response.status)
    conn.close()


@dataclass
class Measured:
    server: str
    size: int
    latencies: list[float]
    errors: int
    elapsed: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed

    def line(self) -> str:
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (f"{self.server}: GET /api/v1/directory ({self.size} bytes), "
                f"{len(ordered)} requests, {self.errors} errors: p50 "
                f"{statistics.median(ordered) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
                f"{self.rate:.0f} requests/s")


def measure(server_kind: str, data_dir: Path, token: str, args: argparse.Namespace) -> Measured:
    env = {**os.environ, "INFOSHARE_REGISTRY_PASSPHRASE": PASSPHRASE, "PYTHONPATH": str(ROOT)}
    if server_kind == "gunicorn":
        command = [sys.executable, "-m", "infoshare.cli", "registry", "serve", "--home",
                   str(data_dir), "--port", "0", "--workers", str(args.workers)]
    else:
        port = free_port()
        command = [sys.executable, "-c", (
            "from werkzeug.serving import run_simple; "
            "from registry.app import create_app; "
            f"run_simple('127.0.0.1', {port}, "
            f"create_app({{'REGISTRY_DATA_DIR': {str(data_dir)!r}}}), threaded=True)")]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        if server_kind == "gunicorn":
            port = listening_port(server)
        wait_for(port, time.monotonic() + 30)
        # Warm up: every worker opens its database and parses once.
        client(port, token, 20, [], [], time.monotonic() + 10)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/v1/directory", headers={"Authorization": f"Bearer {token}"})
        size = len(conn.getresponse().read())
        conn.close()
        latencies: list[float] = []
        errors: list[int] = []
        deadline = time.monotonic() + args.max_seconds
        threads = [threading.Thread(target=client, args=(port, token, args.requests, latencies,
                                                         errors, deadline))
                   for _ in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    return Measured(server_kind, size, latencies, len(errors), elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=500, help="per client")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "registry"
        token = build(data_dir)
        # The baseline: werkzeug's threaded development server, measured in this run.
        baseline = measure("werkzeug", data_dir, token, args)
        served = measure("gunicorn", data_dir, token, args)
    print(f"clients={args.clients} requests per client={args.requests} "
          f"gunicorn workers={args.workers}")
    print(baseline.line())
    print(served.line())
    print(f"gunicorn / werkzeug: {served.rate / baseline.rate:.2f}x the requests per second")


if __name__ == "__main__":
    main()
