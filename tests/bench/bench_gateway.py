"""Gateway API against the bare SDK, in one run: submissions/s and submit-to-routed latency.

    .venv/bin/python tests/bench/bench_gateway.py [--clients 20] [--per-client 25]

Starts a private RabbitMQ node, the registry, a real router, and a Leeds and a
police gateway (served over HTTP from threads). Then:

1. SDK baseline: ``--clients`` threads each send ``--per-client`` referrals
   with ``AgencyClient.send`` as a unit that no gateway reads
   (bradford-mdc/front-door); a receiver thread takes the notices, and the
   time each routed notice is taken is its message's end;
2. gateway: as many threads each POST the same referrals to the Leeds
   gateway's API (leeds-cc/childrens-social-care); a message's end is when the
   gateway has committed its routed notice, from when its status says routed.

Prints submissions/s (all submitted over the time until the last was accepted),
routed/s (all over the time until the last was routed) and submit-to-routed
p50/p99, each with its ratio to the baseline.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from gateway_world import CSC, POLICE_INTEL, PROTOCOL, gateway_world  # noqa: E402

from agency.client import AgencyClient  # noqa: E402
from broker.host_config import load as load_broker_config  # noqa: E402
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


def _register_bare(w: Any, now: datetime) -> tuple[Any, Any]:
    """The bare SDK unit's keys, registered as an administrator would; once the router
    has them."""
    made = new_keys("unit", BARE)
    version = w.admin.post("/organisations/bradford-mdc/units/front-door/keys", {
        **{use: f.to_json() for use, f in made.files.items()},
        "valid_from": format_time(now)})["version"]
    while w.router_directory.version < version:
        time.sleep(0.1)  # the router takes the new directory within its refresh interval
    return made.signing, made.encryption


def bench_sdk(w: Any, home: Path, clients: int, per: int
              ) -> tuple[float, float, list[float]]:
    signing, enc = _register_bare(w, datetime.now(UTC) - timedelta(minutes=1))
    creds = Credentials(home / "credentials.json")
    config = load_broker_config(home)
    registry = RegistryClient(config.registry_url,
                              (home / "registry.token").read_text().strip(), w.registry_key)
    broker_key = parse_public_key_text((home / "broker.signing.pub").read_text())
    sent_at: dict[str, float] = {}
    routed_at: dict[str, float] = {}

    def took(notices: Any) -> None:
        # Told of each round's notices as they are taken from the inbox.
        now = time.monotonic()
        for n in notices:
            if n.message_id and n.decision == "routed":
                routed_at.setdefault(n.message_id, now)

    client = AgencyClient(unit=BARE, amqp_url=amqp_url_for(
        config.amqp_urls[0], "bradford-mdc.front-door", creds.password("bradford-mdc.front-door"),
        config.vhost), signing_key=signing, encryption_keys=[enc], directory=registry.directory,
        broker_key=broker_key, state_dir=home / "bare" / "state", notice_sink=took)
    total = clients * per
    stop = threading.Event()

    def receiver() -> None:
        while not stop.is_set() and len(routed_at) < total:
            client.receive(home / "bare" / "inbox", idle_timeout=0.2)

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
    rt.join(timeout=300)
    stop.set()
    lat = [routed_at[m] - sent_at[m] for m in sent_at if m in routed_at]
    assert len(lat) == total, f"{total - len(lat)} never routed"
    return total / submit_time, total / (max(routed_at.values()) - start), lat


def bench_gateway(w: Any, clients: int, per: int) -> tuple[float, float, list[float]]:
    gw = w.leeds
    body = {"kind": "referral", "protocol": PROTOCOL, "purpose": "police-intelligence",
            "recipient": POLICE_INTEL, "record": RECORD, "reasons": "bench",
            "consent": "not_sought", "ground": "serious-crime", "subject_informed": False}
    sent_at: dict[str, float] = {}
    routed_at: dict[str, float] = {}
    accepted: list[float] = []
    lock = threading.Lock()
    # The end of a message is when the gateway has committed its routed notice (a case
    # system asking from then on sees it routed), as the SDK's is when it takes it.
    on_notices = gw.gateway._on_notices

    def took(notices: Any) -> None:
        on_notices(notices)
        now = time.monotonic()
        for n in notices:
            if n.message_id and n.decision == "routed":
                routed_at.setdefault(n.message_id, now)

    for unit in gw.gateway.units:
        gw.gateway.client(unit)._notice_sink = took

    def client() -> None:
        for _ in range(per):
            t0 = time.monotonic()
            status, doc = gw.call(CSC, "POST", "/messages", body)
            assert status == 202, doc
            with lock:
                sent_at[doc["message_id"]] = t0
                accepted.append(time.monotonic())

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    submit_rate = clients * per / (max(accepted) - start)
    deadline = time.monotonic() + 300
    while any(m not in routed_at for m in sent_at):
        assert time.monotonic() < deadline, "never routed"
        time.sleep(0.05)
    routed_rate = len(sent_at) / (max(routed_at[m] for m in sent_at) - start)
    return submit_rate, routed_rate, [routed_at[m] - sent_at[m] for m in sent_at]


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
                sdk_rate, sdk_routed, sdk_lat = bench_sdk(world, base / "world",
                                                          args.clients, args.per_client)
                gw_rate, gw_routed, gw_lat = bench_gateway(world, args.clients,
                                                           args.per_client)
        finally:
            node.stop()
    n = args.clients * args.per_client
    print(f"{args.clients} concurrent clients, {n} referrals each way (1 KiB records)")
    print(f"{'':24} {'submissions/s':>14} {'routed/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, rate, routed, lat in (("bare SDK (baseline)", sdk_rate, sdk_routed, sdk_lat),
                                    ("gateway API", gw_rate, gw_routed, gw_lat)):
        print(f"{name:24} {rate:14.0f} {routed:9.0f} {statistics.median(lat) * 1000:8.0f} "
              f"{_pct(lat, 0.99) * 1000:8.0f}")
    print(f"gateway / baseline: submissions/s x{gw_rate / sdk_rate:.2f}, "
          f"routed/s x{gw_routed / sdk_routed:.2f}, "
          f"p50 x{statistics.median(gw_lat) / statistics.median(sdk_lat):.2f}, "
          f"p99 x{_pct(gw_lat, 0.99) / _pct(sdk_lat, 0.99):.2f}")

if __name__ == "__main__":
    main()
