"""Soak: 100,000 messages through two routers while faults are injected on a timer.

    python tests/bench/soak_faults.py [--messages 100000] [--rate 150] [--every 20] [--seed N]

Needs root (PostgreSQL runs as its own user) and Debian's rabbitmq-server and
postgresql. Starts its own RabbitMQ node, a registry served over HTTP, a
private PostgreSQL for the transfer log, two routers (``infoshare broker
run``), three senders and two SDK recipients, all as processes, exactly as the
fault scenarios do (``tests/faults/harness.py``). Every ``--every`` seconds
while the senders send, one fault, chosen at random:

- kill -9 a router (a supervisor starts another),
- kill -9 the RabbitMQ node and start it again,
- stop PostgreSQL for 10 s,
- kill -9 a recipient (it is started again),
- take the registry away for 10 s.

Then it waits for everything to settle and runs the same checker as the fault
suite: lost, duplicated and unexpected messages, and a verified and replayed
export of the log. It prints one line per fault with the time to recover (from
the fault's end to the first message routed again) and a summary table.
Exit status 0 when every count is 0 and the log verifies.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "faults")]

from harness import (  # noqa: E402
    RECIPIENTS,
    SENDERS,
    Fault,
    Process,
    RegistryServer,
    Router,
    Scenario,
)

from broker.node import NodeConfig, RabbitNode  # noqa: E402
from broker.postgres import PostgresInstance  # noqa: E402

OUTAGE = 10.0


class Soak:
    def __init__(self, s: Scenario, node: RabbitNode, pg: PostgresInstance,
                 registry: RegistryServer, rng: random.Random) -> None:
        self.s, self.node, self.pg, self.registry, self.rng = s, node, pg, registry, rng
        self.routers: list[Router] = []
        self.recipients: dict[str, Process] = {}

    def kill_router(self) -> None:
        victim = self.rng.randrange(len(self.routers))
        self.routers[victim] = self.s.crash_router(self.routers[victim])

    def restart_rabbitmq(self) -> None:
        pid = self.node.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        self.node.stop()
        self.node.start()
        self.s.faults.append(Fault("rabbitmq kill -9 and start", time.time()))

    def stop_postgres(self) -> None:
        self.pg.stop()
        time.sleep(OUTAGE)  # the fault lasts this long
        self.pg.start()
        self.s.faults.append(Fault("postgres stopped 10 s", time.time()))

    def kill_recipient(self) -> None:
        unit = self.rng.choice(RECIPIENTS)
        self.recipients[unit].kill()
        self.recipients[unit] = self.s.start_recipient(unit)
        self.s.faults.append(Fault("recipient kill -9", time.time()))

    def registry_down(self) -> None:
        self.registry.stop()
        time.sleep(OUTAGE)
        self.registry.start()
        self.s.faults.append(Fault("registry down 10 s", time.time()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=150.0, help="per sender, messages/s")
    parser.add_argument("--every", type=float, default=20.0, help="seconds between faults")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="infoshare-soak-"))
    os.chmod(work, 0o711)  # PostgreSQL runs as its own user and must reach its directory
    print(f"soak in {work}: {args.messages} messages, a fault every {args.every:.0f} s, "
          f"seed {seed}", flush=True)
    node = RabbitNode(NodeConfig.in_directory(work / "rabbit",
                                              name=f"infoshare-soak-{os.getpid()}"))
    pg = PostgresInstance(work / "postgres")
    registry = RegistryServer(work / "registry-home")
    node.start()
    pg.start()
    started = time.monotonic()
    try:
        url = pg.create_database("soak")
        s = Scenario("soak", work / "scenario", registry, [node], log_url=url)
        soak = Soak(s, node, pg, registry, rng)
        try:
            soak.routers = [s.start_router(), s.start_router()]
            soak.recipients = {unit: s.start_recipient(unit) for unit in RECIPIENTS}
            per = args.messages // len(SENDERS)
            counts = [per + (1 if i < args.messages % len(SENDERS) else 0)
                      for i in range(len(SENDERS))]
            for unit, count in zip(SENDERS, counts, strict=True):
                s.start_sender(unit, count, rate=args.rate)
            faults = [soak.kill_router, soak.restart_rabbitmq, soak.stop_postgres,
                      soak.kill_recipient, soak.registry_down]
            while any(p.alive for p in s.senders.values()):
                time.sleep(args.every)  # faults on a timer: this is the timer
                if any(p.alive for p in s.senders.values()):
                    fault = rng.choice(faults)
                    print(f"{time.monotonic() - started:7.1f}s fault: {fault.__name__}",
                          flush=True)
                    fault()
            outcome = s.finish(settle_timeout=1800, interval=5.0)
        finally:
            s.cleanup()
    finally:
        registry.stop()
        pg.stop()
        node.stop()
    elapsed = time.monotonic() - started
    by_kind: dict[str, list[float]] = {}
    for f in outcome.faults:
        if f.recovered is not None:
            by_kind.setdefault(f.what, []).append(f.recovered)
    lost, duplicated, unexpected = outcome.result.counts
    print()
    print("| messages | faults injected | lost | duplicated | unexpected | log | seconds |")
    print("|---|---|---|---|---|---|---|")
    kinds = ", ".join(f"{len(v)} x {k}" for k, v in sorted(by_kind.items()))
    print(f"| {outcome.messages} | {kinds} | {lost} | {duplicated} | {unexpected} | "
          f"{'verifies' if outcome.log.ok else 'FAILS'} | {elapsed:.0f} |")
    print()
    print("| fault | count | recovery median (s) | recovery max (s) |")
    print("|---|---|---|---|")
    for kind, times in sorted(by_kind.items()):
        print(f"| {kind} | {len(times)} | {statistics.median(times):.2f} | {max(times):.2f} |")
    print()
    print(outcome.result.line())
    print(outcome.log.line())
    clean = outcome.result.counts == (0, 0, 0) and outcome.log.ok and not outcome.notes["dead"]
    if clean and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work} for inspection: {outcome.result.examples()} {outcome.log.detail}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
