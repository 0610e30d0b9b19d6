"""Benchmark: audit verify over a large export and replay over real decisions.

Not run by CI. Run from the repository root:

    python tests/bench/bench_audit.py [--entries 1000000] [--replay-entries 20000]

1. Writes a synthetic export of ``--entries`` entries straight to files (the
   entries are built as bytes, with evidence whose header bytes hash to each
   entry's header_sha256, and a signed checkpoint every 1,000 entries), then
   times ``audit.verify`` over it.
2. Builds a log of ``--replay-entries`` real decisions (signed envelopes run
   through ``policy.decide``, appended in batches of 200 as the router does),
   exports it, and times ``audit.replay`` over that export.

Each is compared with a baseline measured in the same run over the same
bytes: reading every line of entries.jsonl and evidence.jsonl and taking one
SHA-256 of each, which is the least any verifier must do. Peak RSS is
printed to show that verify's memory does not grow with the log.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
# Runnable as a plain script from a checkout without installing the project.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from envelope_factories import FRONT_DOOR, POLICE, T0, referral, world  # noqa: E402

from audit import export, replay, verify  # noqa: E402
from audit.export_dir import checkpoint_line  # noqa: E402
from broker.router import decide_and_append, parse_body  # noqa: E402
from broker.transfer_log import TransferLog  # noqa: E402
from keys import Checkpoint, NoteSigner, SigningKeyPair, b64encode  # noqa: E402
from protocols import merkle  # noqa: E402
from protocols.directory import format_time, sign_directory  # noqa: E402
from protocols.model import amqp_user  # noqa: E402

ORIGIN = "bench.example/transfer-log"
T = TypeVar("T")

_ENTRY = (
    '{{"seq":{seq},"at":"{at}","message_id":"{mid}","kind":"referral","decision":"{decision}",'
    '"reason":{reason},"protocol":"wy-iisp-2016","purpose":"safeguarding-referral",'
    '"sender":"west-yorkshire-police/police-safeguarding","recipient":"leeds-cc/front-door",'
    '"in_reply_to":null,"consent":{{"status":"not_sought","ground":"child-significant-harm"}},'
    '"subject_informed":false,"data_categories":["concern","identity"],'
    '"header_sha256":"{hsha}","payload_sha256":"{psha}","registry_version":7,'
    '"publisher":"west-yorkshire-police.police-safeguarding","evidence_sha256":"{esha}"}}'
)
_EVIDENCE = (
    '{{"seq":{seq},"header":"{header}","signatures":[{{"key":"{key}","sig":"{sig}"}}],'
    '"publisher":"west-yorkshire-police.police-safeguarding","body_sha256":"{bsha}"}}'
)
_HEADER = (
    '{{"message_id":"{mid}","kind":"referral","protocol":"wy-iisp-2016",'
    '"purpose":"safeguarding-referral","sender":"west-yorkshire-police/police-safeguarding",'
    '"recipient":"leeds-cc/front-door","created_at":"{at}","in_reply_to":null,'
    '"consent":{{"status":"not_sought","ground":"child-significant-harm"}},'
    '"subject_informed":false,"data_categories":["concern","identity"],'
    '"payload":{{"cipher":"x25519-xsalsa20poly1305-sealedbox",'
    '"recipient_key":"0123456789abcdef0123456789abcdef","sha256":"{psha}","length":1104}}}}'
)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_synthetic(d: Path, n: int, signer: NoteSigner) -> None:
    """An export of ``n`` entries, without a database and without envelope signatures."""
    d.mkdir(parents=True)
    cr = merkle.CompactRange()
    notes = []
    sig = b64encode(b"\x00" * 64)
    with open(d / "entries.jsonl", "wb") as entries, open(d / "evidence.jsonl", "wb") as ev:
        for seq in range(n):
            mid = str(uuid.UUID(int=seq | (1 << 127), version=4))
            at = format_time(T0 + timedelta(seconds=seq // 100))
            psha = hashlib.sha256(seq.to_bytes(8, "big")).hexdigest()
            header = _HEADER.format(mid=mid, at=at, psha=psha).encode()
            hsha = hashlib.sha256(header).hexdigest()
            refused = seq % 10 == 0
            evidence = _EVIDENCE.format(
                seq=seq, header=base64.b64encode(header).decode(), key="ab" * 16, sig=sig,
                bsha=hashlib.sha256(header + b"body").hexdigest()).encode()
            line = _ENTRY.format(seq=seq, at=at, mid=mid, hsha=hsha, psha=psha,
                                 decision="refused" if refused else "routed",
                                 reason='"stale"' if refused else "null",
                                 esha=hashlib.sha256(evidence).hexdigest()).encode()
            entries.write(line + b"\n")
            ev.write(evidence + b"\n")
            cr.append(merkle.leaf_hash(line))
            if cr.size % 1000 == 0 or cr.size == n:
                notes.append(signer.sign(Checkpoint(ORIGIN, cr.size, cr.root()).text()))
    with open(d / "checkpoints.jsonl", "wb") as f:
        for note in notes:
            f.write(checkpoint_line(note) + b"\n")
    (d / "log-key.txt").write_text(signer.verifier.line() + "\n")


def baseline(d: Path) -> float:
    """Seconds to read every line of entries.jsonl and evidence.jsonl and SHA-256 it."""
    start = time.perf_counter()
    for name in ("entries.jsonl", "evidence.jsonl"):
        with open(d / name, "rb") as f:
            for line in f:
                hashlib.sha256(line).digest()
    return time.perf_counter() - start


def build_replay_export(work: Path, n: int, signer: NoteSigner) -> tuple[Path, float]:
    """A log of ``n`` real decisions (mostly routed, some refused), exported."""
    w = world()
    log = TransferLog.open(f"sqlite:///{work / 'replay.db'}", signer=signer, origin=ORIGIN)
    police, door = amqp_user(POLICE), amqp_user(FRONT_DOOR)
    bodies = []
    for i in range(n):
        body, _ = referral(w, created_at=T0 + timedelta(seconds=i // 100))
        # One in ten is published by the wrong unit: refused sender_mismatch.
        bodies.append((body, door if i % 10 == 0 else police))
    start = time.perf_counter()
    for k in range(0, n, 200):
        now = T0 + timedelta(seconds=k // 100 + 1)
        with log.batch() as lb:
            for body, user in bodies[k:k + 200]:
                decide_and_append(lb, body, parse_body(body), user, w.directory, now)
        log.checkpoint_if_due(now)
    routed_per_s = n / (time.perf_counter() - start)
    out = work / "replay-export"
    doc = sign_directory(w.directory, w.registry)
    (_, secs) = timed(lambda: export(log, out, directories=lambda v: doc,
                                     registry_key=w.registry.public,
                                     now=T0 + timedelta(days=1)))
    print(f"  decided and logged {n:,} real envelopes at {routed_per_s:,.0f}/s (SQLite, "
          f"batches of 200); export {n / secs:,.0f} entries/s")
    log.close()
    return out, secs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--replay-entries", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, default=None,
                        help="Work directory (default: a temporary one, removed after).")
    args = parser.parse_args()
    signer = NoteSigner(ORIGIN, SigningKeyPair.generate())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        big = work / "export"
        _, secs = timed(lambda: write_synthetic(big, args.entries, signer))
        size_mib = sum(p.stat().st_size for p in big.iterdir()) / 2**20
        print(f"synthetic export: {args.entries:,} entries, {size_mib:,.0f} MiB, "
              f"written in {secs:.1f}s; peak RSS so far {peak_rss_mib():.0f} MiB")

        base = baseline(big)
        result, secs = timed(lambda: verify(big, log_key=signer.verifier))
        assert result.ok, result.summary()
        print(f"verify   {args.entries / secs:>12,.0f} entries/s  ({secs:.1f}s)  "
              f"baseline SHA-256 of the same lines {args.entries / base:,.0f}/s  "
              f"ratio {secs / base:.1f}x; {result.checkpoints:,} checkpoints; "
              f"peak RSS {peak_rss_mib():.0f} MiB")

        print(f"replay over {args.replay_entries:,} real decisions:")
        small, _ = build_replay_export(work, args.replay_entries, signer)
        base = baseline(small)
        mismatches, secs = timed(lambda: replay(small))
        assert mismatches == [], mismatches[:3]
        result, vsecs = timed(lambda: verify(small, log_key=signer.verifier))
        assert result.ok, result.summary()
        n = args.replay_entries
        print(f"replay   {n / secs:>12,.0f} entries/s  ({secs:.2f}s)  ratio to baseline "
              f"{secs / base:.0f}x (Ed25519 verify and policy per entry); "
              f"verify {n / vsecs:,.0f}/s")
        print(f"run at {datetime.now(UTC).isoformat(timespec='seconds')}")


if __name__ == "__main__":
    main()
