"""The README's first command, end to end: ``infoshare demo``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from infoshare.cli import main

pytestmark = pytest.mark.integration


def test_the_demo_runs_the_exchange_and_a_clean_audit(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--home", str(home)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "school -> Leeds early help, no consent: refused (consent_required)" in out
    assert out.count(": routed") == 5
    assert "replay: 0 decisions differ" in out
    assert "verify: ok: 11 entries" in out
    assert "and 5 of 5 signed receipts" in out
    # The export is what an auditor takes away: entries and signed checkpoints.
    entries = (home / "audit-export" / "entries.jsonl").read_text().splitlines()
    assert [json.loads(e)["seq"] for e in entries] == list(range(11))
    assert (home / "audit-export" / "checkpoints.jsonl").read_text().strip()
    # Nothing personal outside the payloads: the log holds codes, never the records.
    log_text = "\n".join(entries)
    for secret in ("Adults not known", "Attendance concerns", "LCC-C-000123", "Rapid review"):
        assert secret not in log_text
    # Records reached the recipients' gateways, sealed there: no file under the
    # demo's home holds a record or a reason in the clear.
    assert "Leeds front door -> police (s47 response): routed" in out
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (b"Adults not known", b"Rapid review", b"open_plan"):
                assert secret not in data, path
    assert "RabbitMQ node stopped" in out
