"""A private RabbitMQ node for a test session, shared by the fixtures that need one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from broker.node import NodeConfig, NodeError, RabbitNode


@contextmanager
def private_node(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[RabbitNode]:
    """A node in a directory of its own, started, and stopped and removed afterwards.

    Node names are machine-wide (epmd): the pid goes into ``name`` so that two
    sessions can run at once. A node that cannot start fails the test, never skips it.
    """
    data_dir = tmp_path_factory.mktemp(name)
    node = RabbitNode(NodeConfig.in_directory(data_dir, name=f"{name}-{os.getpid()}"))
    try:
        node.start()
    except NodeError as e:
        pytest.fail(f"could not start a private RabbitMQ node:\n{e}", pytrace=False)
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
