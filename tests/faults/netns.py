"""Network namespaces for a cluster whose nodes can be cut off one from another.

One Linux bridge in this namespace and, per node, a network namespace joined
to it by a veth pair, on a private /24 of its own. A node is cut off by
taking its veth down (nothing reaches it, nor leaves it) and healed by
bringing it up. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): :func:`available`
says whether this machine allows it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


#: What ``ip netns add`` says when the machine forbids it (not root, or a container
#: without CAP_SYS_ADMIN): the one reason a partition scenario may be skipped.
_FORBIDDEN = ("Operation not permitted", "Permission denied")


def available() -> tuple[bool, str]:
    """Whether network namespaces can be made here, and if not why."""
    probe = f"isfprobe{os.getpid()}"
    try:
        made = _ip("netns", "add", probe)
    except FileNotFoundError:
        return False, "no ip command (iproute2)"
    if made.returncode != 0:
        return False, (made.stderr or made.stdout).strip() or "ip netns add failed"
    _ip("netns", "del", probe)
    return True, ""


def forbidden(why: str) -> bool:
    """Whether ``why`` (from :func:`available`) says the machine forbids namespaces,
    rather than that something is broken or missing."""
    return any(f in why for f in _FORBIDDEN)


class Namespaces:
    """``count`` namespaces behind one bridge; :meth:`close` removes everything."""

    def __init__(self, count: int) -> None:
        tag = f"isf{os.getpid() % 100000}"
        self._bridge = f"{tag}br"
        self._veths = [f"{tag}v{i + 1}" for i in range(count)]
        self.names = [f"{tag}-n{i + 1}" for i in range(count)]
        net = f"10.213.{100 + os.getpid() % 150}"
        self.addresses = [f"{net}.{i + 1}" for i in range(count)]
        self.close()  # whatever an interrupted run left
        try:
            self._run("link", "add", self._bridge, "type", "bridge")
            self._run("addr", "add", f"{net}.254/24", "dev", self._bridge)
            self._run("link", "set", self._bridge, "up")
            for ns, veth, address in zip(self.names, self._veths, self.addresses, strict=True):
                peer = f"{veth}p"
                self._run("netns", "add", ns)
                self._run("link", "add", veth, "type", "veth", "peer", "name", peer)
                self._run("link", "set", peer, "netns", ns)
                self._run("link", "set", veth, "master", self._bridge, "up")
                self._run("-n", ns, "link", "set", "lo", "up")
                self._run("-n", ns, "addr", "add", f"{address}/24", "dev", peer)
                self._run("-n", ns, "link", "set", peer, "up")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _run(*args: str) -> None:
        result = _ip(*args)
        if result.returncode != 0:
            raise OSError(f"ip {' '.join(args)}: {(result.stderr or result.stdout).strip()}")

    @property
    def places(self) -> list[tuple[str, str]]:
        """(namespace, address) of each node, for ``broker.node.start_cluster``."""
        return list(zip(self.names, self.addresses, strict=True))

    def cut(self, index: int) -> None:
        """Cut node ``index`` off: from the other nodes and from every client."""
        self._run("link", "set", self._veths[index], "down")

    def heal(self, index: int) -> None:
        self._run("link", "set", self._veths[index], "up")

    def close(self) -> None:
        for ns in self.names:
            # epmd outlives the nodes; in a namespace of ours it is ours to stop.
            pids = _ip("netns", "pids", ns).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", ns)
        for veth in self._veths:
            _ip("link", "del", veth)
        _ip("link", "del", self._bridge)
