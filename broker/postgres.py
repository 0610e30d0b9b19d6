"""Private PostgreSQL 15 instances from Debian's ``postgresql`` package.

A :class:`PostgresInstance` is one cluster (``initdb``) in its own data
directory, run by ``pg_ctl`` from ``/usr/lib/postgresql/15/bin``. This module
guarantees:

* **Isolation.** Its own data directory, unix socket directory and TCP port
  (a free one, found by binding to port 0, unless given); the system's
  clusters under ``/etc/postgresql`` and ``/var/lib/postgresql`` are never
  touched.
* **Loopback only.** TCP on 127.0.0.1; the socket lives in ``data_dir/run``.
* **Trust for local connections.** User ``postgres``, no password, from this
  machine only: ``pg_hba.conf`` is initdb's own with ``--auth=trust``, and
  nothing listens beyond loopback.
* **Runs as root.** ``initdb`` and ``pg_ctl`` refuse root, so they run through
  ``runuser -u postgres --``; the data directory is handed to ``postgres``
  and must sit below directories that user can traverse (``/tmp`` is fine,
  ``/root`` and pytest's 0700 base directory are not).
* **Ready means ready; stopped means gone.** :meth:`PostgresInstance.start`
  returns once the server accepts connections; :meth:`PostgresInstance.stop`
  uses ``pg_ctl stop -m fast`` and falls back to signals.

URLs are SQLAlchemy URLs for psycopg 3:
``postgresql+psycopg://postgres@127.0.0.1:PORT/NAME``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

from broker.node import free_ports

__all__ = ["PG_BIN", "PostgresError", "PostgresInstance"]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
_USER = "postgres"
_INSTALL_HINT = "install it with scripts/setup (apt-get install -y postgresql)"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresError(Exception):
    """A private PostgreSQL instance could not be set up, started or stopped."""


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (PID 1 may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresInstance:
    """One private PostgreSQL server; see the module docstring for its guarantees."""

    def __init__(self, data_dir: Path, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port if port is not None else free_ports(1, host)[0]

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def url(self) -> str:
        """URL of the ``postgres`` maintenance database."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://{_USER}@{self.host}:{self.port}/{name}"

    # -- running the tools as postgres -------------------------------------

    def _as_postgres(
        self, tool: str, *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        exe = PG_BIN / tool
        if not os.access(exe, os.X_OK):
            raise PostgresError(f"{exe} not found: {_INSTALL_HINT}")
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        try:
            return subprocess.run(
                [runuser, "-u", _USER, "--", str(exe), *args],
                env=env,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise PostgresError(f"{tool} {' '.join(args)} took over {timeout:.0f}s") from e

    def _prepare(self) -> None:
        if os.geteuid() != 0:
            raise PostgresError("PostgresInstance runs initdb through runuser and needs root")
        try:
            import pwd

            pw = pwd.getpwnam(_USER)
        except KeyError as e:
            raise PostgresError(f"no user {_USER!r}: {_INSTALL_HINT}") from e
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        for path in (self.data_dir, self.socket_dir):
            os.chown(path, pw.pw_uid, pw.pw_gid)
            path.chmod(0o700)
        probe = subprocess.run(
            ["runuser", "-u", _USER, "--", "test", "-w", str(self.data_dir)],
            capture_output=True,
            check=False,
        )
        if probe.returncode != 0:
            raise PostgresError(
                f"user {_USER} cannot reach {self.data_dir}: put it below directories "
                "every user may traverse (e.g. under /tmp)"
            )
        if not (self.pgdata / "PG_VERSION").exists():
            result = self._as_postgres(
                "initdb",
                "-D", str(self.pgdata),
                "--username", _USER,
                "--auth", "trust",
                "--encoding", "UTF8",
                "--locale", "C",
                "--no-sync",
            )  # fmt: skip
            if result.returncode != 0:
                raise PostgresError(f"initdb failed:\n{result.stdout}{result.stderr}")
            with (self.pgdata / "postgresql.conf").open("a") as conf:
                conf.write("\ninclude_if_exists = 'infoshare.conf'\n")
        conf_path = self.pgdata / "infoshare.conf"
        conf_path.write_text(
            f"listen_addresses = {_quote(self.host)}\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = {_quote(str(self.socket_dir))}\n"
        )
        os.chown(conf_path, pw.pw_uid, pw.pw_gid)

    # -- lifecycle ---------------------------------------------------------

    def postmaster_pid(self) -> int | None:
        """The server's pid while it runs, else None."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def is_running(self) -> bool:
        return self.postmaster_pid() is not None

    def start(self, timeout: float = 30.0) -> None:
        """Create the cluster if needed and start it; return once it accepts connections.

        Raises:
            PostgresError: not installed, not root, port taken, or the server did
                not start; the message ends with the tail of the server log.
        """
        if self.is_running():
            raise PostgresError(f"PostgreSQL in {self.pgdata} is already running")
        self._prepare()
        result = self._as_postgres(
            "pg_ctl",
            "-D", str(self.pgdata),
            "-l", str(self.log_file),
            "-w", "-t", str(int(timeout)),
            "start",
            timeout=timeout + 10,
        )  # fmt: skip
        if result.returncode != 0 or not self.is_running():
            self._kill()
            raise PostgresError(
                f"pg_ctl start failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
                f"--- {self.log_file} (tail) ---\n{self._log_tail()}"
            )

    def stop(self) -> None:
        """Stop the server (fast shutdown); safe to call when it is not running.

        Raises:
            PostgresError: the server survived SIGKILL.
        """
        if not self.is_running():
            return
        result = self._as_postgres(
            "pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "30", "stop", timeout=40
        )
        if result.returncode != 0 or self.is_running():
            self._kill()
        if self.is_running():
            raise PostgresError(f"could not stop PostgreSQL in {self.pgdata}")

    def _kill(self) -> None:
        for sig in (signal.SIGINT, signal.SIGKILL):  # SIGINT is a fast shutdown
            pid = self.postmaster_pid()
            if pid is None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- databases ---------------------------------------------------------

    def _connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=_USER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL.

        Raises:
            ValueError: ``name`` is not a plain lower-case identifier.
            PostgresError: the server refused.
        """
        if not _DB_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        try:
            with self._connect() as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as e:
            raise PostgresError(f"could not create database {name}: {e}") from e
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, closing any connections to it.

        Raises:
            PostgresError: the server refused.
        """
        if not _DB_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        try:
            with self._connect() as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        except psycopg.Error as e:
            raise PostgresError(f"could not drop database {name}: {e}") from e

    def __enter__(self) -> PostgresInstance:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PostgresInstance({str(self.data_dir)!r}, port={self.port})"
