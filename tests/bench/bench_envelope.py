"""Benchmark: envelope build (sign + seal) and parse + verify, against raw Ed25519.

Not run by CI. Run from the repository root:

    python tests/bench/bench_envelope.py [--iterations N] [--record-bytes B]

The baseline (one Ed25519 sign and one verify over the same header bytes) is
measured in the same run, so the ratios compare like with like on one machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

# Runnable as a plain script from a checkout without installing the project.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from keys import EncryptionKeyPair, SigningKeyPair, verify_signature
from protocols.envelope import (
    ParsedEnvelope,
    build_envelope,
    open_payload,
    parse_envelope,
    verify_sender_signature,
)
from protocols.model import Consent, GroundId
from protocols.policy import signing_input


def _per_op_us(fn: Callable[[], object], iterations: int) -> float:
    """Microseconds per call, best of three rounds (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / iterations * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--record-bytes", type=int, default=1024)
    args = parser.parse_args()

    sender = SigningKeyPair.generate()
    recipient = EncryptionKeyPair.generate()
    # Synthetic content of the requested size: no real data in benchmarks.
    record = {"concern": "x" * args.record_bytes}

    def build() -> tuple[bytes, ParsedEnvelope]:
        return build_envelope(
            kind="referral", protocol="wy-iisp-2016", purpose="safeguarding-referral",
            sender="west-yorkshire-police/police-safeguarding",
            recipient="leeds-cc/front-door", record=record, reasons="benchmark",
            sender_key=sender, recipient_key=recipient.public,
            created_at=datetime(2026, 11, 24, 13, 50, 41, tzinfo=UTC),
            consent=Consent("not_sought", GroundId("child-significant-harm")),
            subject_informed=False)

    body, env = build()
    header_input = signing_input(env.header_bytes)
    signature = sender.sign(header_input)

    def parse_verify() -> None:
        parsed = parse_envelope(body)
        if not verify_sender_signature(parsed, sender.public):
            raise SystemExit("benchmark envelope does not verify")

    def baseline() -> None:
        if not verify_signature(sender.public, header_input, sender.sign(header_input)):
            raise SystemExit("baseline signature does not verify")

    def sign_only() -> None:
        sender.sign(header_input)

    def verify_only() -> None:
        verify_signature(sender.public, header_input, signature)

    def open_only() -> None:
        open_payload(env, recipient)

    n = args.iterations
    base = _per_op_us(baseline, n)
    rows = [
        ("ed25519 sign (baseline part)", _per_op_us(sign_only, n)),
        ("ed25519 verify (baseline part)", _per_op_us(verify_only, n)),
        ("ed25519 sign + verify (baseline)", base),
        ("envelope build (sign + seal)", _per_op_us(build, n)),
        ("envelope parse + verify", _per_op_us(parse_verify, n)),
        ("payload open (recipient)", _per_op_us(open_only, n)),
    ]
    print(f"record {args.record_bytes} B, body {len(body)} B, header {len(env.header_bytes)} B,"
          f" {n} iterations, best of 3")
    for name, us in rows:
        print(f"{name:<34}{us:>10.1f} us   {us / base:>5.2f} x baseline")


if __name__ == "__main__":
    main()
