"""The domain model: protocols, organisations, units, purposes, keys and the directory.

Frozen dataclasses, no I/O. A :class:`Directory` is everything the broker and
agency clients need at one registry version; rules are data in it, never code.
Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Literal, NewType

from keys import KeyId

OrgId = NewType("OrgId", str)
UnitId = NewType("UnitId", str)
Address = NewType("Address", str)
ProtocolId = NewType("ProtocolId", str)
PurposeId = NewType("PurposeId", str)
CategoryId = NewType("CategoryId", str)
GroundId = NewType("GroundId", str)
Role = NewType("Role", str)
MessageId = NewType("MessageId", str)

#: In a purpose's sender or recipient roles: any unit of a signatory organisation.
ANY_ROLE = Role("*")

Kind = Literal["referral", "request", "response", "declined", "receipt"]
KINDS: tuple[Kind, ...] = ("referral", "request", "response", "declined", "receipt")
#: Kinds that open an exchange; a purpose lists which of these it allows.
OPENING_KINDS: tuple[Kind, ...] = ("referral", "request")
#: Kinds that answer or acknowledge; checks 8 to 11 do not apply to the last two.
REPLY_KINDS: tuple[Kind, ...] = ("response", "declined", "receipt")

ConsentStatus = Literal["given", "not_sought", "refused"]
CONSENT_STATUSES: tuple[ConsentStatus, ...] = ("given", "not_sought", "refused")

KeyUse = Literal["signing", "encryption"]
#: Who a key belongs to: a unit, a manager of an organisation, or the broker.
KeyHolder = Literal["unit", "manager", "broker"]

Approval = Literal["never", "always", "when_refused"]


class ProtocolStatus(enum.StrEnum):
    DRAFT = "draft"
    IN_FORCE = "in_force"
    SUSPENDED = "suspended"
    ENDED = "ended"


def address(org: str, unit: str) -> Address:
    return Address(f"{org}/{unit}")


def split_address(addr: str) -> tuple[OrgId, UnitId]:
    org, _, unit = addr.partition("/")
    return OrgId(org), UnitId(unit)


def amqp_user(addr: str) -> str:
    """The AMQP user name of a unit: ``org/unit`` becomes ``org.unit`` (wire spec 5)."""
    org, unit = split_address(addr)
    return f"{org}.{unit}"


@dataclass(frozen=True)
class Unit:
    """A team of an organisation that sends and receives, e.g. a front door."""

    org: OrgId
    id: UnitId
    name: str
    roles: frozenset[Role]

    @property
    def address(self) -> Address:
        return address(self.org, self.id)


@dataclass(frozen=True)
class Organisation:
    id: OrgId
    name: str
    sector: str
    units: tuple[Unit, ...] = ()


@dataclass(frozen=True)
class Ground:
    """A non-consent ground: a situation in which consent need not be sought."""

    id: GroundId
    title: str


@dataclass(frozen=True)
class Category:
    """A data category; ``special`` marks special category or criminal offence data."""

    id: CategoryId
    title: str
    special: bool = False


@dataclass(frozen=True)
class LegalBasis:
    article6: str
    article9: str | None = None
    dpa_schedule1: str | None = None
    dpa_part3: str | None = None


@dataclass(frozen=True)
class Purpose:
    """What may be shared, by whom, with whom, and on what terms."""

    id: PurposeId
    title: str
    description: str
    opens: frozenset[Kind]
    sender_roles: frozenset[Role]
    recipient_roles: frozenset[Role]
    data_categories: frozenset[CategoryId]
    consent_required: bool
    grounds: frozenset[GroundId]
    subject_may_be_withheld: bool
    approval: Approval
    legal_basis: LegalBasis

    def allows_kind(self, kind: Kind) -> bool:
        if kind == "receipt":
            return True
        if kind in ("response", "declined"):
            return "request" in self.opens
        return kind in self.opens

    def approval_needed(self, consent: ConsentStatus | None) -> bool:
        return self.approval == "always" or (
            self.approval == "when_refused" and consent == "refused"
        )


def _roles_match(unit_roles: frozenset[Role], allowed: frozenset[Role]) -> bool:
    return ANY_ROLE in allowed or bool(unit_roles & allowed)


@dataclass(frozen=True)
class Protocol:
    """One version of an information sharing protocol."""

    id: ProtocolId
    version: int
    title: str
    status: ProtocolStatus
    effective_from: datetime
    ends_at: datetime | None
    review_by: datetime | None
    approved_by: str
    signatories: frozenset[OrgId]
    grounds: tuple[Ground, ...]
    categories: tuple[Category, ...]
    purposes: tuple[Purpose, ...]
    security: str = ""
    retention: str = ""

    def in_force(self, now: datetime) -> bool:
        """A protocol not yet in force, past its end, or suspended permits nothing."""
        return (
            self.status == ProtocolStatus.IN_FORCE
            and self.effective_from <= now
            and (self.ends_at is None or now < self.ends_at)
        )

    def purpose(self, purpose_id: str) -> Purpose | None:
        return next((p for p in self.purposes if p.id == purpose_id), None)

    def may_send(self, unit: Unit, purpose: Purpose) -> bool:
        return unit.org in self.signatories and _roles_match(unit.roles, purpose.sender_roles)

    def may_receive(self, unit: Unit, purpose: Purpose) -> bool:
        return unit.org in self.signatories and _roles_match(unit.roles, purpose.recipient_roles)


@dataclass(frozen=True)
class KeyRecord:
    """A registered public key with its validity (wire spec section 1).

    ``owner`` is the unit's address for unit keys, the organisation id for a
    manager's key (with ``manager`` naming the manager), and ``broker`` for the
    broker's notice and log keys.
    """

    key_id: KeyId
    holder: KeyHolder
    owner: str
    use: KeyUse
    public: bytes
    valid_from: datetime
    valid_until: datetime | None = None
    revoked_at: datetime | None = None
    revocation_reason: str | None = None
    manager: str | None = None

    def valid_at(self, t: datetime) -> bool:
        return (
            self.valid_from <= t
            and (self.valid_until is None or t < self.valid_until)
            and (self.revoked_at is None or t < self.revoked_at)
        )


@dataclass(frozen=True)
class Manager:
    """A person who may countersign for an organisation, known by a code, not a name."""

    id: str
    org: OrgId
    title: str


@dataclass(frozen=True)
class Directory:
    """The whole registry at one version: what the broker and clients decide with."""

    version: int
    issued_at: datetime
    organisations: tuple[Organisation, ...]
    protocols: tuple[Protocol, ...]
    keys: tuple[KeyRecord, ...]
    managers: tuple[Manager, ...] = ()

    @cached_property
    def _units(self) -> dict[str, Unit]:
        return {u.address: u for o in self.organisations for u in o.units}

    @cached_property
    def _keys(self) -> dict[str, KeyRecord]:
        return {k.key_id: k for k in self.keys}

    @cached_property
    def _orgs(self) -> dict[str, Organisation]:
        return {o.id: o for o in self.organisations}

    @cached_property
    def _protocols(self) -> dict[str, Protocol]:
        return {p.id: p for p in self.protocols}

    def organisation(self, org_id: str) -> Organisation | None:
        return self._orgs.get(org_id)

    def unit(self, addr: str) -> Unit | None:
        return self._units.get(addr)

    def units(self) -> Iterable[Unit]:
        return self._units.values()

    def protocol(self, protocol_id: str) -> Protocol | None:
        return self._protocols.get(protocol_id)

    def key(self, kid: str) -> KeyRecord | None:
        return self._keys.get(kid)

    def unit_key(self, kid: str, addr: str, use: KeyUse) -> KeyRecord | None:
        """The key ``kid`` if it is registered to unit ``addr`` for ``use``."""
        k = self._keys.get(kid)
        if k is None or k.holder != "unit" or k.owner != addr or k.use != use:
            return None
        return k

    def manager_key(self, kid: str, org: str) -> KeyRecord | None:
        """The key ``kid`` if it is a manager's signing key of organisation ``org``."""
        k = self._keys.get(kid)
        if k is None or k.holder != "manager" or k.owner != org or k.use != "signing":
            return None
        return k

    def keys_of(self, owner: str, use: KeyUse, holder: KeyHolder = "unit") -> list[KeyRecord]:
        return [k for k in self.keys if k.owner == owner and k.use == use and k.holder == holder]

    def current_key(self, owner: str, use: KeyUse, now: datetime,
                    holder: KeyHolder = "unit") -> KeyRecord | None:
        """The newest key of ``owner`` for ``use`` that is valid at ``now``."""
        valid = [k for k in self.keys_of(owner, use, holder) if k.valid_at(now)]
        return max(valid, key=lambda k: k.valid_from, default=None)


# --- envelopes (wire spec sections 2 and 3) -------------------------------------------


@dataclass(frozen=True)
class Consent:
    status: ConsentStatus
    ground: GroundId | None


@dataclass(frozen=True)
class PayloadRef:
    cipher: str
    recipient_key: KeyId
    sha256: str
    length: int


@dataclass(frozen=True)
class Header:
    """A parsed envelope header. The bytes it came from are kept beside it, never rebuilt."""

    message_id: MessageId
    kind: Kind
    protocol: ProtocolId
    purpose: PurposeId
    sender: Address
    recipient: Address
    created_at: datetime
    in_reply_to: MessageId | None
    consent: Consent | None
    subject_informed: bool
    data_categories: tuple[CategoryId, ...]
    payload: PayloadRef


@dataclass(frozen=True)
class Signature:
    key: KeyId
    sig: bytes


@dataclass(frozen=True)
class Submission:
    """What the broker decides on: a parsed envelope and how it arrived.

    ``payload_sha256`` and ``payload_length`` are measured on the ciphertext
    actually received; the header's claims are compared with them (check 13).
    """

    header: Header
    header_bytes: bytes
    signatures: tuple[Signature, ...]
    user_id: str | None
    payload_sha256: str
    payload_length: int
