"""The agency client: send envelopes through the broker, receive and open what arrives.

An :class:`AgencyClient` acts for one unit with that unit's AMQP user, keys
and a state store (SQLite in ``state_dir``).

Invariants:

- **Refuse locally what the broker would refuse.** Before publishing, ``send``
  runs ``protocols.policy.decide`` on the envelope it built, against the
  directory and a log view of what this unit has received, and raises
  :class:`~agency.errors.LocalRefusal` with the broker's reason code. The
  directory is kept between sends; a refusal is decided again with the
  current one first, so a kept directory never refuses what it permits.
  Only check 4 (``duplicate``) cannot be known locally; every message gets a
  fresh UUIDv4, which makes it moot.
- **At least once out.** A publish is confirmed by RabbitMQ (publisher
  confirms, ``mandatory``) or retried after a reconnect with backoff.
  Publishing the same body again is safe: the broker recognises a redelivery
  by message id and header hash and logs nothing new.
- **Exactly once in.** For every envelope taken from the inbox: verify the
  sender's signature against the directory, open the payload with this
  unit's key, write the record atomically (temporary file, fsync, rename,
  mode 0600), commit its message id to the state store, and only then ack.
  A message id already accepted is acked and not written again, across
  restarts, so no message is processed twice; nor is a record written by a
  run killed before it committed (the file is there, whole, and is kept).
- **Every opened message is acknowledged in writing.** The receipt (wire
  spec 3.2) is built and stored in the state store's outbox in the same
  transaction that accepts the message, and published after the ack; receipts
  still in the outbox after a crash are published on the next run, with the
  same bytes (so the broker sees a redelivery, not a second receipt).
- **No personal data outside ``out_dir``.** The state store, logs and errors
  hold codes and ids only; the record and the reasons go only into the
  record file.
- One AMQP connection per thread; the state store is opened per thread too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeAlias

import pika
import pika.exceptions
import pika.spec
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from agency.client_state import (
    RECEIPT_DEFERRED,
    RECEIPT_NONE,
    RECEIPT_PENDING,
    RECEIPT_REFUSED,
    LocalLog,
    Outgoing,
    StateStore,
)
from agency.directory_cache import DirectoryCache
from agency.errors import (
    ConnectionFailed,
    InvalidMessage,
    LocalRefusal,
    PublishFailed,
    StateError,
)
from agency.files import write_atomic
from keys import EncryptionKeyPair, SigningKeyPair
from protocols.amqp import SUBMIT, inbox_name
from protocols.envelope import (
    MAX_BODY_BYTES,
    EnvelopeRefused,
    Notice,
    NoticeRefused,
    ParsedEnvelope,
    Payload,
    PayloadRefused,
    build_envelope,
    header_codes,
    open_payload,
    parse_envelope,
    parse_notice,
    verify_sender_signature,
)
from protocols.model import (
    Address,
    Consent,
    Directory,
    Header,
    Kind,
    MessageId,
    amqp_user,
)
from protocols.policy import LoggedMessage, decide
from protocols.reasons import Reason

__all__ = ["AgencyClient", "LogPosition", "NoticeSink", "PublishOutcome", "ReceiveStatus",
           "Received", "RecordSink", "SentMessage", "StateStore"]

log = logging.getLogger("infoshare.client")

#: Messages taken from the inbox before they are acknowledged together.
PREFETCH = 32
#: A round ends once the inbox has been quiet this long after a delivery, so what it
#: took is acked and handed on (the notices to the sink) without waiting for more.
ROUND_QUIET = 0.02
PUBLISH_ATTEMPTS = 6
CONNECT_ATTEMPTS = 6
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 5.0
HEARTBEAT = 30
BLOCKED_TIMEOUT = 30.0
RECEIPT_REASONS = "receipt: received and opened"

ReceiveStatus = Literal["accepted", "rejected", "duplicate"]

# Connection errors that another attempt will not cure.
_FATAL_CONNECT = (
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
    pika.exceptions.AuthenticationError,
    pika.exceptions.IncompatibleProtocolError,
)
# Errors after which the connection (or channel) is to be dropped and opened again.
_TRANSIENT = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ChannelClosedByClient,
    OSError,
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class SentMessage:
    message_id: MessageId
    header_sha256: str


@dataclass(frozen=True)
class Received:
    """One envelope taken from the inbox.

    ``message_id`` is ``sha256:<hex of the body>`` for a body whose header
    could not be read. ``reason`` is a code when ``status`` is ``rejected``:
    a wire spec reason (``malformed``, ``key_not_valid``, ``bad_signature``
    ...), a payload problem (``undecryptable``, ``payload_mismatch``,
    ``binding_mismatch``, ``category_not_permitted``) or ``misdelivered``.
    ``path`` is the record file of an accepted envelope.
    """

    message_id: str
    status: ReceiveStatus
    reason: str | None
    kind: str | None
    sender: str | None
    protocol: str | None
    purpose: str | None
    seq: int | None
    path: Path | None


# --- files -----------------------------------------------------------------------------


def _header_doc(env: ParsedEnvelope, seq: int | None) -> dict[str, object]:
    return {**header_codes(env.header), "header_sha256": env.header_sha256, "seq": seq}


def _record_bytes(env: ParsedEnvelope, payload: Payload, seq: int | None) -> bytes:
    doc = {"header": _header_doc(env, seq),
           "payload": {"message_id": payload.message_id, "sender": payload.sender,
                       "recipient": payload.recipient, "purpose": payload.purpose,
                       "record": payload.record, "reasons": payload.reasons}}
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _seq_of(props: pika.spec.BasicProperties) -> int | None:
    seq = (props.headers or {}).get("infoshare-seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


_LEAF = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class LogPosition:
    """Where the broker says it logged a delivered envelope: the ``infoshare-seq`` and
    ``infoshare-leaf`` headers of wire spec 5 (None where absent or out of form)."""

    seq: int | None
    leaf: str | None

    @classmethod
    def of(cls, props: pika.spec.BasicProperties) -> LogPosition:
        leaf = (props.headers or {}).get("infoshare-leaf")
        if isinstance(leaf, bytes):
            leaf = leaf.decode("ascii", errors="replace")
        return cls(_seq_of(props),
                   leaf if isinstance(leaf, str) and _LEAF.fullmatch(leaf) else None)


#: What became of one envelope given to :meth:`AgencyClient.publish_many`.
PublishOutcome: TypeAlias = SentMessage | LocalRefusal | PublishFailed | ConnectionFailed

#: Takes an opened record (AMQP body, envelope, payload, log position) and keeps it;
#: returns its path, if any.
RecordSink = Callable[[bytes, ParsedEnvelope, Payload, LogPosition], "Path | None"]
#: Told of the notices taken from the inbox in one round, before they are acked, redelivered
#: ones too (so it must be idempotent).
NoticeSink = Callable[[Sequence[Notice]], None]


def _parameters(url: str, user: str, ca_file: str | None) -> pika.URLParameters:
    params = pika.URLParameters(url)
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    if "heartbeat" not in query:
        params.heartbeat = HEARTBEAT
    if "blocked_connection_timeout" not in query:
        params.blocked_connection_timeout = BLOCKED_TIMEOUT
    params.connection_attempts = 1  # retries are ours, with backoff
    params.client_properties = {"connection_name": f"infoshare-client {user}"}
    if parts.scheme == "amqps":
        context = ssl.create_default_context(cafile=ca_file)
        params.ssl_options = pika.SSLOptions(context, parts.hostname)
    return params


# --- the client ------------------------------------------------------------------------


class _Rejected(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class AgencyClient:
    """Send and receive for one unit. See the module docstring for the guarantees.

    ``amqp_url`` carries the unit's user (which must be ``amqp_user(unit)``),
    password and vhost; a list of URLs names every node of a cluster, tried in
    turn. ``ca_file`` is the CA certificate that ``amqps://`` nodes are checked
    against. ``record_sink`` (if given) takes each opened record instead of a
    file in ``out_dir``; it must be idempotent by message id. With
    ``deferred_receipts`` a receipt is sent only when :meth:`acknowledge` is
    called (the record was opened by a person or a case system).
    ``directory`` is called for a verified directory (e.g.
    ``RegistryClient.directory``), which the client keeps for a few seconds
    (:class:`~agency.directory_cache.DirectoryCache`; one may be given
    instead) and asks for again before it refuses anything. ``broker_key`` is the raw public key the
    broker signs notices with. ``countersigners`` are manager keys added to
    every envelope sent (``send(approvals=...)`` adds more).
    """

    def __init__(self, *, unit: Address, amqp_url: str | Sequence[str],
                 signing_key: SigningKeyPair, encryption_keys: Sequence[EncryptionKeyPair],
                 directory: Callable[[], Directory] | DirectoryCache, broker_key: bytes,
                 state_dir: Path,
                 countersigners: Sequence[SigningKeyPair] = (), ca_file: str | None = None,
                 record_sink: RecordSink | None = None, notice_sink: NoticeSink | None = None,
                 deferred_receipts: bool = False) -> None:
        self.unit = unit
        self.user = amqp_user(unit)
        urls = [amqp_url] if isinstance(amqp_url, str) else list(amqp_url)
        if not urls:
            raise ValueError("at least one AMQP URL is needed")
        for url in urls:
            url_user = urllib.parse.unquote(urllib.parse.urlsplit(url).username or "")
            if url_user != self.user:
                raise ValueError(f"the AMQP URL's user must be {self.user}, the unit's user")
        if not encryption_keys:
            raise ValueError("at least one encryption key is needed to open payloads")
        self.state_dir = Path(state_dir)
        self._signing = signing_key
        self._encryption = {k.key_id: k for k in encryption_keys}
        self._directories = (directory if isinstance(directory, DirectoryCache)
                             else DirectoryCache(directory))
        self._broker_key = broker_key
        self._countersigners = tuple(countersigners)
        self._params = [_parameters(url, self.user, ca_file) for url in urls]
        self._directory_missed = False  # the last receive could not have the directory
        self._next_node = 0
        self._sink = record_sink
        self._notice_sink = notice_sink
        self._deferred = deferred_receipts
        self._local = threading.local()
        self.store = StateStore(self.state_dir)

    # --- connections ---------------------------------------------------------------------

    def _connection(self) -> BlockingConnection:
        conn: BlockingConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.is_open:
            return conn
        self._drop()
        delay = BACKOFF_FIRST
        for attempt in range(1, CONNECT_ATTEMPTS * len(self._params) + 1):
            # Each node in turn; a whole round without success backs off.
            params = self._params[self._next_node % len(self._params)]
            try:
                conn = BlockingConnection(params)
            except _FATAL_CONNECT as e:
                raise ConnectionFailed(f"RabbitMQ refused user {self.user} "
                                       f"({type(e).__name__})") from e
            except (pika.exceptions.AMQPError, OSError) as e:
                self._next_node += 1
                if attempt == CONNECT_ATTEMPTS * len(self._params):
                    raise ConnectionFailed(f"RabbitMQ unreachable after {attempt} attempts "
                                           f"({type(e).__name__})") from e
                if attempt % len(self._params) == 0:
                    log.warning("connect failed (%s); retrying in %.2fs", type(e).__name__,
                                delay)
                    time.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
            else:
                self._local.conn = conn
                return conn
        raise AssertionError("unreachable")

    def _confirm_channel(self) -> BlockingChannel:
        ch: BlockingChannel | None = getattr(self._local, "publish_ch", None)
        if ch is not None and ch.is_open and ch.connection.is_open:
            return ch
        ch = self._connection().channel()
        ch.confirm_delivery()
        self._local.publish_ch = ch
        return ch

    def _drop(self) -> None:
        """Forget this thread's connection, closing it if it is still open."""
        conn: BlockingConnection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        self._local.publish_ch = None
        if conn is not None and conn.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                conn.close()

    def close(self) -> None:
        """Close this thread's connection and state store connection."""
        self._drop()
        self.store.close()

    def __enter__(self) -> AgencyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- publishing ----------------------------------------------------------------------

    def _publish(self, body: bytes, message_id: str) -> None:
        """Publish an envelope to ``infoshare.submit`` with this unit's address as the
        routing key (wire spec 5) and wait for its confirm.

        Retried after a nack or a lost connection, with backoff: the broker
        de-duplicates by message id and header hash.

        Raises:
            LocalRefusal: ``too_large``: the body is over the wire limit, which
                RabbitMQ (``max_message_size``) would refuse by closing the channel.
            PublishFailed: refused by RabbitMQ, unroutable, or never confirmed.
            ConnectionFailed: RabbitMQ unreachable or refusing the credentials.
        """
        if len(body) > MAX_BODY_BYTES:
            log.info("refused locally message_id=%s reason=%s", message_id,
                     Reason.TOO_LARGE.value)
            raise LocalRefusal(Reason.TOO_LARGE.value)
        props = pika.BasicProperties(
            user_id=self.user, delivery_mode=pika.DeliveryMode.Persistent,
            content_type="application/json", type="envelope", message_id=message_id)
        delay = BACKOFF_FIRST
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                self._confirm_channel().basic_publish(SUBMIT, self.unit, body, props,
                                                      mandatory=True)
                return
            except pika.exceptions.UnroutableError as e:
                raise PublishFailed("unroutable", "publish failed: infoshare.submit routes "
                                    "nowhere (is the topology provisioned?)") from e
            except pika.exceptions.ChannelClosedByBroker as e:
                self._local.publish_ch = None
                detail = {403: "access_refused", 404: "not_found",
                          406: "precondition_failed"}.get(e.reply_code, "channel_closed")
                raise PublishFailed(detail, f"publish failed: RabbitMQ closed the channel "
                                    f"({e.reply_code} {detail})") from e
            except pika.exceptions.NackError as e:
                failure: Exception = e
                code = "nacked"
            except _FATAL_CONNECT:
                raise
            except _TRANSIENT as e:
                failure = e
                code = "connection_lost"
                self._drop()
            if attempt == PUBLISH_ATTEMPTS:
                raise PublishFailed(code, f"publish failed after {attempt} attempts: "
                                    f"{code}") from failure
            log.warning("publish message_id=%s not confirmed (%s); retrying in %.2fs",
                        message_id, code, delay)
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    # --- sending -------------------------------------------------------------------------

    def send(self, *, kind: Kind, protocol: str, purpose: str, recipient: str,
             record: Mapping[str, object], reasons: str, consent: Consent | None,
             subject_informed: bool, in_reply_to: str | None = None,
             approvals: Sequence[SigningKeyPair] = (), now: datetime | None = None,
             precheck: bool = True) -> SentMessage:
        """Build, check, sign and publish one envelope; wait for RabbitMQ's confirm.

        ``precheck=False`` skips the local policy check (to see the broker
        refuse, as the demo does); the envelope must still be buildable.

        Raises:
            LocalRefusal: the broker would refuse it; ``reason`` is its code.
            InvalidMessage: the arguments cannot make a valid envelope.
            PublishFailed, ConnectionFailed: it could not be published.
            StateError: the state store cannot be written.
            Whatever ``directory`` raises when the directory cannot be had.
        """
        body, env = self.prepare(kind=kind, protocol=protocol, purpose=purpose,
                                 recipient=recipient, record=record, reasons=reasons,
                                 consent=consent, subject_informed=subject_informed,
                                 in_reply_to=in_reply_to, approvals=approvals, now=now,
                                 precheck=precheck)
        return self.publish(body, env)

    def publish(self, body: bytes, env: ParsedEnvelope) -> SentMessage:
        """Publish an envelope made by :meth:`prepare` and record it as sent.

        Publishing the same bytes again is safe: the broker logs a redelivery once.

        Raises:
            PublishFailed, ConnectionFailed: it could not be published.
            StateError: the state store cannot be written.
        """
        self._publish(body, env.header.message_id)
        self.store.record_sent([env], utcnow())
        log.info("sent message_id=%s kind=%s", env.header.message_id, env.header.kind)
        return SentMessage(env.header.message_id, env.header_sha256)

    def publish_many(self, envelopes: Sequence[tuple[bytes, ParsedEnvelope]]
                     ) -> list[PublishOutcome]:
        """Publish envelopes made by :meth:`prepare`, in order, and record those published
        as sent in one commit.

        Returns an outcome for each envelope attempted: a :class:`SentMessage`, or the
        error that stopped it. A ``LocalRefusal`` (``too_large``) skips one envelope;
        a failure to publish ends the list there, the rest not attempted.

        Raises:
            StateError: the state store cannot be written.
        """
        outcomes: list[PublishOutcome] = []
        sent: list[ParsedEnvelope] = []
        for body, env in envelopes:
            try:
                self._publish(body, env.header.message_id)
            except LocalRefusal as e:
                outcomes.append(e)
                continue
            except (PublishFailed, ConnectionFailed) as e:
                outcomes.append(e)
                break
            sent.append(env)
            outcomes.append(SentMessage(env.header.message_id, env.header_sha256))
        if sent:
            self.store.record_sent(sent, utcnow())
            for env in sent:
                log.info("sent message_id=%s kind=%s", env.header.message_id, env.header.kind)
        return outcomes

    def prepare(self, *, kind: Kind, protocol: str, purpose: str, recipient: str,
                record: Mapping[str, object], reasons: str, consent: Consent | None,
                subject_informed: bool, in_reply_to: str | None = None,
                approvals: Sequence[SigningKeyPair] = (), now: datetime | None = None,
                precheck: bool = True, message_id: str | None = None,
                directory: Directory | None = None) -> tuple[bytes, ParsedEnvelope]:
        """Build, check and sign one envelope without publishing it; returns its bytes.

        ``message_id`` keeps an id drawn before (a message rebuilt once a
        manager approves it); ``directory`` decides with a directory at hand
        instead of fetching one.

        Raises:
            LocalRefusal: the broker would refuse it; ``reason`` is its code.
            InvalidMessage: the arguments cannot make a valid envelope.
            Whatever ``directory`` raises when the directory cannot be had.
        """
        now = (now or utcnow()).replace(microsecond=0)

        def build(d: Directory) -> tuple[bytes, ParsedEnvelope]:
            return self._prepare(d, kind=kind, protocol=protocol, purpose=purpose,
                                 recipient=recipient, record=record, reasons=reasons,
                                 consent=consent, subject_informed=subject_informed,
                                 in_reply_to=in_reply_to, approvals=approvals, now=now,
                                 precheck=precheck, message_id=message_id)

        if directory is not None:
            return build(directory)
        kept = self._directories.get()
        try:
            return build(kept)
        except LocalRefusal:
            # The kept directory may be older than the one that permits this: decide
            # again with the current one before refusing.
            current = self._directories.get(fresh=True)
            if current.version == kept.version:
                raise
            return build(current)

    def _prepare(self, directory: Directory, *, kind: Kind, protocol: str, purpose: str,
                 recipient: str, record: Mapping[str, object], reasons: str,
                 consent: Consent | None, subject_informed: bool, in_reply_to: str | None,
                 approvals: Sequence[SigningKeyPair], now: datetime, precheck: bool,
                 message_id: str | None) -> tuple[bytes, ParsedEnvelope]:
        rkey = directory.current_key(recipient, "encryption", now)
        if rkey is None and not precheck:
            raise LocalRefusal(Reason.RECIPIENT_KEY_NOT_VALID.value)
        signers = _unique((*self._countersigners, *approvals))
        # Without a registered key the envelope is sealed to a throwaway key, only
        # so that the policy can name the first check that fails, as the broker would.
        recipient_public = (rkey.public if rkey is not None
                            else EncryptionKeyPair.generate().public)
        try:
            body, env = build_envelope(
                kind=kind, protocol=protocol, purpose=purpose, sender=self.unit,
                recipient=recipient, record=record, reasons=reasons,
                sender_key=self._signing, recipient_key=recipient_public, created_at=now,
                consent=consent, subject_informed=subject_informed, in_reply_to=in_reply_to,
                countersigners=signers, message_id=message_id)
        except EnvelopeRefused as e:
            raise LocalRefusal(e.reason.value) from e
        except ValueError as e:
            raise InvalidMessage(f"cannot build the envelope: {e}") from e
        if precheck or rkey is None:
            decision = decide(env.submission(self.user), directory,
                              LocalLog(self.store, self.unit), now)
            if decision.reason is not None:
                log.info("refused locally message_id=%s reason=%s", env.header.message_id,
                         decision.reason.value)
                raise LocalRefusal(decision.reason.value)
        return body, env

    def _build_receipt(self, env: ParsedEnvelope, directory: Directory,
                       now: datetime) -> tuple[Outgoing | None, int]:
        """The receipt for an accepted envelope, or None and why not (as receipt_sent)."""
        h = env.header
        if h.kind == "receipt":
            return None, RECEIPT_NONE
        rkey = directory.current_key(h.sender, "encryption", now)
        if rkey is None:
            log.warning("no receipt for message_id=%s reason=%s", h.message_id,
                        Reason.RECIPIENT_KEY_NOT_VALID.value)
            return None, RECEIPT_REFUSED
        body, receipt = build_envelope(
            kind="receipt", protocol=h.protocol, purpose=h.purpose, sender=self.unit,
            recipient=h.sender, record={"received": h.message_id,
                                        "header_sha256": env.header_sha256},
            reasons=RECEIPT_REASONS, sender_key=self._signing, recipient_key=rkey.public,
            created_at=now, consent=None, subject_informed=True, in_reply_to=h.message_id,
            countersigners=self._countersigners)
        # The message being acknowledged is not in the store yet: the view adds it.
        this = LoggedMessage(message_id=h.message_id, header_sha256=env.header_sha256,
                             kind=h.kind, decision="routed", reason=None, protocol=h.protocol,
                             purpose=h.purpose, sender=h.sender, recipient=h.recipient)
        decision = decide(receipt.submission(self.user), directory,
                          LocalLog(self.store, self.unit, (this,)), now)
        if decision.reason is not None:
            log.warning("no receipt for message_id=%s reason=%s", h.message_id,
                        decision.reason.value)
            return None, RECEIPT_REFUSED
        return Outgoing(receipt.header.message_id, h.message_id, receipt.header_sha256,
                         h.sender, h.protocol, h.purpose, body), RECEIPT_PENDING

    def _receipt(self, env: ParsedEnvelope, directory: _DirectoryCache,
                  now: datetime) -> tuple[Outgoing | None, int]:
        receipt, state = self._build_receipt(env, directory.get(), now)
        if state == RECEIPT_REFUSED:
            # Perhaps only a kept directory refuses it (a key registered since).
            receipt, state = self._build_receipt(env, directory.refresh(), now)
        return receipt, state

    def acknowledge(self, body: bytes, *, publish_now: bool = True) -> bool:
        """Send the deferred receipt for a received envelope (its AMQP body).

        Returns False if its receipt was sent (or ruled out) already. A receipt
        that cannot be published now stays in the outbox for the next round.

        Raises:
            StateError: the state store cannot be written.
            Whatever ``directory`` raises when the directory cannot be had.
        """
        env = parse_envelope(body)
        if self.store.receipt_state(env.header.message_id) != RECEIPT_DEFERRED:
            return False
        now = utcnow()
        receipt, state = self._receipt(env, _DirectoryCache(self._directories), now)
        if not self.store.queue_receipt(env.header.message_id, receipt, state, now):
            return False
        if publish_now:
            self._try_pending_receipts()
        return True

    def send_pending_receipts(self) -> int:
        """Publish the receipts in the outbox (left by a crash or a lost connection).

        Returns how many were published.

        Raises:
            PublishFailed, ConnectionFailed: a receipt could not be published;
                it stays in the outbox.
        """
        sent = 0
        for receipt in self.store.outbox():
            self._publish(receipt.body, receipt.message_id)
            self.store.receipt_sent(receipt, utcnow())
            log.info("receipt message_id=%s for=%s sent", receipt.message_id,
                     receipt.in_reply_to)
            sent += 1
        return sent

    # --- receiving -----------------------------------------------------------------------

    def receive(self, out_dir: Path, *, max_messages: int | None = None,
                idle_timeout: float = 2.0) -> list[Received]:
        """Take what is in the inbox: envelopes to ``out_dir``, notices to the state store.

        Stops once no message arrived for ``idle_timeout`` seconds, or after
        ``max_messages`` deliveries (envelopes, notices and anything else).
        Returns the envelopes handled, in order.

        Raises:
            ConnectionFailed: RabbitMQ unreachable or refusing the credentials.
            StateError: the state store or a record file cannot be written
                (nothing more is acked).
            Whatever ``directory`` raises when the directory cannot be had.
        """
        if max_messages is not None and max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        out_dir = Path(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise StateError(f"{out_dir}: cannot create ({e.strerror})") from e
        self._try_pending_receipts()
        directory = _DirectoryCache(self._directories)
        # A message taken and handed back because the registry cannot be reached counts
        # against the inbox's delivery limit, so once the registry has been away the
        # directory is asked for before anything is taken. Not otherwise: the client's
        # directory is shared with its sending, which must not be handed one fetched
        # before keys its caller registers next.
        try:
            if self._directory_missed or self._directories.current is not None:
                directory.get()
            return self._receive_rounds(out_dir, directory, max_messages, idle_timeout)
        finally:
            self._directory_missed = directory.missed

    def _receive_rounds(self, out_dir: Path, directory: _DirectoryCache,
                        max_messages: int | None, idle_timeout: float) -> list[Received]:
        results: list[Received] = []
        handled = 0
        delay = BACKOFF_FIRST
        attempts = 0
        while max_messages is None or handled < max_messages:
            try:
                count, idle = self._receive_round(out_dir, directory, results,
                                                  None if max_messages is None
                                                  else max_messages - handled, idle_timeout)
            except _FATAL_CONNECT as e:
                raise ConnectionFailed(f"RabbitMQ refused user {self.user} "
                                       f"({type(e).__name__})") from e
            except pika.exceptions.ChannelClosedByBroker as e:
                raise ConnectionFailed(f"RabbitMQ closed the inbox channel ({e.reply_code}); "
                                       "is the topology provisioned?") from e
            except _TRANSIENT as e:
                # Whatever was not acked comes back and is recognised by its message id.
                self._drop()
                attempts += 1
                if attempts >= CONNECT_ATTEMPTS:
                    raise ConnectionFailed(f"lost the connection {attempts} times "
                                           f"({type(e).__name__})") from e
                log.warning("connection lost while receiving (%s); retrying in %.2fs",
                            type(e).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            handled += count
            if idle:
                break
        return results

    def _receive_round(self, out_dir: Path, directory: _DirectoryCache,
                       results: list[Received], remaining: int | None,
                       idle_timeout: float) -> tuple[int, bool]:
        """Consume up to ``prefetch`` deliveries (fewer if the inbox goes quiet), ack them
        together, then send receipts.

        The round's notices are stored together (and handed to the notice sink)
        before the ack. The prefetch is never more than the deliveries still
        wanted, and the consumer is cancelled before anything is acked, so
        stopping early never hands a message back (each hand-back counts towards
        the queue's delivery limit). Returns (deliveries handled, whether the
        inbox went idle).
        """
        prefetch = PREFETCH if remaining is None else min(PREFETCH, remaining)
        ch = self._connection().channel()
        try:
            ch.basic_qos(prefetch_count=prefetch)
            last_tag: int | None = None
            count = 0
            idle = False
            notices: list[Notice] = []
            quiet = 0.0
            tick = min(idle_timeout, ROUND_QUIET)
            for method, props, body in ch.consume(inbox_name(self.unit),
                                                  inactivity_timeout=tick):
                if method is None or props is None or body is None:
                    if count:
                        break  # quiet after deliveries: end the round, ack, tell the sink
                    quiet += tick
                    if quiet >= idle_timeout:
                        idle = True
                        break
                    continue
                result = self._handle(out_dir, directory, props, body, notices)
                if result is not None:
                    results.append(result)
                last_tag = method.delivery_tag
                count += 1
                if count >= prefetch:
                    break
            # Cancel before acking: an ack frees prefetch room, which RabbitMQ would
            # fill with a delivery that the cancel then hands back.
            ch.cancel()
            self._take_notices(notices)
            if last_tag is not None:
                ch.basic_ack(last_tag, multiple=True)
        finally:
            if ch.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError):
                    ch.close()
        if count:
            self._try_pending_receipts()
        return count, idle

    def _try_pending_receipts(self) -> None:
        # A receipt that cannot be published now stays in the outbox for the next
        # run; it is no reason to stop taking messages from the inbox.
        try:
            self.send_pending_receipts()
        except PublishFailed as e:
            log.warning("receipts left pending (%s)", e.detail)

    def _handle(self, out_dir: Path, directory: _DirectoryCache,
                props: pika.spec.BasicProperties, body: bytes,
                notices: list[Notice]) -> Received | None:
        if props.type == "envelope":
            return self._handle_envelope(out_dir, directory, props, body)
        if props.type == "notice":
            notice = self._parse_notice(body)
            if notice is not None:
                notices.append(notice)
            return None
        log.warning("ignored a message of unknown type code=unknown_type")
        return None

    def _parse_notice(self, body: bytes) -> Notice | None:
        try:
            return parse_notice(body, self._broker_key)
        except EnvelopeRefused as e:
            log.warning("notice refused code=%s", e.reason.value)
        except NoticeRefused as e:
            log.warning("notice refused code=%s", e.code)
        return None

    def _take_notices(self, notices: Sequence[Notice]) -> None:
        if not notices:
            return
        for notice in self.store.add_notices(notices):
            log.info("notice message_id=%s decision=%s reason=%s seq=%d", notice.message_id,
                     notice.decision, notice.reason or "-", notice.seq)
        if self._notice_sink is not None:
            self._notice_sink(notices)

    def _handle_envelope(self, out_dir: Path, directory: _DirectoryCache,
                         props: pika.spec.BasicProperties, body: bytes) -> Received:
        now = utcnow()
        seq = _seq_of(props)
        try:
            env = parse_envelope(body)
        except EnvelopeRefused as e:
            mid = (e.header.message_id if e.header is not None
                   else f"sha256:{hashlib.sha256(body).hexdigest()}")
            return self._rejected(mid, e.reason.value, e.header, None, seq, now)
        h = env.header
        if self.store.status(h.message_id) == "accepted":
            log.info("duplicate message_id=%s ignored", h.message_id)
            return Received(h.message_id, "duplicate", None, h.kind, h.sender, h.protocol,
                            h.purpose, seq, None)
        try:
            payload = self._open(env, directory)
        except _Rejected as e:
            return self._rejected(h.message_id, e.code, h, env.header_sha256, seq, now)
        path: Path | None = out_dir / f"{h.message_id}.json"
        try:
            if self._sink is not None:
                path = self._sink(body, env, payload, LogPosition.of(props))
            else:
                assert path is not None
                # A record that exists already was written by a run that died before
                # it could accept the message: it is whole (written atomically) and is
                # not written a second time.
                if not path.exists():
                    write_atomic(path, _record_bytes(env, payload, seq))
        except OSError as e:
            raise StateError(f"{path}: cannot write the record ({e.strerror})") from e
        if self._deferred and h.kind != "receipt":
            receipt, state = None, RECEIPT_DEFERRED
        else:
            receipt, state = self._receipt(env, directory, now)
        self.store.accept(h, env.header_sha256, now, receipt, state)
        log.info("accepted message_id=%s kind=%s seq=%s", h.message_id, h.kind,
                 seq if seq is not None else "-")
        return Received(h.message_id, "accepted", None, h.kind, h.sender, h.protocol,
                        h.purpose, seq, path)

    def _open(self, env: ParsedEnvelope, directory: _DirectoryCache) -> Payload:
        """Verify the sender's signature and open the payload, or raise _Rejected(code)."""
        h = env.header
        if h.recipient != self.unit:
            raise _Rejected("misdelivered")
        kid = env.signatures[0].key
        key = directory.get().unit_key(kid, h.sender, "signing")
        if key is None:
            # Registered since this receive began? Ask the registry once more.
            key = directory.refresh().unit_key(kid, h.sender, "signing")
        # Valid when it was signed: a key revoked since does not undo a delivery.
        if key is None or not key.valid_at(h.created_at):
            raise _Rejected(Reason.KEY_NOT_VALID.value)
        if not verify_sender_signature(env, key.public):
            raise _Rejected(Reason.BAD_SIGNATURE.value)
        own = self._encryption.get(h.payload.recipient_key)
        if own is None:
            raise _Rejected("undecryptable")
        try:
            return open_payload(env, own)
        except PayloadRefused as e:
            raise _Rejected(e.code) from None

    def _rejected(self, message_id: str, code: str, header: Header | None,
                  header_sha256: str | None, seq: int | None, now: datetime) -> Received:
        log.warning("rejected message_id=%s reason=%s", message_id, code)
        self.store.reject(message_id, code, header, header_sha256, now)
        return Received(message_id, "rejected", code, header.kind if header else None,
                        header.sender if header else None, header.protocol if header else None,
                        header.purpose if header else None, seq, None)

    # --- notices -------------------------------------------------------------------------

    def notices(self, message_id: str | None = None, *,
                drain_to: Path | None = None) -> list[Notice]:
        """The broker's notices stored so far (oldest first), optionally for one message.

        With ``drain_to``, the inbox is received into that directory first.
        """
        if drain_to is not None:
            self.receive(drain_to, idle_timeout=0.5)
        return self.store.notices(message_id)


class _DirectoryCache:
    """The directory for one receive call: the client's, asked for afresh at most once (so
    that a flood of envelopes naming unknown keys costs one registry request)."""

    def __init__(self, directories: DirectoryCache) -> None:
        self._directories = directories
        self._current: Directory | None = None
        self._refreshed = False
        self.missed = False  # whether asking for it failed

    def get(self) -> Directory:
        if self._current is None:
            self._current = self._ask(fresh=False)
        return self._current

    def refresh(self) -> Directory:
        if not self._refreshed:
            self._refreshed = True
            self._current = self._ask(fresh=True)
        return self.get()

    def _ask(self, *, fresh: bool) -> Directory:
        try:
            return self._directories.get(fresh=fresh)
        except Exception:
            self.missed = True
            raise


def _unique(signers: Sequence[SigningKeyPair]) -> tuple[SigningKeyPair, ...]:
    seen: set[str] = set()
    out = []
    for s in signers:
        if s.key_id not in seen:
            seen.add(s.key_id)
            out.append(s)
    return tuple(out)
