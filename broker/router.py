"""The router: consume ``infoshare.ingress``, decide, log, deliver, notify, ack.

Order for every ingress message (wire spec 6.3), which is what makes a crash
at any point safe:

1. decide (``protocols.policy.decide`` against the current signed directory);
2. append the entry to the transfer log and commit it durably;
3. publish the unchanged envelope to the recipient's inbox (if routed) and a
   signed notice to the publishing unit, with publisher confirms and
   ``mandatory``;
4. ack the ingress message once every publish for it is confirmed.

A crash before 2 leaves nothing: the message comes back and is decided anew.
A crash after 2 leaves a logged decision whose message comes back; it is
recognised (same message id, header hash, body hash and publishing user) and
published again with the logged decision and no new entry.

Every entry is written with its evidence line (wire spec 6.1): the header
bytes and signatures as received, the publishing AMQP user and the hash of
the whole body. A body refused at check 1 names nothing from its header,
however much of the header could be read.

Throughput comes from batching without weakening that order: messages that
arrive together are decided and appended in one log transaction, and their
publishes are pipelined (confirms are awaited asynchronously, on pika's
``SelectConnection``). Nothing is acked before its entry is committed and its
publishes are confirmed.

When something fails:

- **RabbitMQ away.** The router reconnects, trying each node it was given in
  turn, at most :data:`RECONNECT_MAX` seconds apart, so that it routes again
  within about a second of a node coming back. Whatever it had taken and not
  acked comes back to it (or another router) and is recognised as above.
- **The log away** (database down, connection lost, disk full): the batch is
  held, unacked, and tried again every :data:`RECONNECT_MAX` seconds at most;
  messages wait in the queue meanwhile (the prefetch bounds what is held), and
  routing resumes as soon as a commit succeeds. Nothing is handed back, so an
  outage costs no message a delivery attempt.
- **A message that fails every time** ("poison": an exception while deciding
  or appending it): the batch is tried again one message at a time, so the
  others are routed; the failing message is handed back, and after
  :data:`POISON_ATTEMPTS` failures in this router it is dead-lettered. The
  router counts these failures itself: a crash or a lost connection hands
  back every unacked message, and RabbitMQ's delivery count cannot tell those
  apart from failures (see ``broker.topology.INGRESS_DELIVERY_LIMIT``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import pika
import pika.channel
import pika.exceptions
import pika.frame
import pika.spec

from broker.connection import connection_parameters
from broker.transfer_log import LogBatch, LogUnavailable, TransferLog
from keys import SigningKeyPair
from protocols.amqp import DELIVER, INGRESS, ingress_name
from protocols.envelope import (
    EnvelopeRefused,
    Notice,
    ParsedEnvelope,
    build_notice,
    parse_envelope,
)
from protocols.log_format import Entry, EntryDraft, Evidence, publisher_of
from protocols.model import Directory, amqp_user
from protocols.policy import decide
from protocols.reasons import Reason

log = logging.getLogger("infoshare.router")


#: Faults the crash-safety tests inject, never set in a deployment:
#: ``after_append`` exits hard right after a log commit and before any publish;
#: ``poison:<message id>`` makes deciding that message fail every time;
#: ``ack_before_commit`` acks every message as it arrives, before its entry is
#: committed: a deliberately broken router, which the fault suite must catch.
FAULT_ENV = "INFOSHARE_ROUTER_FAULT"
#: Longest wait between two attempts to reach RabbitMQ or the log.
RECONNECT_MAX = 0.5
RECONNECT_FIRST = 0.1
#: Longest wait before the router asks again whether missing ingress queues exist.
PROBE_AGAIN = 60.0
#: Seconds a publish may wait for its confirm before the router reconnects.
CONFIRM_TIMEOUT = 15.0
#: Failures of one message in this router before it is dead-lettered.
POISON_ATTEMPTS = 5


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Pending:
    """An ingress message between its log commit and its ack."""

    delivery_tag: int
    outstanding: int = 0
    failed: bool = False
    unroutable: bool = False
    keys: list[tuple[str, int]] = field(default_factory=list)
    published: float = field(default_factory=time.monotonic)


@dataclass
class _Inbound:
    delivery_tag: int
    body: bytes
    publisher: str | None  # the AMQP user_id, which RabbitMQ checked
    redelivered: bool


@dataclass
class RouterStats:
    routed: int = 0
    refused: int = 0
    redelivered: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class DirectoryHolder:
    """The directory the router decides with; it only ever moves to higher versions.

    ``refresh`` is called from a background thread; readers take the current
    reference, which is swapped atomically.
    """

    def __init__(self, fetch: Callable[[], Directory]) -> None:
        self._fetch = fetch
        self._current = fetch()

    @property
    def current(self) -> Directory:
        return self._current

    def refresh(self) -> bool:
        new = self._fetch()
        if new.version > self._current.version:
            log.info("directory version=%d (was %d)", new.version, self._current.version)
            self._current = new
            return True
        return False


class Router:
    """One router process's worker. Several may consume the same ingress queue."""

    def __init__(
        self,
        *,
        amqp_url: str | Sequence[str],
        transfer_log: TransferLog,
        directory: DirectoryHolder,
        broker_key: SigningKeyPair,
        batch_size: int = 200,
        batch_delay: float = 0.005,
        prefetch: int = 250,
        directory_refresh: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
        tls_ca: Path | None = None,
        health_file: Path | None = None,
    ) -> None:
        # Every node of the cluster, tried in turn; routers given the same nodes spread
        # over them rather than all start on the first.
        self._params = connection_parameters(
            [amqp_url] if isinstance(amqp_url, str) else amqp_url, tls_ca=tls_ca)
        for params in self._params:
            _tune(params)
        self._attempt = random.randrange(len(self._params))
        self._health_file = health_file
        self._log = transfer_log
        self._directory = directory
        self._key = broker_key
        self._batch_size = batch_size
        self._batch_delay = batch_delay
        self._prefetch = prefetch
        self._refresh_every = directory_refresh
        self._clock = clock
        self._fault, _, self._fault_arg = os.environ.get(FAULT_ENV, "").partition(":")
        self.stats = RouterStats()
        self._stop = threading.Event()
        self._connection: pika.SelectConnection | None = None
        self._channel: pika.channel.Channel | None = None
        self._inbound: list[_Inbound] = []
        self._flush_scheduled = False
        self._last_flush = 0.0  # time.monotonic() when the last batch was taken
        self._publish_tag = 0
        self._awaiting: dict[int, _Pending] = {}  # publish delivery tag -> ingress message
        self._by_publish: dict[tuple[str, int], _Pending] = {}  # (type, seq) -> message
        self._consumers: dict[str, str] = {}  # ingress queue -> consumer tag
        self._queues: list[str] = []  # the ingress queues found at connection time
        self._current: pika.ConnectionParameters | None = None
        self._last_probe: tuple[frozenset[str], float, float] = (frozenset(), 0.0, 1.0)
        self._ticks = 0
        self._held: list[_Inbound] = []  # taken while the log was away; tried again
        self._retry_scheduled = False
        self._retry_delay = RECONNECT_FIRST
        self._log_away = False
        self._failures: dict[str, int] = {}  # body hash -> failures in this router
        self.ready = threading.Event()

    # --- lifecycle -------------------------------------------------------------------

    def run(self) -> None:
        """Route until :meth:`stop`; reconnect when RabbitMQ goes away.

        Each attempt tries the next node given; the wait between attempts
        doubles from :data:`RECONNECT_FIRST` up to :data:`RECONNECT_MAX` and
        starts again once a connection was open.
        """
        backoff = RECONNECT_FIRST
        refresher = threading.Thread(target=self._refresh_loop, name="directory", daemon=True)
        refresher.start()
        while not self._stop.is_set():
            params = self._params[self._attempt % len(self._params)]
            self._attempt += 1
            try:
                consumed = self._run_connection(params)
            except (pika.exceptions.AMQPError, OSError) as e:
                log.warning("rabbitmq at %s:%s unreachable (%s); next attempt in %.1fs",
                            params.host, params.port, type(e).__name__, backoff)
                consumed = False
            if consumed:
                backoff = RECONNECT_FIRST  # it worked: try again at once, on the next node
                continue
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, RECONNECT_MAX)
        with contextlib.suppress(Exception):  # the log may be the thing that is away
            self._log.checkpoint_if_due(self._clock())

    def stop(self) -> None:
        """Stop cleanly: no new deliveries, finish what was taken, then close. Thread-safe."""
        self._stop.set()
        conn = self._connection
        if conn is not None:
            # The loop may be closing already; then there is nothing to wake.
            with contextlib.suppress(Exception):
                conn.ioloop.add_callback_threadsafe(self._begin_shutdown)

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._refresh_every):
            try:
                self._directory.refresh()
            except Exception as e:  # keep deciding with the version we have
                log.warning("directory refresh failed (%s)", type(e).__name__)
            self._consume_new_queues()

    def _wanted_queues(self) -> list[str]:
        """``infoshare.ingress`` (what no unit's queue takes) and every unit's own."""
        return [INGRESS, *sorted(ingress_name(u.address)
                                 for u in self._directory.current.units())]

    def _consume_new_queues(self) -> None:
        """Consume the ingress queues of units added to the directory since the connection
        was opened, once provisioned. Runs in the refresher thread."""
        conn, params = self._connection, self._current
        if conn is None or params is None or not self.ready.is_set():
            return
        new = frozenset(q for q in self._wanted_queues() if q not in self._queues)
        now = time.monotonic()
        missing, asked, wait = self._last_probe
        if new == missing and now - asked < wait:
            return  # asked lately; provisioning often follows the directory by a while
        # The same queues still missing are asked about less and less often.
        wait = min(wait * 2, PROBE_AGAIN) if new == missing else 1.0
        self._last_probe = (new, now, wait)
        if not new:
            return
        try:
            found = _existing_queues(params, sorted(new))
        except (pika.exceptions.AMQPError, OSError):
            return  # the next refresh looks again
        if found:
            with contextlib.suppress(Exception):  # the connection closed meanwhile
                conn.ioloop.add_callback_threadsafe(lambda: self._consume(found))

    def _run_connection(self, params: pika.ConnectionParameters) -> bool:
        """Route on one connection until it closes; True if it got as far as consuming."""
        # Delivery tags belong to a channel: whatever was taken on the last one is
        # RabbitMQ's again, so forget it.
        self._inbound.clear()
        self._held.clear()
        self._awaiting.clear()
        self._by_publish.clear()
        self._publish_tag = 0
        self._flush_scheduled = False
        self._retry_scheduled = False
        self._retry_delay = RECONNECT_FIRST
        self._log_away = False  # said again on this connection, if it still is
        self._consumers.clear()
        # Which ingress queues exist is asked first, on a connection of its own: a
        # consume on a missing queue would close the channel everything runs on.
        self._queues = _existing_queues(params, self._wanted_queues())
        self._current = params
        conn = pika.SelectConnection(
            params,
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_connection_closed,
        )
        self._connection = conn
        self._open_error: BaseException | None = None
        conn.ioloop.start()
        self._connection = None
        self._channel = None
        consumed = self.ready.is_set()
        self.ready.clear()
        if self._open_error is not None:
            raise pika.exceptions.AMQPConnectionError(str(self._open_error))
        return consumed

    def _on_open_error(self, conn: pika.SelectConnection, err: BaseException | str) -> None:
        self._open_error = err if isinstance(err, BaseException) else Exception(err)
        conn.ioloop.stop()

    def _on_connection_closed(self, conn: pika.SelectConnection, reason: BaseException) -> None:
        if not self._stop.is_set():
            log.warning("connection closed: %s", type(reason).__name__)
        conn.ioloop.stop()

    def _on_connection_open(self, conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, ch: pika.channel.Channel) -> None:
        self._channel = ch
        ch.add_on_close_callback(self._on_channel_closed)
        ch.add_on_return_callback(self._on_return)
        ch.confirm_delivery(ack_nack_callback=self._on_confirm)
        ch.basic_qos(prefetch_count=self._prefetch, callback=self._on_qos)

    def _on_qos(self, _frame: pika.frame.Method) -> None:
        assert self._channel is not None
        if self._stop.is_set():
            self._begin_shutdown()
            return
        self._channel.add_on_cancel_callback(self._on_cancelled)
        self._consume(self._queues)
        assert self._connection is not None
        self._connection.ioloop.call_later(1.0, self._tick)
        self.ready.set()
        log.info("consuming %d ingress queues", len(self._consumers))

    def _consume(self, queues: Sequence[str]) -> None:
        """Take from each queue side by side, each with its own prefetch (RabbitMQ's
        per-consumer ``basic.qos``): a flood in one never stands before another's."""
        ch = self._channel
        if ch is None or not ch.is_open or self._stop.is_set():
            return
        for queue in queues:
            if queue not in self._consumers:
                self._consumers[queue] = ch.basic_consume(queue, self._on_message)
                if queue not in self._queues:
                    self._queues.append(queue)
                    log.info("consuming %s", queue)

    def _on_cancelled(self, frame: pika.frame.Method) -> None:
        # RabbitMQ cancels a consumer whose queue was deleted (a unit removed).
        tag = frame.method.consumer_tag
        for queue, t in list(self._consumers.items()):
            if t == tag:
                del self._consumers[queue]
                self._queues.remove(queue)
                log.info("queue %s went away", queue)

    def _on_channel_closed(self, ch: pika.channel.Channel, reason: BaseException) -> None:
        if self._stop.is_set():
            log.info("channel closed: %s", reason)
        else:
            log.warning("channel closed: %s", reason)
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _begin_shutdown(self) -> None:
        ch = self._channel
        if ch is not None and ch.is_open:
            for tag in self._consumers.values():
                ch.basic_cancel(tag)
        self._consumers.clear()
        self._flush()
        self._maybe_close()

    def _maybe_close(self) -> None:
        if not self._stop.is_set():
            return
        conn = self._connection
        if conn is None:
            return
        if self._awaiting and conn.is_open:
            conn.ioloop.call_later(0.05, self._maybe_close)
            return
        if conn.is_open:
            conn.close()

    def _tick(self) -> None:
        """Once a second: give up on confirms that do not come, sign a checkpoint when
        one is due (at least every 10 s); once a minute: the counts so far, by decision
        and reason code only."""
        oldest = next(iter(self._awaiting.values()), None)
        conn = self._connection
        if (oldest is not None and conn is not None and conn.is_open
                and time.monotonic() - oldest.published > CONFIRM_TIMEOUT):
            # A quorum queue whose leader died can leave a confirm pending for minutes.
            # Everything unacked comes back on a new connection and, being logged, is
            # published again.
            log.warning("no publisher confirm for %.0fs; reconnecting", CONFIRM_TIMEOUT)
            conn.close()
            return
        if not self._held:  # while the log is away there is nothing to sign
            try:
                self._log.checkpoint_if_due(self._clock())
            except Exception as e:
                log.error("checkpoint failed (%s)", type(e).__name__)
        self._ticks += 1
        if self._health_file is not None:
            # A health check reads the file's age: fresh means consuming.
            with contextlib.suppress(OSError):
                self._health_file.touch()
        if self._ticks % 60 == 0:
            s = self.stats
            reasons = " ".join(f"{k}={v}" for k, v in sorted(s.by_reason.items()))
            log.info("stats routed=%d refused=%d redelivered=%d %s", s.routed, s.refused,
                     s.redelivered, reasons)
        conn = self._connection
        if conn is not None and conn.is_open and not self._stop.is_set():
            conn.ioloop.call_later(1.0, self._tick)

    # --- the work --------------------------------------------------------------------

    def _on_message(self, ch: pika.channel.Channel, method: pika.spec.Basic.Deliver,
                    props: pika.spec.BasicProperties, body: bytes) -> None:
        if self._fault == "ack_before_commit":
            ch.basic_ack(method.delivery_tag)  # the deliberate bug: acked before it is safe
        self._inbound.append(_Inbound(method.delivery_tag, body, publisher_of(props.user_id),
                                      bool(method.redelivered)))
        if len(self._inbound) >= self._batch_size:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._connection is not None
            # Batches start at most once per batch_delay: under load each one carries
            # what arrived meanwhile, so a commit and a flush of publishes serve many
            # messages; when the router was idle, one arriving alone waits for
            # nothing but the deliveries read with it (a timer of 0 runs after them).
            wait = self._last_flush + self._batch_delay - time.monotonic()
            self._connection.ioloop.call_later(max(0.0, wait), self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._last_flush = time.monotonic()
        if not self._inbound or self._held:
            return  # while the log is away, the retry takes what arrives with it
        batch, self._inbound = self._inbound, []
        self._route(batch)

    def _route(self, batch: list[_Inbound]) -> None:
        now = self._clock().replace(microsecond=0)
        directory = self._directory.current
        try:
            results = self._decide_batch(batch, directory, now)
        except LogUnavailable as e:
            self._hold(batch, e)
            return
        except Exception as e:
            self._isolate(batch, e)
            return
        if self._log_away:
            log.warning("transfer log back: routing again")
            self._log_away = False
            self._retry_delay = RECONNECT_FIRST
        if self._fault == "after_append":
            log.error("fault injection: exiting between append and publish")
            os._exit(137)
        for msg, entry, env in results:
            self._publish_outcome(msg, entry, env, directory)
        try:
            self._log.checkpoint_if_due(now)
        except Exception as e:  # the next tick tries again
            log.error("checkpoint failed (%s)", type(e).__name__)

    def _hold(self, batch: list[_Inbound], error: Exception) -> None:
        """Keep ``batch`` unacked and try it again later: the log is away, not the messages
        at fault. Handing them back would count against their delivery limit."""
        if not self._log_away:
            self._log_away = True
            log.error("transfer log unavailable (%s); holding what arrives, nothing acked "
                      "until it is back", type(error).__name__)
        self._held.extend(batch)
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        conn = self._connection
        if not self._retry_scheduled and conn is not None:
            self._retry_scheduled = True
            conn.ioloop.call_later(self._retry_delay, self._retry_held)
            self._retry_delay = min(self._retry_delay * 2, RECONNECT_MAX)

    def _retry_held(self) -> None:
        self._retry_scheduled = False
        try:
            self._log.size()  # a cheap look before deciding everything held again
        except Exception:
            self._schedule_retry()
            return
        batch = self._held + self._inbound
        self._held, self._inbound = [], []
        if batch:
            self._route(batch)

    def _isolate(self, batch: list[_Inbound], error: Exception) -> None:
        """Something in ``batch`` failed: route its messages one by one, so that only the
        one at fault is handed back."""
        if len(batch) > 1:
            log.error("batch of %d failed (%s); routing its messages one at a time",
                      len(batch), type(error).__name__)
            for msg in batch:
                self._route([msg])
            return
        msg = batch[0]
        key = hashlib.sha256(msg.body).hexdigest()
        failures = self._failures.get(key, 0) + 1
        log.debug("message failure", exc_info=error)
        ch = self._channel
        if ch is None or not ch.is_open:
            return
        if failures >= POISON_ATTEMPTS:
            self._failures.pop(key, None)
            log.error("message body_sha256=%s failed %d times (%s): dead-lettered", key,
                      failures, type(error).__name__)
            self._settle(ch, msg.delivery_tag, ack=False, requeue=False)
            return
        if len(self._failures) >= 10_000:  # a bound, not a cache: poison is rare
            self._failures.clear()
        self._failures[key] = failures
        log.error("message body_sha256=%s failed (%s); handed back (%d of %d)", key,
                  type(error).__name__, failures, POISON_ATTEMPTS)
        self._settle(ch, msg.delivery_tag, ack=False, requeue=True)

    def _settle(self, ch: pika.channel.Channel, delivery_tag: int, *, ack: bool = True,
                requeue: bool = False) -> None:
        if self._fault == "ack_before_commit":
            return  # acked already, on arrival
        if ack:
            ch.basic_ack(delivery_tag)
        else:
            ch.basic_nack(delivery_tag, requeue=requeue)

    def _decide_batch(self, batch: list[_Inbound], directory: Directory, now: datetime
                      ) -> list[tuple[_Inbound, Entry, ParsedEnvelope | None]]:
        """Decide and append a batch in one log transaction; committed on return.

        ``now`` has whole seconds, as entries record them, so that a replay
        re-runs the very same decision.

        Raises:
            LogUnavailable: the log cannot be written just now; nothing was.
            Exception: anything else that failed; nothing of the batch was logged.
        """
        results: list[tuple[_Inbound, Entry, ParsedEnvelope | None]] = []
        again: list[bool] = []
        # Parsing is pure: done before the log's lock is taken.
        parsed = [(msg, parse_body(msg.body)) for msg in batch]
        with self._log.batch() as lb:
            lb.prefetch(_ids_to_look_up(outcome for _, outcome in parsed))
            for msg, outcome in parsed:
                if (self._fault == "poison" and isinstance(outcome, ParsedEnvelope)
                        and outcome.header.message_id == self._fault_arg):
                    raise RuntimeError("fault injection: a message that fails every time")
                entry, env, redelivered = decide_and_append(lb, msg.body, outcome,
                                                            msg.publisher, directory, now)
                results.append((msg, entry, env))
                again.append(redelivered)
        # Committed: only now are the decisions counted and logged.
        for (_, entry, _env), redelivered in zip(results, again, strict=True):
            if redelivered:
                self.stats.redelivered += 1
                log.info("redelivery message_id=%s seq=%d", entry.message_id, entry.seq)
                continue
            _log_decision(entry)
            if entry.decision == "routed":
                self.stats.routed += 1
            else:
                self.stats.refused += 1
                reason = entry.reason or ""
                self.stats.by_reason[reason] = self.stats.by_reason.get(reason, 0) + 1
        return results

    def _publish_outcome(self, msg: _Inbound, entry: Entry, env: ParsedEnvelope | None,
                         directory: Directory) -> None:
        ch = self._channel
        if ch is None or not ch.is_open:
            return  # the ingress message comes back; it is logged, so it is republished
        pending = _Pending(delivery_tag=msg.delivery_tag)
        leaf = entry.leaf_hash.hex()
        if entry.decision == "routed" and env is not None:
            self._publish(ch, pending, routing_key=env.header.recipient, body=msg.body,
                          props=pika.BasicProperties(
                              delivery_mode=2, content_type="application/json",
                              type="envelope", message_id=env.header.message_id,
                              headers={"infoshare-seq": entry.seq, "infoshare-leaf": leaf}))
        sender = _unit_of_user(directory, msg.publisher)
        if sender is not None:
            notice = build_notice(
                Notice(message_id=entry.message_id, decision=entry.decision,
                       reason=entry.reason, seq=entry.seq,
                       at=entry.time),
                self._key,
            )
            self._publish(ch, pending, routing_key=sender, body=notice,
                          props=pika.BasicProperties(
                              delivery_mode=2, content_type="application/json", type="notice",
                              message_id=entry.message_id,
                              headers={"infoshare-seq": entry.seq, "infoshare-leaf": leaf}))
        if pending.outstanding == 0:
            self._settle(ch, msg.delivery_tag)

    def _publish(self, ch: pika.channel.Channel, pending: _Pending, *, routing_key: str,
                 body: bytes, props: pika.BasicProperties) -> None:
        ch.basic_publish(DELIVER, routing_key, body, props, mandatory=True)
        self._publish_tag += 1
        self._awaiting[self._publish_tag] = pending
        pending.outstanding += 1
        key = (str(props.type), int((props.headers or {})["infoshare-seq"]))
        self._by_publish[key] = pending
        pending.keys.append(key)

    def _on_return(self, ch: pika.channel.Channel, method: pika.spec.Basic.Return,
                   props: pika.spec.BasicProperties, body: bytes) -> None:
        # A return comes before the confirm of the same publish: the inbox does not
        # exist (a unit removed since provisioning). The ingress message is then
        # dead-lettered, not acked, so an operator still has it.
        seq = (props.headers or {}).get("infoshare-seq")
        log.error("unroutable type=%s seq=%s", props.type, seq)
        pending = self._by_publish.get((str(props.type), seq if isinstance(seq, int) else -1))
        if pending is not None:
            pending.unroutable = True

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        tag = method.delivery_tag
        multiple = bool(method.multiple)
        nack = isinstance(method, pika.spec.Basic.Nack)
        if multiple:
            # Publish tags only grow and the dict keeps insertion order: the
            # confirmed ones are a prefix, so no scan of everything in flight.
            tags = []
            for t in self._awaiting:
                if t > tag:
                    break
                tags.append(t)
        else:
            tags = [tag]
        ch = self._channel
        for t in tags:
            pending = self._awaiting.pop(t, None)
            if pending is None:
                continue
            if nack:
                pending.failed = True
            pending.outstanding -= 1
            if pending.outstanding > 0:
                continue
            for key in pending.keys:
                self._by_publish.pop(key, None)
            if ch is None or not ch.is_open:
                continue
            if pending.unroutable:
                self._settle(ch, pending.delivery_tag, ack=False, requeue=False)
            elif pending.failed:
                # Logged already: requeue, and the redelivery publishes again.
                self._settle(ch, pending.delivery_tag, ack=False, requeue=True)
            else:
                self._settle(ch, pending.delivery_tag)
        if self._stop.is_set():
            self._maybe_close()


def _existing_queues(params: pika.ConnectionParameters, names: Sequence[str]) -> list[str]:
    """Those of ``names`` that exist, asked with passive declares (which need no right).

    Raises:
        pika.exceptions.AMQPError, OSError: RabbitMQ could not be asked.
    """
    found: list[str] = []
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        for name in names:
            try:
                ch.queue_declare(name, passive=True)
            except pika.exceptions.ChannelClosedByBroker:  # 404: not provisioned (yet)
                ch = conn.channel()
                continue
            found.append(name)
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            conn.close()
    return found


def _tune(params: pika.ConnectionParameters) -> None:
    params.connection_attempts = 1  # the router's own loop retries, on the next node
    # A node that is paused or cut off is noticed within seconds, not minutes: TCP
    # and the AMQP handshake time out, and two missed heartbeats close a connection.
    params.socket_timeout = 5
    params.stack_timeout = 10
    params.heartbeat = 10
    params.blocked_connection_timeout = 60


def parse_body(body: bytes) -> ParsedEnvelope | Reason:
    """Check 1: the envelope, or the reason it fails (pure, so done outside the log's lock)."""
    try:
        return parse_envelope(body)
    except EnvelopeRefused as e:
        return e.reason


def decide_and_append(lb: LogBatch, body: bytes, parsed: ParsedEnvelope | Reason,
                      publisher: str | None, directory: Directory, now: datetime
                      ) -> tuple[Entry, ParsedEnvelope | None, bool]:
    """Decide on one ingress body and append its entry and evidence, unless it is a
    redelivery (6.3). Returns the entry (the logged one for a redelivery), the
    envelope if it passed check 1, and whether it was a redelivery.

    ``parsed`` is :func:`parse_body` of ``body``; ``publisher`` the AMQP
    user_id. Redeliveries match on message id, header hash, body hash and
    publisher (docs/internals.md, "Readings of the wire spec").
    """
    body_sha = hashlib.sha256(body).hexdigest()
    if isinstance(parsed, Reason):
        # Check 1 failed: whatever of the header could be read is not logged (6.1).
        logged = lb.find_logged(None, body_sha, body_sha, publisher)
        if logged is not None:
            return logged, None, True
        draft = EntryDraft.unreadable(parsed, body_sha, at=now,
                                      registry_version=directory.version)
        entry = lb.append(draft, Evidence.of(body_sha, None, publisher))
        return entry, None, False
    env = parsed
    logged = lb.find_logged(env.header.message_id, env.header_sha256, body_sha, publisher)
    if logged is not None:
        return logged, env, True
    decision = decide(env.submission(publisher), directory, lb, now)
    draft = EntryDraft.for_envelope(env, decision, at=now, registry_version=directory.version)
    entry = lb.append(draft, Evidence.of(body_sha, env, publisher))
    return entry, env, False


def _ids_to_look_up(outcomes: Iterable[ParsedEnvelope | Reason]) -> set[str]:
    """Every message id a batch's decisions may look up: its own and those it answers."""
    ids: set[str] = set()
    for o in outcomes:
        if isinstance(o, ParsedEnvelope):
            ids.add(o.header.message_id)
            if o.header.in_reply_to is not None:
                ids.add(o.header.in_reply_to)
    return ids


def _unit_of_user(directory: Directory, user_id: str | None) -> str | None:
    if not user_id:
        return None
    return _units_by_user(directory).get(user_id)


#: The directory last asked about and its units by AMQP user: asked for every message,
#: and the directory changes a few times a day.
_by_user: tuple[Directory | None, dict[str, str]] = (None, {})


def _units_by_user(directory: Directory) -> dict[str, str]:
    global _by_user
    known, users = _by_user
    if known is not directory:
        users = {amqp_user(unit.address): unit.address for unit in directory.units()}
        _by_user = (directory, users)
    return users


def _log_decision(entry: Entry) -> None:
    log.info("decision seq=%d message_id=%s decision=%s reason=%s", entry.seq,
             entry.message_id, entry.decision, entry.reason or "-")


def run_router(router: Router, *, install_signals: bool = True) -> None:
    if install_signals:
        router.install_signal_handlers()
    router.run()


__all__ = ["DirectoryHolder", "Router", "RouterStats", "decide_and_append", "parse_body",
           "run_router"]

