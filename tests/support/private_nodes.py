"""Start a private RabbitMQ node for a test session, and stop it and its files after."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker.node import NodeConfig, NodeError, NodeTls, RabbitNode


@contextmanager
def private_node(data_dir: Path, prefix: str, *, tls: NodeTls | None = None,
                 admin_user: str = "guest") -> Iterator[RabbitNode]:
    """A node named ``prefix-PID`` (node names are machine-wide) in ``data_dir``.

    With an ``admin_user`` other than guest, RabbitMQ makes that administrator
    (with a random password, in ``node.config.admin_password``) and no guest.
    A node that does not start fails the test with its logs, never skips it.
    """
    password = "guest" if admin_user == "guest" else secrets.token_urlsafe(16)
    node = RabbitNode(NodeConfig.in_directory(data_dir, name=f"{prefix}-{os.getpid()}",
                                              tls=tls, admin_user=admin_user,
                                              admin_password=password))
    try:
        node.start()
    except NodeError as e:
        pytest.fail(f"could not start a private RabbitMQ node:\n{e}", pytrace=False)
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
