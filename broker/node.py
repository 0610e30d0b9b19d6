"""Private RabbitMQ nodes (and small clusters) from Debian's ``rabbitmq-server``.

A :class:`RabbitNode` is one Erlang node that belongs to its data directory and
to nothing else on the machine. This module guarantees:

* **Isolation.** Each node has its own node name, AMQP port, management port,
  distribution port, configuration file, ``enabled_plugins`` file, Mnesia and
  log directories, pid file and ``HOME`` holding its Erlang cookie (mode 0400).
  The system's ``/etc/rabbitmq`` and any other node on the machine are never
  read or touched, and no port is assumed free: ports that are not given are
  found by binding to port 0.
* **Loopback only.** AMQP, the management API and Erlang distribution listen
  on 127.0.0.1; an epmd started by a node binds to 127.0.0.1 too. A node may
  instead live in a network namespace of its own (``NodeConfig.netns``, made
  by the caller, root only): it then listens on that namespace's address
  only, under a long node name (``name@address``), with an epmd of its own,
  so that a test can cut it off from the others (``ip link set ... down``).
* **TLS when given certificates.** With :class:`NodeTls` the node listens for
  AMQPS only (no plain AMQP listener) and serves the management API over
  HTTPS, from copies of the PEM files kept in its data directory (0600).
* **Private files.** The data directory is 0700; the configuration file,
  which may hold the administrator's password, is 0600.
* **Ready means ready.** :meth:`RabbitNode.start` returns only once the
  AMQP listener (the last thing a booting node starts) accepts connections
  and the management API answers ``/api/overview``. On any failure it raises
  :class:`NodeError` carrying the tail of the node's logs, and leaves no
  process of the node behind.
* **Stopped means gone.** :meth:`RabbitNode.stop` asks ``rabbitmqctl stop``
  and, if that fails or the VM lingers, sends SIGTERM then SIGKILL to the
  node's process group. It is safe to call on a node that is already dead.
* **Findable.** ``data_dir/node.json`` records the ports and process ids, so
  another process can stop the node (:meth:`RabbitNode.from_state`).
* **The wire limit.** ``max_message_size`` is the wire spec's limit on a whole
  AMQP body (16 MiB, ``protocols.envelope.MAX_BODY_BYTES``): the node refuses
  a larger publish by closing the publisher's channel (406), so no larger
  body is ever stored, queued or handed to the router.

The real scripts in ``/usr/lib/rabbitmq/bin`` are called, not the
``/usr/sbin`` wrappers: as root those switch to the ``rabbitmq`` user, which
cannot write directories root created and reads a different cookie.

The epmd daemon is shared by all Erlang nodes on the machine and outlives
them; that is intended, and it is never stopped here. Process checks read
``/proc``, so this module is Linux-only.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from protocols.amqp import amqp_url_for
from protocols.envelope import MAX_BODY_BYTES

__all__ = [
    "RABBITMQ_BIN",
    "NodeConfig",
    "NodeError",
    "NodeTls",
    "RabbitNode",
    "free_ports",
    "start_cluster",
    "stop_all",
]

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
STATE_FILE = "node.json"
_INSTALL_HINT = "install it with scripts/setup (apt-get install -y rabbitmq-server)"


class NodeError(Exception):
    """A private RabbitMQ node could not be started, reached or stopped."""


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports that were free on ``host`` just now.

    All sockets are held open until every port is chosen, so the ports are
    distinct; another process may still take one before it is used.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``port`` now, as RabbitMQ's do: with SO_REUSEADDR, so
    that connections of a stopped node lingering in TIME_WAIT do not count as in use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class NodeTls:
    """PEM files for TLS: the node's certificate (chain) and key, and the CA clients trust."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class NodeConfig:
    """Where a node lives and what it listens on.

    ``name`` is the short Erlang node name; the node is ``name@localhost`` (or
    ``name@host`` in a network namespace, ``netns``) and must be unique among
    the Erlang nodes running on this machine. With
    ``tls`` the node speaks only AMQPS and HTTPS (management). With an
    ``admin_user`` other than guest, RabbitMQ creates that administrator on
    first start instead of guest; its password is written only to the node's
    own configuration file (0600).
    """

    name: str
    data_dir: Path
    amqp_port: int
    management_port: int
    dist_port: int
    host: str = "127.0.0.1"
    tls: NodeTls | None = None
    admin_user: str = "guest"
    admin_password: str = field(default="guest", repr=False)
    #: A network namespace (``ip netns``) to run in; ``host`` is then its address.
    netns: str | None = None

    @classmethod
    def in_directory(cls, data_dir: Path, *, name: str = "infoshare",
                     tls: NodeTls | None = None, admin_user: str = "guest",
                     admin_password: str = "guest") -> NodeConfig:
        """A config for a node in ``data_dir`` on three freshly chosen free ports."""
        amqp, management, dist = free_ports(3)
        return cls(
            name=name,
            data_dir=Path(data_dir).resolve(),
            amqp_port=amqp,
            management_port=management,
            dist_port=dist,
            tls=tls,
            admin_user=admin_user,
            admin_password=admin_password,
        )

    @property
    def nodename(self) -> str:
        """The Erlang node name, e.g. ``infoshare@localhost`` (``infoshare@10.1.2.3`` in a
        network namespace, where ``localhost`` is the namespace's own)."""
        if "@" in self.name:
            return self.name
        return f"{self.name}@{self.host if self.netns else 'localhost'}"


# -- /proc helpers -----------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, pgid) of a process, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm is in parentheses and may itself contain spaces or parentheses.
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, fields[0], int(fields[2])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _live_group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, comm) of every process in group ``pgid`` that is not a zombie.

    Zombies count as dead: PID 1 on some machines never reaps orphans.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is not None and stat[2] == pgid and stat[1] != "Z":
            members.append((int(entry.name), stat[0]))
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (it may hold a password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o600)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# -- the node ----------------------------------------------------------------


class RabbitNode:
    """One private RabbitMQ node; see the module docstring for its guarantees.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    ``cookie`` sets the Erlang cookie (nodes of one cluster share one); by
    default an existing cookie in the data directory is kept, else a random
    one is made.
    """

    def __init__(self, config: NodeConfig, *, cookie: str | None = None) -> None:
        self.config = config
        self._cookie = cookie
        self._proc: subprocess.Popen[bytes] | None = None
        self._pgid: int | None = None

    @classmethod
    def from_state(cls, data_dir: Path) -> RabbitNode:
        """The node recorded in ``data_dir/node.json`` by an earlier :meth:`start`.

        Raises:
            NodeError: there is no readable state file.
        """
        data_dir = Path(data_dir).resolve()
        path = data_dir / STATE_FILE
        try:
            state = json.loads(path.read_text())
            tls = state.get("tls")
            config = NodeConfig(
                name=state["name"],
                data_dir=data_dir,
                amqp_port=int(state["amqp_port"]),
                management_port=int(state["management_port"]),
                dist_port=int(state["dist_port"]),
                host=state.get("host", "127.0.0.1"),
                netns=state.get("netns"),
                tls=None if not tls else NodeTls(Path(tls["cert"]), Path(tls["key"]),
                                                 Path(tls["ca"])),
                admin_user=state.get("admin_user", "guest"),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise NodeError(f"no node state in {path}: {e}") from e
        node = cls(config)
        pgid = state.get("pgid")
        node._pgid = int(pgid) if pgid is not None else None
        return node

    # -- paths and environment ---------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def home(self) -> Path:
        return self.data_dir / "home"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "log" / f"{self.config.nodename}.log"

    @property
    def server_output(self) -> Path:
        return self.data_dir / "server.out"

    @property
    def url(self) -> str:
        """The AMQP listener without user or vhost, as clients are configured with it."""
        scheme = "amqps" if self.config.tls else "amqp"
        return f"{scheme}://{self.config.host}:{self.config.amqp_port}"

    @property
    def amqp_url(self) -> str:
        """The AMQP URL as the administrator, in vhost ``/`` (for tests and tools)."""
        c = self.config
        return amqp_url_for(self.url, c.admin_user, c.admin_password, "/")

    @property
    def management_url(self) -> str:
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{self.config.host}:{self.config.management_port}"

    @property
    def nodename(self) -> str:
        return self.config.nodename

    def _env(self) -> dict[str, str]:
        d = self.data_dir
        env = dict(os.environ)
        # Anything RABBITMQ_* from the caller could point this node at shared
        # files or ports; start from a clean slate.
        for key in list(env):
            if key.startswith(("RABBITMQ_", "ERL_")):
                del env[key]
        address = "{" + self.config.host.replace(".", ",") + "}"
        dist_iface = f"-kernel inet_dist_use_interface {address}"
        env.update(
            HOME=str(self.home),
            RABBITMQ_NODENAME=self.config.nodename,
            RABBITMQ_DIST_PORT=str(self.config.dist_port),
            RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(d / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(d / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
            RABBITMQ_LOG_BASE=str(d / "log"),
            RABBITMQ_PID_FILE=str(d / "rabbitmq.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=dist_iface,
            RABBITMQ_CTL_ERL_ARGS=dist_iface,
            # rabbitmqctl's own Erlang node listens too; by default on a fixed
            # range (35672-35682) shared by every CLI call on the machine. Port
            # 0 lets the kernel pick, so parallel calls never collide.
            RABBITMQ_CTL_DIST_PORT_MIN="0",
            RABBITMQ_CTL_DIST_PORT_MAX="0",
            ERL_EPMD_ADDRESS=self.config.host,
            ERL_CRASH_DUMP=str(d / "erl_crash.dump"),
        )
        if self.config.netns:
            env["RABBITMQ_USE_LONGNAME"] = "true"
        return env

    def _command(self, *args: str) -> list[str]:
        """``args`` as run in the node's network namespace, if it has one."""
        if self.config.netns:
            return ["ip", "netns", "exec", self.config.netns, *args]
        return list(args)

    def _write_files(self) -> None:
        d = self.data_dir
        for sub in ("home", "mnesia", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        cookie_path = self.home / ".erlang.cookie"
        if self._cookie is not None or not cookie_path.exists():
            cookie = self._cookie or secrets.token_hex(20)
            if cookie_path.exists():
                cookie_path.chmod(0o600)
            cookie_path.write_text(cookie)
        cookie_path.chmod(0o400)
        _write_private(d / "rabbitmq.conf", self._rabbitmq_conf())
        (d / "enabled_plugins").write_text("[rabbitmq_management].\n")
        # An empty env file stops the scripts sourcing /etc/rabbitmq/rabbitmq-env.conf.
        (d / "rabbitmq-env.conf").write_text("")

    def _rabbitmq_conf(self) -> str:
        c = self.config
        # In a namespace of its own, this machine reaches the node over a private bridge,
        # not loopback: guest must be let in from there (nothing else reaches it).
        guest = "loopback_users = none" if c.netns else "loopback_users.guest = true"
        lines = [guest, f"max_message_size = {MAX_BODY_BYTES}"]
        if c.admin_user != "guest":
            # Made on first start instead of guest, as an administrator of vhost "/".
            lines += [f"default_user = {c.admin_user}", f"default_pass = {c.admin_password}"]
        if c.tls is None:
            lines += [f"listeners.tcp.1 = {c.host}:{c.amqp_port}",
                      f"management.tcp.ip = {c.host}",
                      f"management.tcp.port = {c.management_port}"]
            return "\n".join(lines) + "\n"
        tls_dir = self.data_dir / "tls"
        tls_dir.mkdir(mode=0o700, exist_ok=True)
        files = {}
        for name, source in (("ca.pem", c.tls.ca), ("cert.pem", c.tls.cert),
                             ("key.pem", c.tls.key)):
            try:
                _write_private(tls_dir / name, Path(source).read_text(encoding="ascii"))
            except (OSError, UnicodeDecodeError) as e:
                raise NodeError(f"{source}: cannot read the PEM file") from e
            files[name] = tls_dir / name
        lines += ["listeners.tcp = none",
                  f"listeners.ssl.1 = {c.host}:{c.amqp_port}"]
        for prefix in ("ssl_options", "management.ssl"):
            lines += [f"{prefix}.cacertfile = {files['ca.pem']}",
                      f"{prefix}.certfile = {files['cert.pem']}",
                      f"{prefix}.keyfile = {files['key.pem']}"]
        # Clients prove who they are with a password; they present no certificate.
        lines += ["ssl_options.verify = verify_none",
                  "ssl_options.fail_if_no_peer_cert = false",
                  "ssl_options.versions.1 = tlsv1.3",
                  "ssl_options.versions.2 = tlsv1.2",
                  f"management.ssl.ip = {c.host}",
                  f"management.ssl.port = {c.management_port}"]
        return "\n".join(lines) + "\n"

    def _write_state(self) -> None:
        c = self.config
        state: dict[str, Any] = {
            "name": c.name,
            "nodename": c.nodename,
            "host": c.host,
            "netns": c.netns,
            "amqp_port": c.amqp_port,
            "management_port": c.management_port,
            "dist_port": c.dist_port,
            "management_url": self.management_url,
            "url": self.url,
            "admin_user": c.admin_user,
            "tls": None if c.tls is None else {
                "cert": str(c.tls.cert), "key": str(c.tls.key), "ca": str(c.tls.ca)},
            "pgid": self._pgid,
            "pid": self.pid(),
        }
        path = self.data_dir / STATE_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, path)

    # -- process state -----------------------------------------------------

    def _members(self) -> list[tuple[int, str]]:
        if self._pgid is None:
            return []
        members = _live_group_members(self._pgid)
        if self._proc is not None and self._proc.poll() is None:
            return members  # our own unreaped child still leads the group
        # Otherwise the group id may have been reused after the node died: it
        # is the node's only if a member was started with this node's HOME.
        marker = str(self.home)
        if members and not any(marker in _cmdline(pid) for pid, _ in members):
            return []
        return members

    def pid(self) -> int | None:
        """OS pid of the node's Erlang VM (beam.smp), or None if it is not alive."""
        for pid, comm in self._members():
            if comm.startswith("beam"):
                return pid
        return None

    def is_running(self) -> bool:
        """True while any process of the node is alive (not whether it answers)."""
        return bool(self._members())

    # -- commands ----------------------------------------------------------

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n NODE ARGS`` with this node's HOME and environment.

        Does not raise on a non-zero exit; check ``returncode``.

        Raises:
            NodeError: rabbitmqctl is missing or did not finish within ``timeout``.
        """
        return self._run_tool("rabbitmqctl", *args, timeout=timeout)

    def _run_tool(
        self, tool: str, *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        exe = RABBITMQ_BIN / tool
        if not os.access(exe, os.X_OK):
            raise NodeError(f"{exe} not found: {_INSTALL_HINT}")
        try:
            return subprocess.run(
                self._command(str(exe), "-n", self.config.nodename, *args),
                env=self._env(),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise NodeError(f"{tool} {' '.join(args)} took over {timeout:.0f}s") from e

    def start(self, timeout: float = 90.0) -> None:
        """Start the node and wait until AMQP and the management API answer.

        Raises:
            NodeError: not installed, a port is taken, the node died or was not
                ready within ``timeout`` seconds; the message ends with the tail
                of the node's logs. No process of the node is left running.
        """
        server = RABBITMQ_BIN / "rabbitmq-server"
        if not os.access(server, os.X_OK):
            raise NodeError(f"{server} not found: {_INSTALL_HINT}")
        if self.is_running():
            raise NodeError(f"node {self.nodename} in {self.data_dir} is already running")
        c = self.config
        for what, port in (
            ("AMQP", c.amqp_port),
            ("management", c.management_port),
            ("distribution", c.dist_port),
        ):
            # A namespace's ports are its own (and its address is not this one's).
            if not c.netns and not _port_is_free(c.host, port):
                raise NodeError(f"{what} port {c.host}:{port} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)
        self._write_files()
        deadline = time.monotonic() + timeout
        with self.server_output.open("ab") as out:
            # A new session: the node gets its own process group (stopped as a
            # whole) and no terminal signals from whoever started it.
            self._proc = subprocess.Popen(
                self._command(str(server)),
                env=self._env(),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pgid = self._proc.pid
        self._write_state()
        try:
            self._wait_ready(deadline)
        except BaseException as e:
            self._kill()
            if isinstance(e, NodeError):
                tails = self._log_tails()
                if "duplicate_node_name" in tails:
                    e = NodeError(f"node name {self.nodename} is already in use on this machine")
                raise NodeError(f"{e}\n{tails}") from None
            raise
        self._write_state()

    def _wait_ready(self, deadline: float) -> None:
        # A booting node starts its AMQP listener last, after every boot step and
        # plugin: a connection it accepts means the node is up. Polling the socket,
        # rather than calling rabbitmqctl await_startup (an Erlang VM of its own for
        # every attempt, seconds each on a small machine), lets a restarted node
        # serve again sooner.
        self._wait_for(self._amqp_accepts, deadline, "AMQP")
        self._wait_for(self._management_answers, deadline, "the management API")

    def _amqp_accepts(self) -> bool:
        try:
            with socket.create_connection((self.config.host, self.config.amqp_port),
                                          timeout=1.0):
                return True
        except OSError:
            return False

    def _wait_for(self, ready: Callable[[], bool], deadline: float, what: str) -> None:
        while not ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise NodeError(f"{what} of {self.nodename} did not answer in time")
            time.sleep(0.1)

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise NodeError(f"{self.nodename} exited with status {self._proc.returncode}")

    def _management_answers(self) -> bool:
        try:
            self.management_get("/api/overview", timeout=2.0)
        except (OSError, ValueError):
            return False
        return True

    def management_get(self, path: str, *, timeout: float = 10.0) -> Any:
        """GET ``path`` from the management API as the administrator; the decoded JSON.

        Raises:
            OSError: the API did not answer (urllib.error.URLError, HTTPError).
            ValueError: the answer was not JSON.
        """
        c = self.config
        token = base64.b64encode(f"{c.admin_user}:{c.admin_password}".encode()).decode()
        request = urllib.request.Request(
            self.management_url + path, headers={"Authorization": f"Basic {token}"}
        )
        context = None if c.tls is None else ssl.create_default_context(cafile=str(c.tls.ca))
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return json.loads(response.read())

    def _log_tails(self) -> str:
        parts = []
        for path in (self.server_output, self.log_file):
            tail = _tail(path)
            if tail:
                parts.append(f"--- {path} (tail) ---\n{tail}")
        return "\n".join(parts) or f"(no log output in {self.data_dir})"

    def stop(self) -> None:
        """Stop the node: ``rabbitmqctl stop``, else SIGTERM, else SIGKILL.

        Safe to call on a node that is not running.

        Raises:
            NodeError: some process of the node survived SIGKILL.
        """
        if self.is_running():
            try:
                result: subprocess.CompletedProcess[str] | None = self.ctl("stop", timeout=30)
            except NodeError:
                result = None
            if result is None or result.returncode != 0 or not self._wait_gone(20.0):
                self._kill()
        self._reap()
        if self.is_running():
            raise NodeError(f"could not stop {self.nodename}: {self._members()}")
        if self.data_dir.exists():
            self._write_state()

    def _kill(self) -> None:
        if self._pgid is None or not self._members():
            self._reap()
            return
        _signal_group(self._pgid, signal.SIGTERM)
        if not self._wait_gone(10.0):
            _signal_group(self._pgid, signal.SIGKILL)
            self._wait_gone(10.0)
        self._reap()

    def _wait_gone(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self._members():
            # Reap our own child as soon as it exits so it is not a zombie.
            if self._proc is not None:
                self._proc.poll()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)

    def __enter__(self) -> RabbitNode:
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
        return f"RabbitNode({self.nodename!r}, amqp={self.config.amqp_port})"


# -- clusters ----------------------------------------------------------------


def start_cluster(
    base_dir: Path, size: int = 3, *, name: str = "infoshare", timeout: float = 120.0,
    places: Sequence[tuple[str, str]] | None = None,
) -> list[RabbitNode]:
    """Start ``size`` nodes under ``base_dir`` and join them into one cluster.

    Nodes are ``{name}-1`` ... ``{name}-N`` in ``base_dir/node-1`` ...; they
    share one Erlang cookie, start in parallel, and nodes 2..N join node 1
    (``stop_app``, ``join_cluster``, ``start_app``). Returns the nodes, node 1
    first, once every node reports all ``size`` nodes running. ``places``
    puts node i in network namespace ``places[i][0]`` at address
    ``places[i][1]`` (made by the caller) instead of on loopback.

    Raises:
        NodeError: a node failed to start or join; all nodes are stopped.
    """
    if size < 1:
        raise ValueError("a cluster needs at least one node")
    if places is not None and len(places) != size:
        raise ValueError("one place per node")
    base_dir = Path(base_dir).resolve()
    ports = free_ports(3 * size)
    cookie = secrets.token_hex(20)
    nodes = [
        RabbitNode(
            NodeConfig(
                name=f"{name}-{i + 1}",
                data_dir=base_dir / f"node-{i + 1}",
                amqp_port=ports[3 * i],
                management_port=ports[3 * i + 1],
                dist_port=ports[3 * i + 2],
                netns=None if places is None else places[i][0],
                host="127.0.0.1" if places is None else places[i][1],
            ),
            cookie=cookie,
        )
        for i in range(size)
    ]
    deadline = time.monotonic() + timeout
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=size) as pool:
            for future in [pool.submit(n.start, timeout) for n in nodes]:
                future.result()
        seed = nodes[0].nodename
        for node in nodes[1:]:
            for args in (("stop_app",), ("join_cluster", seed), ("start_app",)):
                result = node.ctl(*args, timeout=max(10.0, deadline - time.monotonic()))
                if result.returncode != 0:
                    raise NodeError(
                        f"{node.nodename}: rabbitmqctl {' '.join(args)} failed: "
                        f"{(result.stderr or result.stdout).strip()}"
                    )
            node._wait_ready(deadline)
        expected = {n.nodename for n in nodes}
        for node in nodes:
            running = _running_nodes(node)
            if running != expected:
                raise NodeError(f"{node.nodename} sees {sorted(running)}, not {sorted(expected)}")
    except BaseException:
        with contextlib.suppress(NodeError):
            stop_all(nodes)
        raise
    return nodes


def stop_all(nodes: list[RabbitNode]) -> None:
    """Stop several nodes at once (each stop waits for its VM to halt).

    Raises:
        NodeError: the first node that could not be stopped; the others are
            still stopped.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        futures = [pool.submit(node.stop) for node in nodes]
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error


def _running_nodes(node: RabbitNode) -> set[str]:
    result = node.ctl("cluster_status", "--formatter", "json")
    if result.returncode != 0:
        raise NodeError(f"{node.nodename}: cluster_status failed: {result.stderr.strip()}")
    try:
        status = json.loads(result.stdout)
        return set(status["running_nodes"])
    except (ValueError, KeyError, TypeError) as e:
        raise NodeError(f"{node.nodename}: unexpected cluster_status: {result.stdout!r}") from e
