"""Gateway API against the bare SDK, in one run: submissions/s and submit-to-routed latency.

    .venv/bin/python tests/bench/bench_gateway.py [--clients 20] [--per-client 25]

Starts a private RabbitMQ node, the registry, a real router, and a Leeds and a
police gateway (served over HTTP from threads). Then:

1. SDK baseline: ``--clients`` threads each send ``--per-client`` referrals
   with ``AgencyClient.send`` as a unit that no gateway reads
   (bradford-mdc/front-door); a receiver thread takes the notices;
2. gateway: as many threads each POST the same referrals to the Leeds
   gateway's API (leeds-cc/childrens-social-care) and poll the message's status
   until it is routed.

Prints submissions/s (the time for all submissions to be accepted) and
submit-to-routed-notice p50/p99, each with its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from gateway_world import CSC, POLICE_INTEL, PROTOCOL, gateway_world  # noqa: E402

from agency.client import AgencyClient  # noqa: E402
from broker.node import NodeConfig, RabbitNode  # noqa: E402
from broker.topology import Credentials, amqp_url_for  # noqa: E402
from keys import new_keys, parse_public_key_text  # noqa: E402
from protocols.directory import format_time  # noqa: E402
from protocols.model import Consent, GroundId  # noqa: E402
from registry.client import RegistryClient  # noqa: E402

BARE = "bradford-mdc/front-door"
RECORD = {"concern": {"summary": "x" * 900}}


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def bench_sdk(world: object, home: Path, clients: int, per: int) -> tuple[float, list[float]]:
    w = world  # type: ignore[assignment]
    now = datetime.now(UTC) - timedelta(minutes=1)
    made = new_keys("unit", BARE)
    signing, enc = made.signing, made.encryption
    assert enc is not None
    version = w.admin.post("/organisations/bradford-mdc/units/front-door/keys", {  # type: ignore[attr-defined]
        **{use: f.to_json() for use, f in made.files.items()},
        "valid_from": format_time(now)})["version"]
    while w.router_directory.version < version:  # type: ignore[attr-defined]
        time.sleep(0.1)  # the router takes the new directory within its refresh interval
    creds = Credentials(home / "credentials.json")
    dep = (home / "deployment.json").read_text()
    import json
    d = json.loads(dep)
    registry = RegistryClient(d["registry_url"], d["agency_token"], w.registry_key)  # type: ignore[attr-defined]
    broker_key = parse_public_key_text((home / "broker-key.pub").read_text())
    client = AgencyClient(unit=BARE, amqp_url=amqp_url_for(  # type: ignore[arg-type]
        d["amqp_url"], "bradford-mdc.front-door", creds.password("bradford-mdc.front-door"),
        d["vhost"]), signing_key=signing, encryption_keys=[enc], directory=registry.directory,
        broker_key=broker_key, state_dir=home / "bare" / "state")
    sent_at: dict[str, float] = {}
    routed_at: dict[str, float] = {}
    total = clients * per
    stop = threading.Event()

    def receiver() -> None:
        seen = 0
        while not stop.is_set() and seen < total:
            client.receive(home / "bare" / "inbox", idle_timeout=0.2)
            for n in client.store.notices():
                if n.message_id and n.message_id not in routed_at:
                    routed_at[n.message_id] = time.monotonic()
            seen = len(routed_at)

    def sender() -> None:
        for _ in range(per):
            t0 = time.monotonic()
            s = client.send(kind="referral", protocol=PROTOCOL, purpose="police-intelligence",
                            recipient=POLICE_INTEL, record=RECORD, reasons="bench",
                            consent=Consent("not_sought", GroundId("serious-crime")),
                            subject_informed=False)
            sent_at[s.message_id] = t0
        client.close()

    rt = threading.Thread(target=receiver)
    rt.start()
    start = time.monotonic()
    threads = [threading.Thread(target=sender) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    submit_time = time.monotonic() - start
    rt.join(timeout=120)
    stop.set()
    lat = [routed_at[m] - sent_at[m] for m in sent_at if m in routed_at]
    return total / submit_time, lat


def bench_gateway(world: object, clients: int, per: int) -> tuple[float, list[float]]:
    w = world  # type: ignore[assignment]
    gw = w.leeds  # type: ignore[attr-defined]
    body = {"kind": "referral", "protocol": PROTOCOL, "purpose": "police-intelligence",
            "recipient": POLICE_INTEL, "record": RECORD, "reasons": "bench",
            "consent": "not_sought", "ground": "serious-crime", "subject_informed": False}
    lat: list[float] = []
    accepted: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        mine = []
        for _ in range(per):
            t0 = time.monotonic()
            status, doc = gw.call(CSC, "POST", "/messages", body)
            assert status == 202, doc
            mine.append((doc["message_id"], t0))
            with lock:
                accepted.append(time.monotonic())
        for mid, t0 in mine:
            while True:
                status, doc = gw.call(CSC, "GET", f"/messages/{mid}")
                if doc["status"] in ("routed", "receipted"):
                    # updated_at is when the routed notice was taken (whole seconds);
                    # the poll bounds it from above within 100 ms.
                    with lock:
                        lat.append(time.monotonic() - t0)
                    break
                time.sleep(0.1)

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    submit_rate = clients * per / (max(accepted) - start)
    return submit_rate, lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--per-client", type=int, default=25)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        base = Path(tmp)
        node = RabbitNode(NodeConfig.in_directory(base / "rabbit", name="bench-gateway"))
        node.start()
        try:
            with gateway_world(node, base / "world", "infoshare-bench") as world:
                sdk_rate, sdk_lat = bench_sdk(world, base / "world", args.clients,
                                              args.per_client)
                gw_rate, gw_lat = bench_gateway(world, args.clients, args.per_client)
        finally:
            node.stop()
    n = args.clients * args.per_client
    print(f"{args.clients} concurrent clients, {n} referrals each way (1 KiB records)")
    print(f"{'':24} {'submissions/s':>14} {'p50 ms':>8} {'p99 ms':>8}")
    for name, rate, lat in (("bare SDK (baseline)", sdk_rate, sdk_lat),
                            ("gateway API", gw_rate, gw_lat)):
        print(f"{name:24} {rate:14.0f} {statistics.median(lat) * 1000:8.0f} "
              f"{_pct(lat, 0.99) * 1000:8.0f}")
    print(f"gateway / baseline: submissions/s x{gw_rate / sdk_rate:.2f}, "
          f"p50 x{statistics.median(gw_lat) / statistics.median(sdk_lat):.2f}, "
          f"p99 x{_pct(gw_lat, 0.99) / _pct(sdk_lat, 0.99):.2f}")


if __name__ == "__main__":
    main()
