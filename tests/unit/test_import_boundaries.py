"""The pure core stays pure: importing keys and protocols loads no web, queue or database code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("flask", "pika", "sqlalchemy")

PROBE = """
import json, sys
import protocols, protocols.policy, protocols.loader, protocols.directory, keys
print(json.dumps(sorted(m for m in sys.modules)))
"""


def test_core_imports_no_flask_pika_or_sqlalchemy() -> None:
    # A fresh interpreter: in this one the test session may have imported anything.
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                         text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    loaded = json.loads(out)
    assert "protocols.loader" in loaded
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert bad == []
