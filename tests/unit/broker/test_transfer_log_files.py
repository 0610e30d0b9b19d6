"""The transfer log's files at rest: private from their creation, and backed up consistently."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.transfer_log import TransferLog, TransferLogError
from keys import NoteSigner, SigningKeyPair

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _open(path: Path) -> TransferLog:
    return TransferLog.open(f"sqlite:///{path}", origin="test.example/log",
                            signer=NoteSigner("test.example/log", SigningKeyPair.generate()))


def test_the_database_and_its_wal_and_shm_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "transfer-log.db"
    old = os.umask(0o022)
    try:
        log = _open(path)
        log.checkpoint(NOW)
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {
            f.name: 0o600 for f in files}
        log.close()
    finally:
        os.umask(old)


def test_a_backup_is_a_private_copy_and_never_overwrites(tmp_path: Path) -> None:
    log = _open(tmp_path / "transfer-log.db")
    note = log.checkpoint(NOW)
    target = tmp_path / "backup.db"
    assert log.backup(target) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    copy = TransferLog.open(f"sqlite:///{target}", signer=None, origin="test.example/log")
    assert copy.latest_checkpoint() == note
    copy.close()
    with pytest.raises(TransferLogError, match="cannot create the backup"):
        log.backup(target)
    log.close()
