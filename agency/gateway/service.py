"""The gateway's service: what the API, the pages and the folder integration call.

One :class:`Gateway` per organisation. It holds the units' keys and talks to
the broker through one :class:`~agency.client.AgencyClient` per unit; the
store keeps the organisation's own record (sealed at rest).

Invariants:

- **Decided before accepted.** A submission is checked with
  ``protocols.policy.decide`` (through the SDK's ``prepare``) against the
  signed directory before it is answered: what the broker would refuse is
  refused here with its reason code and a sentence, and the refusal is
  recorded (golden rule 7). A purpose that needs a manager waits for one.
- **Stored, then sent.** An accepted submission's envelope bytes are
  committed before the answer (202); the courier publishes them afterwards,
  again after any failure, always the same bytes, so the broker logs each
  message once. With the registry unreachable the submission is stored
  unchecked and checked when the registry answers again.
- **Receipts follow opening.** A received record is stored sealed; its
  receipt is sent once a person or a case system has fetched it.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from agency import directory_cache
from agency.bundle import Bundle
from agency.client import AgencyClient, LogPosition, PublishOutcome, RecordSink, SentMessage
from agency.errors import (
    ClientError,
    ConnectionFailed,
    InvalidMessage,
    LocalRefusal,
    PublishFailed,
    StateError,
)
from agency.gateway.errors import (
    Conflict,
    Forbidden,
    GatewayError,
    Invalid,
    NotFound,
    Refused,
    WrongPassphrase,
)
from agency.gateway.explain import Ask, explain, permitted_recipients
from agency.gateway.home import UnitKeys
from agency.gateway.leaf import expected_leaf_hash
from agency.gateway.store import Account, GatewayStore, Message, utcnow
from keys import KeysError, open_private_key_text
from protocols.amqp import amqp_url_for
from protocols.directory import format_time
from protocols.envelope import Notice, ParsedEnvelope, Payload, parse_envelope
from protocols.errors import ProtocolsError
from protocols.model import Consent, Directory, GroundId, amqp_user

__all__ = ["DirectoryCache", "Draft", "Gateway", "Outcome", "PublishMany", "RegistryDown",
           "describe"]

log = logging.getLogger("infoshare.gateway")

#: Status words for people (the API gives the codes).
STATUS_WORDS = {
    "awaiting_approval": "waiting for a manager's approval",
    "queued": "accepted; waiting to be sent",
    "submitted": "sent to the broker; waiting for its decision",
    "routed": "delivered to the recipient's inbox",
    "refused": "refused",
    "receipted": "received and opened by the recipient",
    "returned": "returned by a manager",
    "received": "new",
    "opened": "opened; receipt sent",
}
SENDABLE = ("referral", "request", "response", "declined")


#: Publishes a unit's envelopes; the outcome of each attempted, by message id.
PublishMany = Callable[[AgencyClient, Sequence[tuple[bytes, ParsedEnvelope]]],
                       Mapping[str, PublishOutcome]]


class RegistryDown(GatewayError):
    code = "registry_unavailable"


class DirectoryCache(directory_cache.DirectoryCache):
    """The gateway's directory: asked for again when 5 s old; while the registry cannot
    be reached, the last one is used for up to an hour, and before any was had,
    :class:`RegistryDown`."""

    def __init__(self, fetch: Callable[[], Directory], max_age: float = 5.0,
                 stale_after: float = 3600.0) -> None:
        super().__init__(fetch, max_age=max_age, stale_after=stale_after)

    def get(self, fresh: bool = False) -> Directory:
        try:
            return super().get(fresh)
        except Exception as e:  # the registry client raises its own tree; any is "down"
            raise RegistryDown("the registry cannot be reached") from e


@dataclass(frozen=True)
class Draft:
    """A submission, as the API, the pages and the folder integration give it."""

    kind: str
    protocol: str
    purpose: str
    recipient: str
    record: Mapping[str, object]
    reasons: str
    consent: str | None = None
    ground: str | None = None
    subject_informed: bool = False
    in_reply_to: str | None = None
    case_reference: str | None = None

    def content(self, actor: str) -> dict[str, Any]:
        return {"record": dict(self.record), "reasons": self.reasons, "consent": self.consent,
                "ground": self.ground, "subject_informed": self.subject_informed,
                "case_reference": self.case_reference, "actor": actor}


@dataclass(frozen=True)
class Outcome:
    message_id: str
    status: str
    note: str | None = None


@dataclass
class _Unit:
    keys: UnitKeys
    client: AgencyClient


def _consent(draft: Draft) -> Consent | None:
    if draft.kind in ("declined", "receipt"):
        return None
    if draft.consent is None:
        raise Invalid("consent is required for a " + draft.kind,
                      {"consent": ["say given, not_sought or refused"]})
    ground = GroundId(draft.ground) if draft.ground else None
    if draft.consent == "given":
        ground = None
    return Consent(draft.consent, ground)  # type: ignore[arg-type]


class Gateway:
    """One organisation's gateway. Thread-safe: each thread has its own AMQP connection."""

    def __init__(self, *, org: str, store: GatewayStore, bundle: Bundle,
                 units: Mapping[str, UnitKeys], directory: DirectoryCache,
                 state_dir: Callable[[str], Path], folder_units: Sequence[str] = ()) -> None:
        self.org = org
        self.store = store
        self.directory = directory
        self.folder_units = tuple(folder_units)
        self.wake = threading.Event()
        self._units: dict[str, _Unit] = {}
        for unit, keys in units.items():
            password = bundle.password(unit)
            urls = [amqp_url_for(n, amqp_user(unit), password, bundle.vhost)
                    for n in bundle.amqp_nodes]
            client = AgencyClient(
                unit=unit,  # type: ignore[arg-type]
                amqp_url=urls, ca_file=bundle.ca_file, signing_key=keys.signing,
                encryption_keys=keys.encryption, directory=self.directory,
                broker_key=bundle.broker_public_key(), state_dir=state_dir(unit),
                record_sink=self._sink_for(unit), notice_sink=self._on_notices,
                deferred_receipts=True)
            self._units[unit] = _Unit(keys, client)

    # --- units and permissions -----------------------------------------------------------

    @property
    def units(self) -> list[str]:
        return sorted(self._units)

    def client(self, unit: str) -> AgencyClient:
        return self._unit(unit).client

    def _unit(self, unit: str) -> _Unit:
        found = self._units.get(unit)
        if found is None:
            raise Forbidden(f"{unit} is not a unit of this gateway ({self.org})")
        return found

    def close(self) -> None:
        for u in self._units.values():
            u.client.close()
        self.store.close()

    def permissions(self, unit: str) -> list[dict[str, Any]]:
        """What ``unit`` may send, purpose by purpose, read from the signed directory."""
        self._unit(unit)
        d = self.directory.get()
        me = d.unit(unit)
        now = utcnow()
        out: list[dict[str, Any]] = []
        if me is None:
            return out
        for protocol in d.protocols:
            if not protocol.in_force(now):
                continue
            for p in protocol.purposes:
                if not protocol.may_send(me, p):
                    continue
                kinds = sorted(p.opens | ({"response", "declined"} if "request" in p.opens
                                          else set()))
                out.append({
                    "protocol": protocol.id, "purpose": p.id, "title": p.title,
                    "description": p.description, "kinds": kinds,
                    "recipients": [u.address for u in
                                   permitted_recipients(d, protocol.id, p, unit)],
                    "data_categories": sorted(p.data_categories),
                    "consent_required": p.consent_required, "grounds": sorted(p.grounds),
                    "subject_may_be_left_uninformed": p.subject_may_be_withheld,
                    "approval": p.approval,
                })
        return out

    def ground_titles(self) -> dict[str, str]:
        d = self.directory.get()
        return {g.id: g.title for p in d.protocols for g in p.grounds}

    # --- submitting ----------------------------------------------------------------------

    def _ask(self, unit: str, draft: Draft) -> Ask:
        return Ask(unit=unit, kind=draft.kind, protocol=draft.protocol, purpose=draft.purpose,
                   recipient=draft.recipient, categories=sorted(draft.record),
                   consent=draft.consent, ground=draft.ground,
                   subject_informed=draft.subject_informed, in_reply_to=draft.in_reply_to,
                   signing_key=self._unit(unit).keys.signing.key_id)

    def _prepare(self, unit: str, draft: Draft, message_id: str, directory: Directory,
                 approvals: Sequence[Any] = ()) -> tuple[bytes, ParsedEnvelope]:
        if draft.consent in ("not_sought", "refused") and not draft.ground:
            # The wire form needs a ground here; say what the broker would say of the
            # purpose: consent is required, or no ground is no permitted ground.
            protocol = directory.protocol(draft.protocol)
            purpose = protocol.purpose(draft.purpose) if protocol else None
            if purpose is not None:
                raise LocalRefusal("consent_required" if purpose.consent_required
                                   else "ground_not_permitted")
        try:
            return self._unit(unit).client.prepare(
                kind=draft.kind, protocol=draft.protocol, purpose=draft.purpose,  # type: ignore[arg-type]
                recipient=draft.recipient, record=draft.record, reasons=draft.reasons,
                consent=_consent(draft), subject_informed=draft.subject_informed,
                in_reply_to=draft.in_reply_to, approvals=approvals, message_id=message_id,
                directory=directory)
        except InvalidMessage as e:
            raise Invalid(str(e)) from e

    def submit(self, unit: str, actor: str, draft: Draft, *, origin: str,
               message_id: str | None = None) -> Outcome:
        """Check, store and queue one submission.

        Raises:
            Refused: the protocol does not permit it (recorded, with its reason).
            Invalid: it cannot make an envelope.
            Forbidden: ``unit`` is not one of this gateway's units.
        """
        self._unit(unit)
        if draft.kind not in SENDABLE:
            raise Invalid(f"a gateway sends {', '.join(SENDABLE)}; receipts go by themselves",
                          {"kind": [f"one of {', '.join(SENDABLE)}"]})
        if not draft.reasons.strip():
            raise Invalid("reasons are required: say why this is shared (golden rule 7)",
                          {"reasons": ["required"]})
        if message_id is not None:
            done = self.store.message(message_id, "out")
            if done is not None:  # submitted before (a file taken again after a crash)
                if done.status == "refused":
                    raise Refused(done.reason or "refused", done.content.get("sentence") or
                                  "refused", message_id)
                return Outcome(message_id, done.status)
        mid = message_id or str(uuid.uuid4())
        content = draft.content(actor)
        common = dict(message_id=mid, direction="out", unit=unit,
                      counterpart=draft.recipient, kind=draft.kind, protocol=draft.protocol,
                      purpose=draft.purpose, in_reply_to=draft.in_reply_to,
                      case_ref=draft.case_reference, origin=origin, content=content)
        _consent(draft)
        try:
            directory = self.directory.get()
        except RegistryDown:
            self.store.add_message(status="queued", reason=None, **common)  # type: ignore[arg-type]
            self.wake.set()
            return Outcome(mid, "queued", "the registry cannot be reached: the submission is "
                                          "kept and will be checked and sent when it answers")
        try:
            body, env = self._prepare(unit, draft, mid, directory)
        except LocalRefusal as e:
            if e.reason == "approval_required":
                self._add(dict(common, status="awaiting_approval", reason=None,
                               registry_version=directory.version),
                          dict(unit=unit, type="awaiting_approval",
                               case_ref=draft.case_reference, message_id=mid,
                               details={"actor": actor}))
                return Outcome(mid, "awaiting_approval",
                               explain("approval_required", self._ask(unit, draft),
                                       directory, utcnow()))
            sentence = explain(e.reason, self._ask(unit, draft), directory, utcnow())
            self._record_refusal(unit, draft, mid, e.reason, sentence, actor, origin, common)
            raise Refused(e.reason, sentence, mid) from None
        self._add(dict(common, status="queued", reason=None, body=body,
                       header_sha256=env.header_sha256, registry_version=directory.version),
                  dict(unit=unit, type="submitted", case_ref=draft.case_reference,
                       message_id=mid, details={"actor": actor}))
        self.wake.set()
        return Outcome(mid, "queued")

    def _add(self, message: dict[str, Any], event: dict[str, Any]) -> None:
        """Store a new message and its first event in one (group) commit."""
        def write(conn: Connection) -> None:
            if self.store.add_message(**message, conn=conn):
                self.store.add_event(**event, conn=conn)
        self.store.write(write)

    def check(self, unit: str, actor: str, draft: Draft) -> tuple[bool, int]:
        """Check a draft without storing it: (whether a manager must approve, directory
        version). A refusal is recorded (golden rule 7) and raised.

        Raises:
            Refused, Invalid, Forbidden, RegistryDown.
        """
        self._unit(unit)
        directory = self.directory.get()
        mid = str(uuid.uuid4())
        try:
            self._prepare(unit, draft, mid, directory)
        except LocalRefusal as e:
            if e.reason == "approval_required":
                return True, directory.version
            sentence = explain(e.reason, self._ask(unit, draft), directory, utcnow())
            common = dict(message_id=mid, direction="out", unit=unit,
                          counterpart=draft.recipient, kind=draft.kind,
                          protocol=draft.protocol, purpose=draft.purpose,
                          in_reply_to=draft.in_reply_to, case_ref=draft.case_reference,
                          origin="page", content=draft.content(actor))
            self._record_refusal(unit, draft, mid, e.reason, sentence, actor, "page", common)
            raise Refused(e.reason, sentence, mid) from None
        return False, directory.version

    def _record_refusal(self, unit: str, draft: Draft, mid: str, reason: str, sentence: str,
                        actor: str, origin: str, common: dict[str, Any]) -> None:
        log.info("refused locally message_id=%s reason=%s", mid, reason)
        self._add(dict(common, status="refused", reason=reason,
                       content={**common["content"], "sentence": sentence,
                                "refused_by": "gateway"}),
                  dict(unit=unit, type="refused_locally", case_ref=draft.case_reference,
                       message_id=mid, reason=reason,
                       details={"actor": actor, "sentence": sentence,
                                "purpose": draft.purpose, "recipient": draft.recipient}))

    def _draft_of(self, m: Message) -> Draft:
        c = m.content
        return Draft(kind=m.kind, protocol=m.protocol, purpose=m.purpose,
                     recipient=m.counterpart, record=c["record"], reasons=c["reasons"],
                     consent=c["consent"], ground=c["ground"],
                     subject_informed=bool(c["subject_informed"]), in_reply_to=m.in_reply_to,
                     case_reference=c.get("case_reference"))

    # --- approvals -----------------------------------------------------------------------

    def approvals(self, unit: str) -> list[Message]:
        return self.store.messages(unit=unit, direction="out", statuses=["awaiting_approval"])

    def approve(self, message_id: str, manager: Account, passphrase: str) -> Outcome:
        """Countersign with the manager's key (opened with ``passphrase``) and queue.

        Raises:
            WrongPassphrase: the key did not open; nothing was signed.
            Forbidden, NotFound, Conflict, Refused.
        """
        m = self._waiting(message_id, manager)
        if not manager.manager_key:
            raise Forbidden(f"{manager.username} has no manager's key at this gateway")
        try:
            key = open_private_key_text(manager.manager_key, passphrase.encode("utf-8"),
                                        where="manager key").signing_pair()
        except KeysError:
            log.info("approval refused message_id=%s reason=wrong_passphrase", message_id)
            raise WrongPassphrase("that passphrase does not open your key: nothing was "
                                  "signed; try again") from None
        draft = self._draft_of(m)
        directory = self.directory.get()
        try:
            body, env = self._prepare(m.unit, draft, message_id, directory, approvals=[key])
        except LocalRefusal as e:
            sentence = explain(e.reason, self._ask(m.unit, draft), directory, utcnow())
            if e.reason == "key_not_valid" or e.reason == "bad_signature":
                sentence = (f"your manager's key {key.key_id} is not registered for "
                            f"{self.org}: ask the registry's administrator to register it")
            raise Refused(e.reason, sentence, message_id) from None
        with self.store.transaction() as conn:
            if not self.store.update_message(
                    message_id, "out", expect=["awaiting_approval"], status="queued", body=body,
                    header_sha256=env.header_sha256, registry_version=directory.version,
                    content={**m.content, "approved_by": manager.username,
                             "approved_at": format_time(utcnow())}, conn=conn):
                raise Conflict(f"{message_id} is no longer waiting for approval")
            self.store.add_event(unit=m.unit, type="approved", message_id=message_id,
                                 case_ref=m.content.get("case_reference"),
                                 details={"manager": manager.username,
                                          "manager_id": manager.manager_id}, conn=conn)
        self.wake.set()
        return Outcome(message_id, "queued")

    def return_to_sender(self, message_id: str, manager: Account, reasons: str) -> Outcome:
        m = self._waiting(message_id, manager)
        if not reasons.strip():
            raise Invalid("say why it is returned", {"reasons": ["required"]})
        with self.store.transaction() as conn:
            if not self.store.update_message(
                    message_id, "out", expect=["awaiting_approval"], status="returned",
                    content={**m.content, "returned_by": manager.username,
                             "return_reasons": reasons}, conn=conn):
                raise Conflict(f"{message_id} is no longer waiting for approval")
            self.store.add_event(unit=m.unit, type="returned", message_id=message_id,
                                 case_ref=m.content.get("case_reference"),
                                 details={"manager": manager.username, "reasons": reasons},
                                 conn=conn)
        return Outcome(message_id, "returned")

    def _waiting(self, message_id: str, manager: Account) -> Message:
        if manager.role != "manager":
            raise Forbidden("only a manager may approve or return")
        m = self.store.message(message_id, "out")
        if m is None or m.unit != manager.unit:
            raise NotFound(f"no message {message_id} of {manager.unit}")
        if m.status != "awaiting_approval":
            raise Conflict(f"{message_id} is {m.status}, not waiting for approval")
        return m

    # --- sent and received ---------------------------------------------------------------

    def sent(self, unit: str, message_id: str) -> Message:
        m = self.store.message(message_id, "out")
        if m is None or m.unit != unit:
            raise NotFound(f"no message {message_id} sent by {unit}")
        return m

    def inbox(self, unit: str, *, only_new: bool = False) -> list[Message]:
        self._unit(unit)
        statuses = ["received"] if only_new else ["received", "opened"]
        return self.store.messages(unit=unit, direction="in", statuses=statuses)

    def fetch(self, unit: str, message_id: str, *, case_reference: str | None = None) -> Message:
        """A received record, decrypted; its receipt is queued the first time."""
        m = self.store.message(message_id, "in")
        if m is None or m.unit != unit:
            raise NotFound(f"no message {message_id} in the inbox of {unit}")
        if m.status == "received" and m.body is not None:
            try:
                self.client(unit).acknowledge(m.body, publish_now=False)
            except (StateError, ClientError, ProtocolsError) as e:
                log.warning("receipt for message_id=%s not queued (%s)", message_id, e.code
                            if isinstance(e, ClientError) else type(e).__name__)
            self.store.update_message(message_id, "in", expect=["received"], status="opened")
            self.store.add_event(unit=unit, type="opened", message_id=message_id,
                                 case_ref=m.content.get("case_reference"))
            self.wake.set()
        if case_reference:
            self.store.update_message(message_id, "in", case_ref=case_reference,
                                      unit_for_case=unit,
                                      content={**m.content, "case_reference": case_reference})
        found = self.store.message(message_id, "in")
        assert found is not None
        return found

    # --- the organisation's own record ---------------------------------------------------

    def decline_to_share(self, unit: str, actor: str, *, case_reference: str, reasons: str,
                         purpose: str | None = None, recipient: str | None = None) -> int:
        self._unit(unit)
        if not reasons.strip():
            raise Invalid("say why not", {"reasons": ["required"]})
        self.store.add_event(unit=unit, type="not_shared", case_ref=case_reference,
                             details={"actor": actor, "reasons": reasons, "purpose": purpose,
                                      "recipient": recipient,
                                      "case_reference": case_reference})
        return 1

    def record_consent(self, unit: str, actor: str, *, case_reference: str, asked: str,
                       asked_at: str, response: str, notes: str = "") -> None:
        self._unit(unit)
        if response not in ("given", "refused", "not_asked"):
            raise Invalid("response is given, refused or not_asked",
                          {"response": ["given, refused or not_asked"]})
        self.store.add_event(unit=unit, type="consent_discussion", case_ref=case_reference,
                             details={"actor": actor, "asked": asked, "asked_at": asked_at,
                                      "response": response, "notes": notes,
                                      "case_reference": case_reference})

    def consent_discussions(self, unit: str, case_reference: str) -> list[dict[str, Any]]:
        tag = self.store.case_tag(unit, case_reference)
        return [{"at": format_time(e.at), **e.details}
                for e in self.store.events(unit=unit, case_tag=tag,
                                           types=["consent_discussion"])]

    def case_record(self, unit: str, case_reference: str) -> dict[str, Any]:
        self._unit(unit)
        tag = self.store.case_tag(unit, case_reference)
        msgs = self.store.messages(unit=unit, case_tag=tag)
        evs = self.store.events(unit=unit, case_tag=tag)
        return {"case_reference": case_reference, "messages": msgs, "events": evs}

    def decisions_not_to_share(self, unit: str) -> list[dict[str, Any]]:
        out = []
        for e in self.store.events(unit=unit, types=["not_shared", "refused_locally",
                                                     "returned"]):
            out.append({"id": e.id, "at": format_time(e.at), "type": e.type,
                        "message_id": e.message_id, "reason": e.reason, **e.details})
        return out

    # --- what the courier calls ----------------------------------------------------------

    def _sink_for(self, unit: str) -> RecordSink:
        def sink(body: bytes, env: ParsedEnvelope, payload: Payload,
                 position: LogPosition) -> Path | None:
            h = env.header
            if h.sender in self._units and position.leaf is not None:
                self._broker_leaf(h.message_id, position.leaf)
            if h.kind == "receipt":
                original = str(payload.record.get("received", ""))
                self._receipted(original, h.message_id, position.seq)
                return None
            self.store.add_message(
                message_id=h.message_id, direction="in", unit=unit, counterpart=h.sender,
                kind=h.kind, protocol=h.protocol, purpose=h.purpose,
                in_reply_to=h.in_reply_to, case_ref=None, status="received", reason=None,
                origin="broker", body=body, header_sha256=env.header_sha256,
                seq=position.seq, leaf_hash=position.leaf,
                content={"record": payload.record, "reasons": payload.reasons,
                         "consent": None if h.consent is None else h.consent.status,
                         "ground": None if h.consent is None else h.consent.ground,
                         "subject_informed": h.subject_informed,
                         "created_at": format_time(h.created_at)})
            self.wake.set()
            return None
        return sink

    def _receipted(self, original: str, receipt_id: str, seq: int | None) -> None:
        m = self.store.message(original, "out")
        if m is None:
            return
        if self.store.update_message(original, "out", expect=["queued", "submitted", "routed"],
                                     status="receipted",
                                     content={**m.content, "receipt": receipt_id,
                                              "receipt_seq": seq}):
            self.store.add_event(unit=m.unit, type="receipted", message_id=original,
                                 case_ref=m.content.get("case_reference"))

    def _on_notices(self, notices: Sequence[Notice]) -> None:
        """The broker's decisions on what this gateway sent, applied in one commit."""
        decided = []
        for notice in notices:
            m = (self.store.message(notice.message_id, "out")
                 if notice.message_id is not None else None)
            if m is not None:
                decided.append((m, notice, self._computed_leaf(m, notice)))
        if decided:
            def write(conn: Connection) -> None:
                for m, notice, leaf in decided:
                    self._apply_notice(conn, m, notice, leaf)
            self.store.write(write)

    def _apply_notice(self, conn: Connection, m: Message, notice: Notice,
                      leaf: str | None) -> None:
        case_ref = m.content.get("case_reference")
        if notice.decision == "routed":
            if self.store.update_message(m.message_id, "out", expect=["queued", "submitted"],
                                         status="routed", seq=notice.seq, conn=conn):
                self.store.add_event(unit=m.unit, type="routed", message_id=m.message_id,
                                     case_ref=case_ref, conn=conn)
            else:  # its receipt came first (both taken in one round): only the position
                self.store.update_message(m.message_id, "out", expect=["receipted"],
                                          seq=notice.seq, conn=conn)
            if leaf is not None:
                self.store.set_leaf(m.message_id, leaf, "gateway", conn=conn)
        elif self.store.update_message(m.message_id, "out", expect=["queued", "submitted"],
                                       status="refused", reason=notice.reason,
                                       seq=notice.seq, conn=conn,
                                       content={**m.content, "refused_by": "broker"}):
            self.store.add_event(unit=m.unit, type="refused_by_broker",
                                 message_id=m.message_id, reason=notice.reason,
                                 case_ref=case_ref, conn=conn)

    @staticmethod
    def _computed_leaf(m: Message, notice: Notice) -> str | None:
        if m.body is None or m.registry_version is None:
            return None
        return expected_leaf_hash(m.body, notice, m.registry_version, amqp_user(m.unit))

    def _broker_leaf(self, message_id: str, leaf: str) -> None:
        """A message sent by one of this gateway's units arrived at another with the
        broker's leaf hash (``infoshare-leaf``): it replaces the computed one."""
        m = self.store.message(message_id, "out")
        if m is None:
            return
        if m.leaf_source == "gateway" and m.leaf_hash != leaf:
            # The router decided with another registry version than the gateway did.
            log.warning("leaf hash corrected by the broker's message_id=%s "
                        "registry_version=%s", message_id, m.registry_version)
        self.store.set_leaf(message_id, leaf, "broker")

    def publish_pending(self, publish: PublishMany | None = None) -> int:
        """Publish what is queued (checking first what was stored unchecked), unit by unit;
        each unit's batch is recorded as submitted in one commit of the store.

        ``publish(client, envelopes)`` publishes a batch (by default
        ``client.publish_many``, in this thread; the courier spreads it over
        several connections). Returns how many were published; stops after a
        unit whose publishing failed, the rest kept queued.
        """
        batches: dict[str, list[tuple[bytes, ParsedEnvelope]]] = {}
        for mid, unit, body in self.store.pending(limit=200):
            if body is None:
                m = self.store.message(mid, "out")
                body = self._check_late(m) if m is not None else None
            if body is not None:
                batches.setdefault(unit, []).append((body, parse_envelope(body)))
        published = 0
        for unit, batch in batches.items():
            client = self.client(unit)
            outcomes = (publish(client, batch) if publish is not None
                        else dict(zip((env.header.message_id for _, env in batch),
                                      client.publish_many(batch), strict=False)))
            sent = [mid for mid, o in outcomes.items() if isinstance(o, SentMessage)]
            refused = [(mid, o.reason) for mid, o in outcomes.items()
                       if isinstance(o, LocalRefusal)]
            self.store.write(functools.partial(self._published, sent=sent, refused=refused))
            published += len(sent)
            failed = [o for o in outcomes.values()
                      if isinstance(o, ConnectionFailed | PublishFailed)]
            if failed:
                log.warning("publishing for %s failed (%s); %d kept queued", unit,
                            failed[0].code, len(batch) - len(sent) - len(refused))
                break
        return published

    def _published(self, conn: Connection, *, sent: Sequence[str],
                   refused: Sequence[tuple[str, str]]) -> None:
        self.store.mark_submitted(conn, sent)
        for mid, reason in refused:
            # A body over the wire limit, which RabbitMQ would refuse (wire spec 2).
            self.store.update_message(mid, "out", expect=["queued"], status="refused",
                                      reason=reason, conn=conn)

    def _check_late(self, m: Message) -> bytes | None:
        """A submission stored while the registry was down: decide it now."""
        try:
            directory = self.directory.get(fresh=True)
        except RegistryDown:
            return None
        draft = self._draft_of(m)
        try:
            body, env = self._prepare(m.unit, draft, m.message_id, directory)
        except LocalRefusal as e:
            status = "awaiting_approval" if e.reason == "approval_required" else "refused"
            sentence = explain(e.reason, self._ask(m.unit, draft), directory, utcnow())
            self.store.update_message(
                m.message_id, "out", expect=["queued"], status=status,
                reason=None if status == "awaiting_approval" else e.reason,
                registry_version=directory.version, content={**m.content,
                                                             "sentence": sentence})
            if status == "refused":
                self.store.add_event(unit=m.unit, type="refused_locally",
                                     message_id=m.message_id, reason=e.reason,
                                     case_ref=m.content.get("case_reference"),
                                     details={"sentence": sentence})
            return None
        except Invalid as e:
            self.store.update_message(m.message_id, "out", expect=["queued"], status="refused",
                                      reason="malformed", content={**m.content,
                                                                   "sentence": str(e)})
            return None
        self.store.update_message(m.message_id, "out", expect=["queued"], body=body,
                                  header_sha256=env.header_sha256,
                                  registry_version=directory.version)
        return body


def describe(m: Message) -> dict[str, Any]:
    """A message's status for the API (codes, ids and log position; no content)."""
    out: dict[str, Any] = {
        "message_id": m.message_id, "kind": m.kind, "protocol": m.protocol,
        "purpose": m.purpose, "status": m.status, "status_text": STATUS_WORDS.get(m.status,
                                                                                  m.status),
        "reason": m.reason, "seq": m.seq, "leaf_hash": m.leaf_hash,
        "leaf_hash_source": m.leaf_source, "registry_version": m.registry_version,
        "created_at": format_time(m.created_at), "updated_at": format_time(m.updated_at),
        "in_reply_to": m.in_reply_to,
    }
    if m.direction == "out":
        out["recipient"] = m.counterpart
        out["sentence"] = m.content.get("sentence")
    else:
        out["sender"] = m.counterpart
    return out
