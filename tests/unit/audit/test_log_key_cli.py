"""``infoshare log key``: the line auditors pin, from the broker's public key file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from audit.serve_cli import log_group
from keys import NoteVerifier, new_keys, write_public_key_file


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("INFOSHARE_HOME", raising=False)
    return tmp_path


def test_the_log_key_is_the_broker_key_under_the_logs_name(home: Path) -> None:
    broker = new_keys("broker", "broker")
    write_public_key_file(home / "broker.signing.pub", broker.files["signing"])
    result = CliRunner().invoke(log_group, ["key", "--home", str(home)])
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert NoteVerifier.parse(line) == NoteVerifier("wy-iisp.example/transfer-log",
                                                    broker.signing.public)
    other = CliRunner().invoke(log_group, ["key", "--key-file", str(home / "broker.signing.pub"),
                                           "--origin", "leeds.example/log"])
    assert other.output.startswith("leeds.example/log+")


def test_another_key_or_a_bad_origin_is_refused(home: Path) -> None:
    unit = new_keys("unit", "leeds-cc/front-door")
    write_public_key_file(home / "unit.pub", unit.files["signing"])
    result = CliRunner().invoke(log_group, ["key", "--key-file", str(home / "unit.pub")])
    assert result.exit_code == 1
    assert "is the signing key of unit leeds-cc/front-door, not the broker's" in result.output
    broker = new_keys("broker", "broker")
    write_public_key_file(home / "broker.pub", broker.files["signing"])
    spaced = CliRunner().invoke(log_group, ["key", "--key-file", str(home / "broker.pub"),
                                            "--origin", "two words"])
    assert spaced.exit_code == 1 and "error" in spaced.output.lower()
    assert CliRunner().invoke(log_group, ["key"]).exit_code == 2  # no --home, no key file
