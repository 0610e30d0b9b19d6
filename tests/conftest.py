"""Fixtures for tests that need real services, and the CI rule about skips.

* ``rabbit_node``: one private RabbitMQ node (management plugin on) per test
  session, in its own temporary directory; ``amqp_url`` and ``management_url``
  point at it.
* ``postgres_instance``: one private PostgreSQL 15 per session;
  ``postgres_url`` is a fresh, empty database for each test.
* ``tls_ca``: a certificate authority made for this session (trustme), and
  ``tls_server_files``: a certificate for 127.0.0.1 and localhost that it
  signed, as PEM files, for servers under test (HTTPS, AMQPS).

A missing ``rabbitmq-server`` or PostgreSQL is an error, never a skip:
``scripts/setup`` installs them. With ``CI=true``, a test marked integration,
postgres or faults that skips for any reason is reported as failed, so a
green CI run always means those tests ran.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from private_nodes import private_node

from broker.node import RabbitNode
from broker.postgres import PostgresError, PostgresInstance

_MUST_RUN_IN_CI = ("integration", "postgres", "faults")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        report.skipped
        and _in_ci()
        and not hasattr(report, "wasxfail")
        and any(item.get_closest_marker(m) for m in _MUST_RUN_IN_CI)
    ):
        # A skip's longrepr is (path, line, "Skipped: reason").
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where it must run: {reason}"
    return report


@pytest.fixture(scope="session")
def rabbit_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    with private_node(tmp_path_factory.mktemp("rabbit"), "infoshare-test") as node:
        yield node


@pytest.fixture(scope="session")
def amqp_url(rabbit_node: RabbitNode) -> str:
    return rabbit_node.amqp_url


@pytest.fixture(scope="session")
def management_url(rabbit_node: RabbitNode) -> str:
    return rabbit_node.management_url


@pytest.fixture(scope="session")
def postgres_instance() -> Iterator[PostgresInstance]:
    # Not under tmp_path_factory: pytest's base directory is 0700 root, and the
    # server runs as the postgres user, which must be able to reach its files.
    data_dir = Path(tempfile.mkdtemp(prefix="infoshare-pg-"))
    instance = PostgresInstance(data_dir)
    try:
        instance.start()
    except PostgresError as e:
        shutil.rmtree(data_dir, ignore_errors=True)
        pytest.fail(f"could not start a private PostgreSQL:\n{e}", pytrace=False)
    try:
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_instance: PostgresInstance) -> Iterator[str]:
    """SQLAlchemy URL of a new empty database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield postgres_instance.create_database(name)
    postgres_instance.drop_database(name)


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A CA for this test session only; its certificate is what clients are told to trust."""
    return trustme.CA()


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a server certificate and of the CA that signed it."""

    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def tls_server_files(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    directory = tmp_path_factory.mktemp("tls")
    cert = tls_ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(ca=directory / "ca.pem", cert=directory / "server.pem",
                     key=directory / "server.key")
    tls_ca.cert_pem.write_to_path(str(files.ca))
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert), append=True)
    cert.private_key_pem.write_to_path(str(files.key))
    # Servers refuse (and RabbitMQ warns about) a private key others can read.
    files.key.chmod(0o600)
    return files
