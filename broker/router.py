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
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType

import pika
import pika.channel
import pika.exceptions
import pika.frame
import pika.spec

from broker.transfer_log import LogBatch, TransferLog
from keys import SigningKeyPair
from protocols.amqp import DELIVER, INGRESS
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


#: Set to ``after_append`` to make the router exit hard right after a log
#: commit and before any publish: the crash-safety tests use it.
FAULT_ENV = "INFOSHARE_ROUTER_FAULT"


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
        amqp_url: str,
        transfer_log: TransferLog,
        directory: DirectoryHolder,
        broker_key: SigningKeyPair,
        batch_size: int = 200,
        batch_delay: float = 0.005,
        prefetch: int = 1000,
        directory_refresh: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._params = pika.URLParameters(amqp_url)
        self._params.heartbeat = 30
        self._params.blocked_connection_timeout = 60
        self._log = transfer_log
        self._directory = directory
        self._key = broker_key
        self._batch_size = batch_size
        self._batch_delay = batch_delay
        self._prefetch = prefetch
        self._refresh_every = directory_refresh
        self._clock = clock
        self._fault = os.environ.get(FAULT_ENV, "")
        self.stats = RouterStats()
        self._stop = threading.Event()
        self._connection: pika.SelectConnection | None = None
        self._channel: pika.channel.Channel | None = None
        self._inbound: list[_Inbound] = []
        self._flush_scheduled = False
        self._publish_tag = 0
        self._awaiting: dict[int, _Pending] = {}  # publish delivery tag -> ingress message
        self._by_publish: dict[tuple[str, int], _Pending] = {}  # (type, seq) -> message
        self._consumer_tag: str | None = None
        self._ticks = 0
        self.ready = threading.Event()

    # --- lifecycle -------------------------------------------------------------------

    def run(self) -> None:
        """Route until :meth:`stop`; reconnect with backoff when RabbitMQ goes away."""
        backoff = 0.5
        refresher = threading.Thread(target=self._refresh_loop, name="directory", daemon=True)
        refresher.start()
        while not self._stop.is_set():
            try:
                self._run_connection()
                backoff = 0.5
            except (pika.exceptions.AMQPError, OSError) as e:
                log.warning("rabbitmq connection lost (%s); retrying in %.1fs",
                            type(e).__name__, backoff)
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, 30.0)
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

    def _run_connection(self) -> None:
        self._inbound.clear()
        self._awaiting.clear()
        self._by_publish.clear()
        self._publish_tag = 0
        self._flush_scheduled = False
        conn = pika.SelectConnection(
            self._params,
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_connection_closed,
        )
        self._connection = conn
        self._open_error: BaseException | None = None
        conn.ioloop.start()
        self._connection = None
        self._channel = None
        self.ready.clear()
        if self._open_error is not None:
            raise pika.exceptions.AMQPConnectionError(str(self._open_error))

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
        self._consumer_tag = self._channel.basic_consume(INGRESS, self._on_message)
        assert self._connection is not None
        self._connection.ioloop.call_later(1.0, self._tick)
        self.ready.set()
        log.info("consuming %s", INGRESS)

    def _on_channel_closed(self, ch: pika.channel.Channel, reason: BaseException) -> None:
        if self._stop.is_set():
            log.info("channel closed: %s", reason)
        else:
            log.warning("channel closed: %s", reason)
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _begin_shutdown(self) -> None:
        ch = self._channel
        if ch is not None and ch.is_open and self._consumer_tag is not None:
            ch.basic_cancel(self._consumer_tag)
            self._consumer_tag = None
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
        """Once a second: sign a checkpoint when one is due (at least every 10 s);
        once a minute: the counts so far, by decision and reason code only."""
        try:
            self._log.checkpoint_if_due(self._clock())
        except Exception as e:
            log.error("checkpoint failed (%s)", type(e).__name__)
        self._ticks += 1
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
        self._inbound.append(_Inbound(method.delivery_tag, body, publisher_of(props.user_id),
                                      bool(method.redelivered)))
        if len(self._inbound) >= self._batch_size:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._connection is not None
            self._connection.ioloop.call_later(self._batch_delay, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._inbound:
            return
        batch, self._inbound = self._inbound, []
        now = self._clock().replace(microsecond=0)
        directory = self._directory.current
        try:
            results = self._decide_batch(batch, directory, now)
        except Exception as e:
            # The log could not be written (database away) or something
            # unforeseen failed: nothing of this batch was committed or acked,
            # so hand it back. A message that fails every time reaches the
            # queue's delivery limit and is dead-lettered for an operator.
            log.error("batch of %d returned to the queue (%s)", len(batch), type(e).__name__)
            log.debug("batch failure", exc_info=True)
            ch = self._channel
            if ch is not None and ch.is_open:
                for msg in batch:
                    ch.basic_nack(msg.delivery_tag, requeue=True)
            return
        if self._fault == "after_append":
            log.error("fault injection: exiting between append and publish")
            os._exit(137)
        for msg, entry, env in results:
            self._publish_outcome(msg, entry, env, directory)
        try:
            self._log.checkpoint_if_due(now)
        except Exception as e:  # the next tick tries again
            log.error("checkpoint failed (%s)", type(e).__name__)

    def _decide_batch(self, batch: list[_Inbound], directory: Directory, now: datetime
                      ) -> list[tuple[_Inbound, Entry, ParsedEnvelope | None]]:
        """Decide and append a batch in one log transaction; committed on return.

        ``now`` has whole seconds, as entries record them, so that a replay
        re-runs the very same decision.
        """
        results: list[tuple[_Inbound, Entry, ParsedEnvelope | None]] = []
        # Parsing is pure: done before the log's lock is taken.
        parsed = [(msg, parse_body(msg.body)) for msg in batch]
        with self._log.batch() as lb:
            lb.prefetch(_ids_to_look_up(outcome for _, outcome in parsed))
            for msg, outcome in parsed:
                entry, env, again = decide_and_append(lb, msg.body, outcome, msg.publisher,
                                                      directory, now)
                results.append((msg, entry, env))
                if again:
                    self.stats.redelivered += 1
                elif entry.decision == "routed":
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
                       at=datetime.strptime(entry.at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)),
                self._key,
            )
            self._publish(ch, pending, routing_key=sender, body=notice,
                          props=pika.BasicProperties(
                              delivery_mode=2, content_type="application/json", type="notice",
                              message_id=entry.message_id,
                              headers={"infoshare-seq": entry.seq, "infoshare-leaf": leaf}))
        if pending.outstanding == 0:
            ch.basic_ack(msg.delivery_tag)

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
                ch.basic_nack(pending.delivery_tag, requeue=False)
            elif pending.failed:
                # Logged already: requeue, and the redelivery publishes again.
                ch.basic_nack(pending.delivery_tag, requeue=True)
            else:
                ch.basic_ack(pending.delivery_tag)
        if self._stop.is_set():
            self._maybe_close()


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
        _log_decision(entry)
        return entry, None, False
    env = parsed
    logged = lb.find_logged(env.header.message_id, env.header_sha256, body_sha, publisher)
    if logged is not None:
        log.info("redelivery message_id=%s seq=%d", env.header.message_id, logged.seq)
        return logged, env, True
    decision = decide(env.submission(publisher), directory, lb, now)
    draft = EntryDraft.for_envelope(env, decision, at=now, registry_version=directory.version)
    entry = lb.append(draft, Evidence.of(body_sha, env, publisher))
    _log_decision(entry)
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
    for unit in directory.units():
        if amqp_user(unit.address) == user_id:
            return unit.address
    return None


def _log_decision(entry: Entry) -> None:
    log.info("decision seq=%d message_id=%s decision=%s reason=%s", entry.seq,
             entry.message_id, entry.decision, entry.reason or "-")


def run_router(router: Router, *, install_signals: bool = True) -> None:
    if install_signals:
        router.install_signal_handlers()
    router.run()


__all__ = ["DirectoryHolder", "Router", "RouterStats", "decide_and_append", "parse_body",
           "run_router"]

