"""The files docker-compose.yml runs, tried here without Docker.

``deploy/make-secrets`` makes every secret and configuration file compose
names, private and owned by the reader's uid, with certificates a TLS client
accepts for each RabbitMQ host name; ``deploy/postgres-init.sh`` gives the
registry and the transfer log a database and a role each, on a real
PostgreSQL; ``deploy/with-secrets`` turns NAME_FILE into NAME.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest
import yaml

from broker.postgres import PG_BIN, PostgresInstance

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("secrets") / "secrets"
    subprocess.run([str(DEPLOY / "make-secrets"), str(directory)], check=True,
                   capture_output=True, text=True)
    return directory


def test_make_secrets_makes_every_file_compose_names(secrets_dir: Path) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    named = [entry["file"] for section in ("secrets", "configs")
             for entry in compose[section].values()
             if entry["file"].startswith("./deploy/secrets/")]
    missing = [f for f in named if not (secrets_dir / Path(f).name).is_file()]
    assert missing == []
    for name in compose["secrets"]:
        path = secrets_dir / Path(compose["secrets"][name]["file"]).name
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode in (0o600, 0o400), (name, oct(mode))
        if os.getuid() == 0:
            assert path.stat().st_uid in (10001, 999), name
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700


def test_secrets_agree_with_one_another_and_are_made_once(secrets_dir: Path) -> None:
    password = (secrets_dir / "rabbitmq_admin_password").read_text().strip()
    assert (secrets_dir / "rabbitmq_admin.conf").read_text() == (
        f"default_user = infoshare-admin\ndefault_pass = {password}\n")
    for db in ("registry", "transfer_log"):
        db_password = (secrets_dir / f"{db}_db_password").read_text().strip()
        assert (secrets_dir / f"{db}_database_url").read_text() == (
            f"postgresql+psycopg://{db}:{db_password}@postgres:5432/{db}\n")
    assert len({(secrets_dir / n).read_text() for n in (
        "registry_passphrase", "broker_passphrase", "gateway_leeds_cc_passphrase",
        "gateway_wy_police_passphrase", "postgres_password", "erlang_cookie")}) == 6
    before = (secrets_dir / "broker_passphrase").read_text()
    subprocess.run([str(DEPLOY / "make-secrets"), str(secrets_dir)], check=True,
                   capture_output=True)
    assert (secrets_dir / "broker_passphrase").read_text() == before


@pytest.mark.parametrize("host", ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3", "registry",
                                  "gateway-leeds-cc", "gateway-wy-police"])
def test_each_certificate_is_accepted_for_its_host_name_only(secrets_dir: Path,
                                                              host: str) -> None:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(secrets_dir / f"{host}.pem", secrets_dir / f"{host}.key")
    client = ssl.create_default_context(cafile=str(secrets_dir / "ca.pem"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            for _ in range(2):
                conn, _ = listener.accept()
                try:
                    with server.wrap_socket(conn, server_side=True):
                        pass
                except (ssl.SSLError, OSError):
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client.wrap_socket(raw, server_hostname=host) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                pytest.raises(ssl.SSLCertVerificationError):
            client.wrap_socket(raw, server_hostname="rabbitmq-9")
        thread.join(timeout=10)


@pytest.mark.postgres
def test_postgres_init_gives_each_holder_its_own_database(
        secrets_dir: Path, postgres_instance: PostgresInstance, tmp_path: Path) -> None:
    passwords = tmp_path / "run-secrets"
    passwords.mkdir()
    for name in ("registry_db_password", "transfer_log_db_password"):
        (passwords / name).write_text((secrets_dir / name).read_text())
    env = {**os.environ, "PATH": f"{PG_BIN}:{os.environ['PATH']}", "SECRETS_DIR": str(passwords),
           "PGHOST": postgres_instance.host, "PGPORT": str(postgres_instance.port),
           "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres"}
    try:
        subprocess.run(["sh", str(DEPLOY / "postgres-init.sh")], env=env, check=True,
                       capture_output=True, text=True)
        base = f"host={postgres_instance.host} port={postgres_instance.port}"
        with psycopg.connect(f"{base} user=registry dbname=registry") as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("registry",)
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            psycopg.connect(f"{base} user=registry dbname=transfer_log")
        with psycopg.connect(f"{base} user=transfer_log dbname=transfer_log"):
            pass
    finally:
        with psycopg.connect(f"host={postgres_instance.host} port={postgres_instance.port} "
                             "user=postgres dbname=postgres", autocommit=True) as conn:
            for name in ("registry", "transfer_log"):
                conn.execute(f"DROP DATABASE IF EXISTS {name}")
                conn.execute(f"DROP ROLE IF EXISTS {name}")


def test_with_secrets_reads_named_files_into_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("a passphrase with spaces\n")
    shown = subprocess.run(
        [str(DEPLOY / "with-secrets"), "sh", "-c",
         'printf "%s|%s" "$INFOSHARE_PASSPHRASE" "${INFOSHARE_PASSPHRASE_FILE:-gone}"'],
        env={**os.environ, "INFOSHARE_PASSPHRASE_FILE": str(secret)}, check=True,
        capture_output=True, text=True)
    assert shown.stdout == "a passphrase with spaces|gone"
    missing = subprocess.run([str(DEPLOY / "with-secrets"), "true"],
                             env={**os.environ, "INFOSHARE_TOKEN_FILE": str(tmp_path / "no")},
                             capture_output=True, text=True)
    assert missing.returncode == 1
    assert missing.stderr == f"error: INFOSHARE_TOKEN_FILE: cannot read {tmp_path / 'no'}\n"
