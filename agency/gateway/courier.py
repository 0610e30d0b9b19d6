"""The gateway's background work: publishing what was accepted, receiving each unit's inbox
(the broker's notices among it), and the folders.

Publishing waits for a publisher confirm per message (wire spec 5), one round
trip to RabbitMQ each. One connection would publish one message per round
trip; so a unit's queue is split among :data:`PUBLISHERS` threads, each with
its own connection (the SDK keeps one per thread), and that many confirms are
in flight at once. The batch is then recorded as submitted in one commit.
Publishing the same bytes twice is harmless (the broker logs a redelivery
once), and every message of a batch is published by exactly one thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from agency.client import AgencyClient, PublishOutcome
from agency.errors import ClientError
from agency.gateway.errors import GatewayError
from agency.gateway.service import Gateway
from protocols.envelope import ParsedEnvelope
from protocols.errors import ProtocolsError

__all__ = ["PUBLISHERS", "Courier", "PublishPool"]

log = logging.getLogger("infoshare.gateway")

#: Publishing threads, each with its own AMQP connection: confirms in flight at once.
PUBLISHERS = 8

_Job = tuple[AgencyClient, Sequence[tuple[bytes, ParsedEnvelope]],
             list[PublishOutcome], threading.Event]


class PublishPool:
    """Threads that publish parts of a batch side by side, each on its own connections."""

    def __init__(self, size: int = PUBLISHERS) -> None:
        self._queues: list[queue.SimpleQueue[_Job | None]] = [
            queue.SimpleQueue() for _ in range(size)]
        self._threads = [threading.Thread(target=self._work, args=(q,), daemon=True,
                                          name=f"gateway-publish-{i}")
                         for i, q in enumerate(self._queues)]
        for t in self._threads:
            t.start()

    def publish(self, client: AgencyClient, envelopes: Sequence[tuple[bytes, ParsedEnvelope]]
                ) -> Mapping[str, PublishOutcome]:
        """Publish ``envelopes`` split among the threads; the outcome of each attempted."""
        parts = [envelopes[i::len(self._queues)] for i in range(len(self._queues))]
        jobs: list[tuple[Sequence[tuple[bytes, ParsedEnvelope]], list[PublishOutcome],
                         threading.Event]] = []
        for q, part in zip(self._queues, parts, strict=True):
            if part:
                results: list[PublishOutcome] = []
                done = threading.Event()
                jobs.append((part, results, done))
                q.put((client, part, results, done))
        outcomes: dict[str, PublishOutcome] = {}
        for part, got, finished in jobs:
            finished.wait()
            for (_, env), outcome in zip(part, got, strict=False):
                outcomes[env.header.message_id] = outcome
        return outcomes

    def close(self) -> None:
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join(timeout=10)

    @staticmethod
    def _work(jobs: queue.SimpleQueue[_Job | None]) -> None:
        used: set[int] = set()
        clients: list[AgencyClient] = []
        while (job := jobs.get()) is not None:
            client, part, results, done = job
            if id(client) not in used:
                used.add(id(client))
                clients.append(client)
            try:
                results.extend(client.publish_many(part))
            except Exception as e:  # the batch's publisher must hear of any failure
                log.error("publishing failed unexpectedly (%s)", type(e).__name__)
            finally:
                done.set()
        for client in clients:  # this thread's connections
            client.close()


@dataclass
class Courier:
    """The gateway's background work: publish, receive per unit, and the folders."""

    gateway: Gateway
    folder_step: Callable[[], None] | None = None
    idle: float = 0.5
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _pool: PublishPool | None = None

    def start(self) -> None:
        self._pool = PublishPool()
        self._threads = [threading.Thread(target=self._publisher, name="gateway-publisher",
                                          daemon=True)]
        for unit in self.gateway.units:
            self._threads.append(threading.Thread(target=self._receiver, args=(unit,),
                                                  name=f"gateway-receive-{unit}", daemon=True))
        if self.folder_step is not None:
            self._threads.append(threading.Thread(target=self._folders, name="gateway-folders",
                                                  daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self.gateway.wake.set()
        for t in self._threads:
            t.join(timeout=10)
        if self._pool is not None:
            self._pool.close()

    def _guarded(self, what: str, step: Callable[[], object]) -> bool:
        try:
            step()
            return True
        except (GatewayError, ClientError, ProtocolsError) as e:
            log.warning("%s failed (%s)", what, getattr(e, "code", type(e).__name__))
        except Exception as e:  # a background thread must outlive any one failure
            log.error("%s failed unexpectedly (%s)", what, type(e).__name__)
        return False

    def _publisher(self) -> None:
        pool = self._pool
        publish = pool.publish if pool is not None else None
        delay = 0.25
        while not self._stop.is_set():
            self.gateway.wake.clear()
            ok = self._guarded("publishing", lambda: self.gateway.publish_pending(publish))
            if ok and not self.gateway.store.pending_ids(limit=1):
                delay = 0.25
                # Woken at once by a submission in this process; others are polled.
                self.gateway.wake.wait(0.05)
            else:
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _receiver(self, unit: str) -> None:
        client = self.gateway.client(unit)
        inbox_dir = client.state_dir.parent / "unused-inbox"
        delay = 0.25
        while not self._stop.is_set():
            ok = self._guarded(f"receiving for {unit}",
                               lambda: (client.receive(inbox_dir, idle_timeout=self.idle),
                                        client.send_pending_receipts()))
            if ok:
                delay = 0.25
            else:
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _folders(self) -> None:
        assert self.folder_step is not None
        while not self._stop.is_set():
            self._guarded("folders", self.folder_step)
            self._stop.wait(0.2)

