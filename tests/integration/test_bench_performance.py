"""The performance benchmark runs end to end with tiny sizes, so that it never rots.

Its figures mean nothing at these sizes and nothing here looks at a time: the
test checks that every section ran and printed its line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_performance.py"


def test_every_section_of_the_benchmark_runs_with_tiny_sizes() -> None:
    # Its work directory goes where tempfile puts it (not under pytest's 0700 base),
    # since the PostgreSQL server of the two-router section runs as its own user.
    done = subprocess.run([sys.executable, str(BENCH), "--tiny"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for expected in ("hop 1 KiB", "hop 64 KiB", "raw hop at 200/s", "latency at 200/s",
                     "raw hop at 1,000/s", "latency at 1,000/s",
                     "1 router(s), PostgreSQL", "2 router(s), PostgreSQL", "gateway submit",
                     "verify", "replay", "export size per entry", "inclusion proof",
                     "done in"):
        assert expected in out, f"{expected!r} missing from:\n{out}"
