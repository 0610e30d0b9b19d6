"""Benchmark: the CPU that ``audit verify`` spends per line, in one process.

Not run by CI. Run from the repository root:

    .venv/bin/python tests/bench/bench_verify_lines.py [--entries 200000] [--dir DIR]

Writes a synthetic export (``bench_audit.write_synthetic``), then, all in
this process and timed with ``time.process_time`` (CPU seconds, so that
other load on the machine matters less than to a wall clock):

1. the baseline: reading every line of entries.jsonl and evidence.jsonl and
   taking one SHA-256 of each;
2. what a worker of ``audit verify`` does: checking every chunk of lines
   (``verify_chunks``), which gives the leaf hashes;
3. what the verifying process does with them: growing the tree and meeting
   the checkpoints (``TreeCheck.add_leaves``);
4. ``audit.verify`` itself with ``--jobs`` worker processes: entries per
   second, and the CPU of the verifying process and of its workers.

Each is printed in microseconds per entry (a line of each file), and the
chunk check also as a ratio to the baseline. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Runnable as a plain script from a checkout without installing the project.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "tests" / "bench"))

import bench_audit  # noqa: E402

from audit import verify, verify_chunks  # noqa: E402
from audit.export_dir import CHECKPOINTS, ENTRIES, EVIDENCE, read_checkpoints  # noqa: E402
from audit.verifying import TreeCheck  # noqa: E402
from keys import NoteSigner, SigningKeyPair  # noqa: E402


def cpu_baseline(d: Path) -> float:
    start = time.process_time()
    bench_audit.baseline(d)
    return time.process_time() - start


def cpu_chunks(d: Path) -> tuple[list[bytes], float]:
    """The leaf hashes of every chunk, checked here, and the CPU seconds that took."""
    offsets = list(verify_chunks.chunk_offsets(d / ENTRIES, verify_chunks.CHUNK))
    ev_offsets = list(verify_chunks.chunk_offsets(d / EVIDENCE, verify_chunks.CHUNK))
    chunks = [verify_chunks._Chunk(d / ENTRIES, d / EVIDENCE, i * verify_chunks.CHUNK,
                                   (offsets[i], offsets[i + 1]),
                                   (ev_offsets[i], ev_offsets[i + 1]))
              for i in range(len(offsets) - 1)]
    leaves = []
    start = time.process_time()
    for chunk in chunks:
        result = verify_chunks._check_chunk(chunk)
        result.raise_failure()
        leaves.append(result.leaves)
    return leaves, time.process_time() - start


def cpu_tree(d: Path, signer: NoteSigner, leaves: list[bytes]) -> tuple[bytes, float]:
    check = TreeCheck(signer.verifier, evidence=True)
    check.add_checkpoints(read_checkpoints(d / CHECKPOINTS, signer.verifier))
    start = time.process_time()
    for chunk in leaves:
        check.add_leaves(chunk)
    root = check.finish()
    return root, time.process_time() - start


def run_verify(d: Path, signer: NoteSigner, jobs: int) -> tuple[float, float, float]:
    """``audit.verify`` in ``jobs`` workers: seconds, and CPU seconds of this process and
    of the workers."""
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = verify(d, log_key=signer.verifier, jobs=jobs)
    secs = time.perf_counter() - start
    assert result.ok, result.summary()
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    own, workers = ((a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime)
                    for a, b in zip(after, before, strict=True))
    return secs, own, workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="Times to run each measurement; the least CPU is printed.")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="Worker processes for the run of audit.verify.")
    parser.add_argument("--dir", type=Path, default=None,
                        help="Work directory (default: a temporary one, removed after).")
    args = parser.parse_args()
    n = args.entries
    signer = NoteSigner(bench_audit.ORIGIN, SigningKeyPair.generate())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp) / "export"
        bench_audit.write_synthetic(d, n, signer)
        base = min(cpu_baseline(d) for _ in range(args.repeat))
        runs = [cpu_chunks(d) for _ in range(args.repeat)]
        leaves = runs[0][0]
        chunks = min(secs for _, secs in runs)
        _, tree = min((cpu_tree(d, signer, leaves) for _ in range(args.repeat)),
                      key=lambda r: r[1])
        secs, own, workers = run_verify(d, signer, args.jobs)
    us = 1e6 / n
    print(f"{n:,} entries, CPU µs per entry (least of {args.repeat}): "
          f"baseline (read + SHA-256 of both lines) {base * us:.1f}; "
          f"chunk check (workers) {chunks * us:.1f} (ratio {base / chunks:.2f}); "
          f"tree and checkpoints (verifying process) {tree * us:.1f}")
    print(f"audit.verify, {args.jobs} workers: {n / secs:,.0f} entries/s; CPU µs per entry: "
          f"verifying process {own * us:.1f}, workers {workers * us:.1f}; "
          f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
