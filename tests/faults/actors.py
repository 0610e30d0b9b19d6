"""The senders and recipients of the fault scenarios, each run as a process of its own.

    python tests/faults/actors.py send SPEC.json
    python tests/faults/actors.py receive SPEC.json

A **sender** is an agency's own AMQP client written against the wire spec
(section 5): it publishes signed, sealed envelopes (or, for a flooding unit,
bodies that are not envelopes) to ``infoshare.submit`` with its address as
routing key and its user as ``user_id``, keeps up to ``window`` publishes
unconfirmed, and publishes again whatever was nacked, returned or left
unconfirmed by a lost connection (the broker recognises the same body as a
redelivery). It journals ``A`` before a message's first publish, durably, and
``C`` once it is confirmed.

A **recipient** is the agency SDK (``agency.client.AgencyClient``): it
receives, verifies, opens, writes each record and sends the receipt. The
record writes are journalled (``W``) by wrapping the SDK's file writer, so a
record written twice shows in the journal.

Each spec file holds only its own unit's secrets. SIGTERM stops either actor
at its next quiet moment; SIGKILL is what the scenarios use to crash one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika
import pika.channel
import pika.exceptions
import pika.frame
import pika.spec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checker import NOBODY, Journal

from keys import EncryptionKeyPair, SigningKeyPair, b64decode
from protocols.amqp import SUBMIT
from protocols.envelope import build_envelope
from protocols.model import Consent, amqp_user

log = logging.getLogger("faults.actor")

#: A publish neither confirmed nor nacked this long is published again on a new
#: connection: a quorum queue whose leader died may leave a confirm pending for
#: minutes (the broker recognises the copy as a redelivery).
CONFIRM_TIMEOUT = 5.0

PROTOCOL = "wy-iisp-2016"
PURPOSE = "safeguarding-referral"


@dataclass
class Outgoing:
    key: str
    recipient: str
    body: bytes
    message_id: str


# --- what senders send -----------------------------------------------------------------


def envelopes(spec: dict[str, Any]) -> list[Outgoing]:
    """The sender's messages, built up front: valid envelopes, or malformed bodies."""
    unit = spec["unit"]
    count = int(spec["count"])
    if spec.get("kind", "valid") == "malformed":
        out = []
        for i in range(count):
            body = json.dumps({"version": 1, "flood": unit, "n": i, "pad": "x" * 200}).encode()
            key = f"sha256:{hashlib.sha256(body).hexdigest()}"
            out.append(Outgoing(key, NOBODY, body, key[7:43]))
        return out
    signing = SigningKeyPair.from_seed(b64decode(spec["signing_seed"]))
    recipients = sorted(spec["recipients"].items())
    preset: dict[int, str] = {int(i): mid for i, mid in spec.get("message_ids", {}).items()}
    now = datetime.now(UTC).replace(microsecond=0)
    out = []
    for i in range(count):
        address, public = recipients[i % len(recipients)]
        body, env = build_envelope(
            kind="referral", protocol=PROTOCOL, purpose=PURPOSE, sender=unit, recipient=address,
            record={"identity": {"ref": f"F-{i}"}, "concern": {"summary": "fault test"}},
            reasons="fault test", sender_key=signing, recipient_key=b64decode(public),
            created_at=now, consent=Consent("given", None), subject_informed=True,
            message_id=preset.get(i))
        mid = env.header.message_id
        out.append(Outgoing(mid, address, body, mid))
    return out


# --- the sender: pipelined publisher confirms ------------------------------------------


class Publisher:
    """Publishes every message until RabbitMQ confirms it, across lost connections."""

    def __init__(self, spec: dict[str, Any], messages: list[Outgoing], journal: Journal) -> None:
        self.spec = spec
        self.unit = spec["unit"]
        self.user = amqp_user(self.unit)
        self.urls: list[str] = list(spec["amqp"])
        self.messages = messages
        self.journal = journal
        self.window = int(spec.get("window", 256))
        self.rate: float | None = spec.get("rate")
        self.todo: deque[int] = deque(range(len(messages)))
        self.retry: deque[tuple[float, int]] = deque()  # (not before, index)
        self.in_flight: dict[int, int] = {}  # delivery tag -> index
        self.sent_at: dict[int, float] = {}  # delivery tag -> when published
        self.returned: set[int] = set()
        self.by_mid = {m.message_id: i for i, m in enumerate(messages)}
        self.journalled = 0
        self.confirmed = 0
        self.nacks = 0
        self.reconnects = 0
        self.stopping = False
        self.started = time.monotonic()
        self.first_sent = 0  # how many have been published at least once
        self.conn: pika.SelectConnection | None = None
        self.ch: pika.channel.Channel | None = None
        self.tag = 0
        self.pump_scheduled = False

    @property
    def done(self) -> bool:
        return self.confirmed == len(self.messages)

    def run(self) -> None:
        attempt = 0
        while not self.done and not self.stopping:
            url = self.urls[attempt % len(self.urls)]
            attempt += 1
            params = pika.URLParameters(url)
            params.heartbeat = 10
            params.connection_attempts = 1
            params.socket_timeout = 5
            self.pump_scheduled = False  # a timer of the last connection died with it
            self.conn = pika.SelectConnection(params, on_open_callback=self._on_open,
                                              on_open_error_callback=self._on_open_error,
                                              on_close_callback=self._on_closed)
            self.conn.ioloop.start()
            self.conn = None
            self.ch = None
            # Whatever was not confirmed goes out again, first.
            lost = sorted(self.in_flight.values())
            self.in_flight.clear()
            self.sent_at.clear()
            self.todo.extendleft(reversed(lost))
            self.journal.flush()
            if not self.done and not self.stopping:
                self.reconnects += 1
                time.sleep(0.1)
        self.journal.flush(durable=True)

    def stop(self) -> None:
        self.stopping = True
        conn = self.conn
        if conn is not None:
            conn.ioloop.add_callback_threadsafe(self._close)

    def _close(self) -> None:
        if self.conn is not None and self.conn.is_open:
            self.conn.close()

    def _on_open_error(self, conn: pika.SelectConnection, err: Any) -> None:
        conn.ioloop.stop()

    def _on_closed(self, conn: pika.SelectConnection, reason: Any) -> None:
        conn.ioloop.stop()

    def _on_open(self, conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, ch: pika.channel.Channel) -> None:
        self.ch = ch
        self.tag = 0
        ch.add_on_close_callback(self._on_channel_closed)
        ch.add_on_return_callback(self._on_return)
        ch.confirm_delivery(ack_nack_callback=self._on_confirm,
                            callback=lambda _frame: self._pump())
        if self.conn is not None:
            self.conn.ioloop.call_later(1.0, self._watch_confirms)

    def _watch_confirms(self) -> None:
        conn = self.conn
        if conn is None or not conn.is_open:
            return
        oldest = next(iter(self.sent_at.values()), None)
        if oldest is not None and time.monotonic() - oldest > CONFIRM_TIMEOUT:
            log.warning("no confirm for %.0fs: publishing again on a new connection",
                        CONFIRM_TIMEOUT)
            conn.close()
            return
        conn.ioloop.call_later(1.0, self._watch_confirms)

    def _on_channel_closed(self, ch: pika.channel.Channel, reason: Any) -> None:
        log.warning("channel closed: %s", reason)
        if self.conn is not None and self.conn.is_open:
            self.conn.close()

    def _schedule(self, delay: float) -> None:
        if not self.pump_scheduled and self.conn is not None:
            self.pump_scheduled = True
            self.conn.ioloop.call_later(delay, self._pump_later)

    def _pump_later(self) -> None:
        self.pump_scheduled = False
        self._pump()

    def _pump(self) -> None:
        ch = self.ch
        if ch is None or not ch.is_open or self.stopping:
            return
        now = time.monotonic()
        while len(self.in_flight) < self.window:
            if self.retry and self.retry[0][0] <= now:
                index = self.retry.popleft()[1]
            elif self.todo:
                index = self.todo[0]
                if index >= self.first_sent and self.rate:
                    due = self.started + index / self.rate
                    if due > now:
                        self._schedule(due - now)
                        break
                self.todo.popleft()
            else:
                if self.retry:
                    self._schedule(max(0.0, self.retry[0][0] - now))
                break
            self._publish(ch, index)
        self.journal.flush()

    def _publish(self, ch: pika.channel.Channel, index: int) -> None:
        if index >= self.journalled:
            upto = min(len(self.messages), index + self.window)
            for m in self.messages[self.journalled:upto]:
                self.journal.add("A", m.key, m.recipient)
            self.journal.flush(durable=True)
            self.journalled = upto
        self.first_sent = max(self.first_sent, index + 1)
        m = self.messages[index]
        ch.basic_publish(SUBMIT, self.unit, m.body, pika.BasicProperties(
            user_id=self.user, delivery_mode=2, content_type="application/json",
            type="envelope", message_id=m.message_id), mandatory=True)
        self.tag += 1
        self.in_flight[self.tag] = index
        self.sent_at[self.tag] = time.monotonic()

    def _on_return(self, ch: pika.channel.Channel, method: Any, props: Any,
                   body: bytes) -> None:
        index = self.by_mid.get(props.message_id)
        if index is not None:
            self.returned.add(index)

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        nack = isinstance(method, pika.spec.Basic.Nack)
        tags = ([t for t in self.in_flight if t <= method.delivery_tag] if method.multiple
                else [method.delivery_tag])
        later = time.monotonic() + 0.2
        for t in tags:
            index = self.in_flight.pop(t, None)
            self.sent_at.pop(t, None)
            if index is None:
                continue
            if nack or index in self.returned:
                # Refused (a full ingress queue) or routed nowhere: again, a little later.
                self.returned.discard(index)
                self.nacks += 1
                self.retry.append((later, index))
                continue
            self.confirmed += 1
            self.journal.add("C", self.messages[index].key, f"{time.time():.3f}")
        if self.done:
            self.journal.flush(durable=True)
            self._close()
            return
        self._pump()


def send(spec: dict[str, Any]) -> int:
    messages = envelopes(spec)
    journal = Journal(Path(spec["journal"]))
    publisher = Publisher(spec, messages, journal)
    signal.signal(signal.SIGTERM, lambda *_: publisher.stop())
    publisher.run()
    journal.close()
    print(json.dumps({"unit": publisher.unit, "sent": len(messages),
                      "confirmed": publisher.confirmed,
                      "nacks": publisher.nacks, "reconnects": publisher.reconnects,
                      "seconds": round(time.monotonic() - publisher.started, 3)}), flush=True)
    return 0 if publisher.done else 1


# --- the recipient: the agency SDK -----------------------------------------------------


def receive(spec: dict[str, Any]) -> int:
    import agency.client as sdk
    from agency.errors import AgencyError
    from registry.client import RegistryClient
    from registry.errors import RegistryError

    journal = Journal(Path(spec["journal"]))
    write = sdk.write_atomic

    def journalled_write(path: Path, data: bytes) -> None:
        write(path, data)
        journal.add("W", path.stem)
        journal.flush(durable=True)

    sdk.write_atomic = journalled_write  # type: ignore[assignment]
    registry = RegistryClient(spec["registry_url"], spec["registry_token"],
                              b64decode(spec["registry_key"]))
    client = sdk.AgencyClient(
        unit=spec["unit"], amqp_url=spec["amqp"],
        signing_key=SigningKeyPair.from_seed(b64decode(spec["signing_seed"])),
        encryption_keys=[EncryptionKeyPair.from_secret(b64decode(spec["encryption_secret"]))],
        directory=registry.directory, broker_key=b64decode(spec["broker_key"]),
        state_dir=Path(spec["state_dir"]))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    out = Path(spec["out_dir"])
    while not stopping:
        try:
            client.receive(out, max_messages=256, idle_timeout=0.3)
        except (AgencyError, RegistryError) as e:
            log.warning("receive failed (%s); again", type(e).__name__)
            time.sleep(0.2)
    client.close()
    journal.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["send", "receive"])
    parser.add_argument("spec", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    spec = json.loads(args.spec.read_text())
    return send(spec) if args.role == "send" else receive(spec)


if __name__ == "__main__":
    sys.exit(main())
