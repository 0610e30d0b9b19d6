"""What an administrator should look at soon: pure, from a directory and a time.

- keys that expire within the horizon (a unit whose key lapses stops sending
  or receiving without warning);
- units of a signatory that cannot send yet or any more: no valid signing
  key, or no valid encryption key to receive with;
- the broker without a valid key (no notice or checkpoint can be signed);
- protocols in force past their review date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from protocols.model import Directory, KeyRecord, Protocol, ProtocolStatus, Unit

#: How far ahead a key's expiry is worth a warning.
HORIZON = timedelta(days=30)


@dataclass(frozen=True)
class UnitWithoutKeys:
    unit: Unit
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Attention:
    expiring: tuple[KeyRecord, ...]
    units_without_keys: tuple[UnitWithoutKeys, ...]
    broker_without_key: bool
    protocols_to_review: tuple[Protocol, ...]

    @property
    def count(self) -> int:
        return (len(self.expiring) + len(self.units_without_keys) + int(self.broker_without_key)
                + len(self.protocols_to_review))


def attention(d: Directory, now: datetime, horizon: timedelta = HORIZON) -> Attention:
    """Everything in ``d`` that needs an administrator's attention at ``now``."""
    expiring = tuple(sorted(
        (k for k in d.keys if k.valid_at(now) and k.valid_until is not None
         and k.valid_until <= now + horizon), key=lambda k: k.valid_until or now))
    signatories = {o for p in d.protocols for o in p.signatories}
    without = []
    for unit in sorted(d.units(), key=lambda u: u.address):
        if unit.org not in signatories:
            continue
        missing = tuple(use for use in ("signing", "encryption")
                        if d.current_key(unit.address, use, now) is None)
        if missing:
            without.append(UnitWithoutKeys(unit, missing))
    broker = d.current_key("broker", "signing", now, holder="broker") is None
    review = tuple(p for p in d.protocols if p.status == ProtocolStatus.IN_FORCE
                   and p.review_by is not None and p.review_by <= now)
    return Attention(expiring, tuple(without), broker, review)
