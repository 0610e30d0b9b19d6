"""``infoshare broker`` as an operator runs it: set-up, failures in one line, no secret shown.

Every command runs in a child process, so what is checked is what an
operator sees: stdout, stderr, the exit status, the files left behind, and
the router's command line as ``ps`` shows it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from operator_tools import INFOSHARE, Run, ServedRegistry

from broker.node import RabbitNode, free_ports
from broker.topology import BROKER_USER, Credentials, ManagementAPI
from keys import NoteVerifier, parse_public_key_text

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple for the broker"
ENV = {"INFOSHARE_PASSPHRASE": PASSPHRASE}


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line of a failed command (and nothing else on stderr)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _init(infoshare: Run, home: Path, node_url: str, management_url: str,
          registry: ServedRegistry, *extra: str) -> subprocess.CompletedProcess[str]:
    return infoshare("broker", "init", "--home", str(home), "--amqp-url", node_url,
                     "--management-url", management_url, "--registry-url", registry.url,
                     "--registry-key", str(registry.key_file), *extra, env=ENV)


def test_init_makes_a_private_home_and_prints_the_log_key(
        infoshare: Run, tmp_path: Path, served_registry: ServedRegistry,
        tls_node: RabbitNode, tls_server_files: object) -> None:
    home = tmp_path / "broker"
    # The URLs exactly as the node prints them are what broker init takes.
    status = infoshare("node", "status", "--home", str(tls_node.data_dir), "--json")
    assert status.returncode == 0, status.stderr
    printed = json.loads(status.stdout)
    assert printed["amqp_url"] == tls_node.url and printed["running"] is True
    made = _init(infoshare, home, printed["amqp_url"], printed["management_url"],
                 served_registry, "--log-name", "infoshare.wy-iisp.org.uk/transfer-log",
                 "--tls-ca", str(tls_server_files.ca), "--json")  # type: ignore[attr-defined]
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    verifier = NoteVerifier.parse(doc["log_key"])
    assert verifier.name == "infoshare.wy-iisp.org.uk/transfer-log"
    public = parse_public_key_text((home / "broker.signing.pub").read_text())
    assert verifier.public == public
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for private in ("broker.json", "broker.signing.key"):
        assert stat.S_IMODE((home / private).stat().st_mode) == 0o600
    assert PASSPHRASE not in (home / "broker.signing.key").read_text()

    again = infoshare("broker", "log-key", "--home", str(home))
    assert again.returncode == 0 and again.stdout == doc["log_key"] + "\n"
    assert (home / "log-key.txt").read_text() == doc["log_key"] + "\n"

    config = json.loads((home / "broker.json").read_text())
    assert config["amqp_urls"] == [tls_node.url]
    assert config["origin"] == "infoshare.wy-iisp.org.uk/transfer-log"

    twice = _init(infoshare, home, tls_node.url, tls_node.management_url, served_registry)
    assert "holds a broker already" in _one_line_error(twice)


def test_init_refuses_secrets_on_the_command_line(
        infoshare: Run, tmp_path: Path, served_registry: ServedRegistry) -> None:
    with_password = _init(infoshare, tmp_path / "a", "amqps://guest:guest@127.0.0.1:5671",
                          "https://127.0.0.1:15671", served_registry)
    assert with_password.returncode == 2
    assert "without a user or password" in with_password.stderr
    db = _init(infoshare, tmp_path / "b", "amqps://127.0.0.1:5671", "https://127.0.0.1:15671",
               served_registry, "--log-database-url", "postgresql://infoshare:pw@db/log")
    assert "holds a password" in _one_line_error(db)
    assert not (tmp_path / "b").exists()
    no_passphrase = infoshare("broker", "init", "--home", str(tmp_path / "c"), "--amqp-url",
                              "amqps://127.0.0.1:5671", "--management-url",
                              "https://127.0.0.1:15671", "--registry-url", served_registry.url,
                              "--registry-key", str(served_registry.key_file),
                              env={"INFOSHARE_PASSPHRASE": ""})
    assert "INFOSHARE_PASSPHRASE" in _one_line_error(no_passphrase)


@pytest.fixture
def configured(infoshare: Run, tmp_path: Path, served_registry: ServedRegistry,
               tls_node: RabbitNode, tls_server_files: object) -> Path:
    """A broker home for the TLS node, with a token and an (unprovisioned) password."""
    home = tmp_path / "broker"
    token = tmp_path / "token"
    token.write_text(served_registry.agency_token + "\n")
    token.chmod(0o600)
    made = _init(infoshare, home, tls_node.url, tls_node.management_url, served_registry,
                 "--tls-ca", str(tls_server_files.ca),  # type: ignore[attr-defined]
                 "--token-file", str(token))
    assert made.returncode == 0, made.stderr
    return home


def _point_at(home: Path, urls: list[str], **changes: object) -> None:
    config = json.loads((home / "broker.json").read_text())
    config.update(amqp_urls=urls, **changes)
    (home / "broker.json").write_text(json.dumps(config))
    Credentials(home / "credentials.json").set(BROKER_USER, "never-shown-password")


def test_run_with_rabbitmq_down_says_so_in_one_line(infoshare: Run, configured: Path) -> None:
    (port,) = free_ports(1)
    _point_at(configured, [f"amqps://127.0.0.1:{port}"])
    line = _one_line_error(infoshare("broker", "run", "--home", str(configured), env=ENV))
    assert line == (f"error: RabbitMQ unreachable (127.0.0.1:{port}: connection refused: "
                    "is RabbitMQ running there?)")


def test_run_with_a_malformed_url_says_so_in_one_line(infoshare: Run, configured: Path) -> None:
    _point_at(configured, ["amqps://127.0.0.1:99999"])
    line = _one_line_error(infoshare("broker", "run", "--home", str(configured), env=ENV))
    assert "'amqps://127.0.0.1:99999' is not a URL" in line


def test_run_against_a_node_with_another_ca_says_so_in_one_line(
        infoshare: Run, configured: Path, tls_node: RabbitNode, tmp_path: Path) -> None:
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    _point_at(configured, [tls_node.url], tls_ca=str(other))
    line = _one_line_error(infoshare("broker", "run", "--home", str(configured), env=ENV))
    assert line.endswith("its TLS certificate is not signed by the configured CA)")
    assert "never-shown-password" not in line


def test_the_router_shows_no_secret_and_keeps_its_files_private(
        infoshare: Run, configured: Path, tls_node: RabbitNode, tls_server_files: object,
        served_registry: ServedRegistry) -> None:
    admin = tls_node.config
    registered = infoshare("broker", "provision", "--home", str(configured), "--json",
                           "--admin-user", admin.admin_user,
                           env={"RABBITMQ_ADMIN_PASSWORD": admin.admin_password})
    assert registered.returncode == 0, registered.stderr
    assert "user infoshare-broker" in json.loads(registered.stdout)["created"]
    health = configured / "router.alive"
    router = subprocess.Popen(
        [INFOSHARE, "broker", "run", "--home", str(configured), "--health-file", str(health)],
        env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    try:
        assert router.stderr is not None
        first = router.stderr.readline()
        assert first.startswith("routing with directory version"), first
        deadline = time.monotonic() + 30
        while not health.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert health.exists(), "the router never touched its health file"
        cmdline = Path(f"/proc/{router.pid}/cmdline").read_bytes().decode()
        secrets = [PASSPHRASE, served_registry.agency_token, admin.admin_password,
                   Credentials(configured / "credentials.json").password(BROKER_USER)]
        assert not [s for s in secrets if s in cmdline]
        # RabbitMQ's own command line holds no password either.
        node_cmdline = Path(f"/proc/{tls_node.pid()}/cmdline").read_bytes().decode()
        assert not [s for s in secrets if s in node_cmdline]
        for name in ("transfer-log.db", "transfer-log.db-wal", "transfer-log.db-shm",
                     "credentials.json", "registry.token"):
            assert stat.S_IMODE((configured / name).stat().st_mode) == 0o600, name
        assert stat.S_IMODE(configured.stat().st_mode) == 0o700
    finally:
        router.send_signal(signal.SIGTERM)
        _, err = router.communicate(timeout=30)
        api = ManagementAPI(tls_node.management_url, admin.admin_user, admin.admin_password,
                            tls_ca=tls_server_files.ca)  # type: ignore[attr-defined]
        api.delete("/api/vhosts/infoshare")
        for user in Credentials(configured / "credentials.json").users():
            api.delete(f"/api/users/{user}")
    assert router.returncode == 0, err
    assert "stopped: routed 0" in err
    assert "Traceback" not in err
