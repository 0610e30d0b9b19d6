"""A checker in the manner of Jepsen's: what was confirmed, what was processed, what was logged.

Every actor of a fault scenario keeps a **journal**, one line per event,
appended with ``O_APPEND`` (and fsync'd where a line must survive a kill):

- a sender writes ``A <key> <recipient>`` before it first publishes a message
  (durably: a message published but not journalled would look unexpected) and
  ``C <key> <time>`` once RabbitMQ has confirmed it (or the gateway said 202);
- a recipient writes ``W <key>`` each time it writes a message's record.

The key of a message is its message id, or ``sha256:<hex>`` of the body for a
body whose header cannot be read (the log's ``header_sha256`` for such a body).

:func:`check` then counts, against the transfer log's entries:

- **lost**: confirmed to a sender, but neither processed by its recipient nor
  refused in the log (and not set aside in the dead-letter queue, which is
  reported on its own: a scenario says which keys may be there);
- **duplicated**: a record written twice, a key logged twice, or two receipts
  logged for one message;
- **unexpected**: processed or logged, but never sent (a receipt is expected
  when the message it acknowledges was processed), or processed by a unit
  other than its recipient.

:func:`verify_log` exports the log with the audit package, verifies the tree
and checkpoints, and replays every decision.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit import export, replay, verify

#: What the sender journals for a message that has no readable recipient.
NOBODY = "-"


class Journal:
    """An append-only journal file of one actor; ``durable`` lines are fsync'd."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._buffer: list[str] = []

    def add(self, *words: str) -> None:
        """Buffer a line; it reaches the file at the next :meth:`flush`."""
        self._buffer.append(" ".join(words) + "\n")

    def flush(self, *, durable: bool = False) -> None:
        if self._buffer:
            os.write(self._fd, "".join(self._buffer).encode("ascii"))
            self._buffer.clear()
        if durable:
            os.fsync(self._fd)

    def close(self) -> None:
        self.flush(durable=True)
        os.close(self._fd)


@dataclass
class History:
    """Everything the journals of one scenario say."""

    attempted: dict[str, str] = field(default_factory=dict)  # key -> intended recipient
    sender_of: dict[str, str] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)
    confirmed_at: dict[str, float] = field(default_factory=dict)  # key -> wall-clock time
    processed: Counter[str] = field(default_factory=Counter)  # key -> record writes
    processed_by: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, senders: dict[str, Path], recipients: dict[str, Path]) -> History:
        """``senders`` and ``recipients`` map a unit's address to its journal files."""
        h = cls()
        for unit, path in _each(senders):
            for words in _lines(path):
                if words[0] == "A":
                    h.attempted[words[1]] = words[2]
                    h.sender_of[words[1]] = unit
                elif words[0] == "C":
                    h.confirmed.add(words[1])
                    if len(words) > 2:
                        h.confirmed_at[words[1]] = float(words[2])
        for unit, path in _each(recipients):
            for words in _lines(path):
                if words[0] == "W":
                    h.processed[words[1]] += 1
                    h.processed_by.setdefault(words[1], set()).add(unit)
        return h


def _each(journals: dict[str, Path]) -> Iterable[tuple[str, Path]]:
    for unit, path in journals.items():
        if path.exists():
            yield unit, path


def _lines(path: Path) -> Iterable[list[str]]:
    # A kill can leave the last line unfinished, without its newline: it is not a line.
    for line in path.read_text(encoding="ascii").split("\n")[:-1]:
        words = line.split()
        if words:
            yield words


def entry_key(entry: dict[str, Any]) -> str:
    mid = entry.get("message_id")
    return str(mid) if mid is not None else f"sha256:{entry['header_sha256']}"


@dataclass
class Result:
    """The counts of one scenario, with examples of each kind of fault."""

    sent: int
    confirmed: int
    processed: int
    refused: int
    logged: int
    receipts: int
    dead_lettered: int
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]
    unconfirmed_but_delivered: int

    @property
    def counts(self) -> tuple[int, int, int]:
        return len(self.lost), len(self.duplicated), len(self.unexpected)

    def line(self) -> str:
        return (f"sent={self.sent} confirmed={self.confirmed} processed={self.processed} "
                f"refused={self.refused} logged={self.logged} receipts={self.receipts} "
                f"dead_lettered={self.dead_lettered} lost={len(self.lost)} "
                f"duplicated={len(self.duplicated)} unexpected={len(self.unexpected)} "
                f"(unconfirmed yet delivered: {self.unconfirmed_but_delivered})")

    def examples(self) -> str:
        return "; ".join(f"{name}: {items[:5]}" for name, items in (
            ("lost", self.lost), ("duplicated", self.duplicated),
            ("unexpected", self.unexpected)) if items)


def check(history: History, entries: Iterable[dict[str, Any]],
          dead_lettered: Iterable[str] = ()) -> Result:
    """Count lost, duplicated and unexpected messages (see the module docstring)."""
    logged: Counter[str] = Counter()
    refused: set[str] = set()
    receipts_for: Counter[str] = Counter()
    receipt_keys: set[str] = set()
    receipt_of: dict[str, str] = {}
    for e in entries:
        key = entry_key(e)
        logged[key] += 1
        if e.get("decision") == "refused":
            refused.add(key)
        if e.get("kind") == "receipt":
            receipt_keys.add(key)
            if e.get("in_reply_to") is not None:
                receipts_for[str(e["in_reply_to"])] += 1
                receipt_of[key] = str(e["in_reply_to"])
    dead = set(dead_lettered)
    processed = set(history.processed)

    lost = sorted(k for k in history.confirmed
                  if k not in processed and k not in refused and k not in dead)
    duplicated = sorted(
        {k for k, n in history.processed.items() if n > 1}
        | {k for k, n in logged.items() if n > 1}
        | {f"receipt-for:{k}" for k, n in receipts_for.items() if n > 1})

    def expected(key: str) -> bool:
        if key in history.attempted:
            return True
        # A receipt is sent by the recipient's own software for a message it processed.
        return key in receipt_keys and receipt_of.get(key) in processed

    unexpected = sorted({k for k in (processed | set(logged) | dead) if not expected(k)}
                        | {k for k in processed
                           if k in history.attempted
                           and history.processed_by[k] != {history.attempted[k]}})
    return Result(
        sent=len(history.attempted), confirmed=len(history.confirmed),
        processed=len(processed), refused=len(refused & set(history.attempted)),
        logged=sum(logged.values()), receipts=len(receipt_keys), dead_lettered=len(dead),
        lost=lost, duplicated=duplicated, unexpected=unexpected,
        unconfirmed_but_delivered=len((processed | refused) & (
            set(history.attempted) - history.confirmed)))


@dataclass(frozen=True)
class LogVerdict:
    ok: bool
    entries: int
    checkpoints: int
    mismatches: int
    gaps: int
    detail: str

    def line(self) -> str:
        return (f"log: entries={self.entries} checkpoints={self.checkpoints} "
                f"seq_gaps={self.gaps} verify={'ok' if self.ok else 'FAILED'} "
                f"replay_mismatches={self.mismatches}")


def verify_log(log: Any, out_dir: Path, *, directories: Callable[[int], bytes],
               registry_key: bytes) -> LogVerdict:
    """Export ``log`` (a ``TransferLog`` that can sign) with the audit package, verify the
    export (tree, checkpoints, seq, evidence) and replay every decision."""
    export(log, out_dir, directories=directories, registry_key=registry_key)
    seqs = [json.loads(line)["seq"]
            for line in (out_dir / "entries.jsonl").read_text().splitlines()]
    gaps = sum(1 for i, s in enumerate(seqs) if s != i)
    result = verify(out_dir, log_key=log.verifier)
    mismatches = replay(out_dir, registry_key=registry_key)
    detail = "" if result.ok else result.summary()
    if mismatches:
        detail += f" first mismatch: {mismatches[0]}"
    return LogVerdict(ok=result.ok and not mismatches and gaps == 0, entries=result.entries,
                      checkpoints=result.checkpoints, mismatches=len(mismatches), gaps=gaps,
                      detail=detail)
