"""The auditors' side as they meet it: a registry, a router and served logs, all real.

* :func:`served_registry`: a registry on SQLite, served over HTTP on a real socket, with
  the West Yorkshire protocol and the keys of the router world's units and of the
  broker, registered from their public key files; one token of each role.
* :func:`exchange`: a small exchange through a running router (routed and refused),
  then a checkpoint signed with the broker's key, as the router signs them.
* :func:`serving`: an ``infoshare`` command that serves (``log serve``, ``audit serve``,
  ``registry serve``), run as an operator runs it; yields the address it prints.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from registry_testing import served_in_thread, west_yorkshire
from router_world import (
    LEEDS_CSC,
    LEEDS_DOOR,
    POLICE_HUB,
    POLICE_INTEL,
    Keys,
    RegistryFeed,
    World,
)

from keys import SigningKeyPair, new_keys, write_public_key
from protocols.model import Consent, GroundId
from registry.app import create_app
from registry.changes import KeyOwner
from registry.client import RegistryClient
from registry.store import Store

# The installed command, as an operator runs it.
INFOSHARE = str(Path(sys.executable).parent / "infoshare")
#: The units that take part in :func:`exchange`; each has its keys registered.
UNITS = (LEEDS_CSC, LEEDS_DOOR, POLICE_HUB, POLICE_INTEL)
CSH = Consent("not_sought", GroundId("child-significant-harm"))


@dataclass
class RegistrySite:
    url: str
    store: Store
    key: SigningKeyPair
    #: The registry's public key file, as its operator hands it out.
    key_file: Path
    tokens: dict[str, str]
    token_ids: dict[str, str]
    feed: RegistryFeed


@contextmanager
def served_registry(directory: Path) -> Iterator[RegistrySite]:
    key = SigningKeyPair.generate()
    store = Store(f"sqlite:///{directory / 'registry.sqlite3'}", signing_key=key)
    actor, admin = west_yorkshire(store, "IG officer, Leeds City Council")
    valid_from = datetime.now(UTC) - timedelta(days=7)  # before the stale message below
    keys: dict[str, Keys] = {}
    for unit in UNITS:
        made = new_keys("unit", unit)
        assert made.encryption is not None
        store.register_keys(KeyOwner("unit", unit), made.files, valid_from, actor=actor)
        keys[unit] = Keys(made.signing, made.encryption)
    broker = new_keys("broker", "broker")
    store.register_keys(KeyOwner("broker", "broker"), broker.files, valid_from, actor=actor)
    tokens, ids = {"admin": admin}, {"admin": actor.removeprefix("token:")}
    for role, label in (("auditor", "Data Protection Officer, audit 2026"),
                        ("agency", "West Yorkshire broker")):
        ids[role], tokens[role] = store.create_token(role, label, actor=actor)
    key_file = directory / "registry-key.pub"
    write_public_key(key_file, key.public)
    app = create_app({"REGISTRY_STORE": store, "SECRET_KEY": "auditing-world"})
    try:
        with served_in_thread(app) as url:
            # The router reads the registry as `infoshare broker run` does: with an
            # agency's token, every directory verified against the pinned key.
            client = RegistryClient(url, tokens["agency"], key.public)
            yield RegistrySite(url, store, key, key_file, tokens, ids,
                               RegistryFeed(keys, broker.signing, client.directory))
    finally:
        store.close()


@dataclass(frozen=True)
class Exchanged:
    """The message ids of :func:`exchange`, by what each was."""

    intelligence: str  # Leeds children's social care -> police intelligence: routed
    stale: str  # the same purpose, created 25 hours before: refused (stale)
    request: str  # police hub -> Leeds front door, section 47: routed
    response: str  # its response: routed


def exchange(world: World) -> Exchanged:
    """Publish, wait for each decision, then sign a checkpoint over them all."""
    sent: list[str] = []

    def send(unit: str, recipient: str, **kw: object) -> str:
        body, mid = world.build(unit, recipient, **kw)  # type: ignore[arg-type]
        world.publish(unit, body)
        notice = world.notice(unit, mid)
        sent.append(f"{notice.decision}/{notice.reason}")
        return mid

    intelligence = send(LEEDS_CSC, POLICE_INTEL)
    stale = send(LEEDS_CSC, POLICE_INTEL, created_at=datetime.now(UTC) - timedelta(hours=25))
    request = send(POLICE_HUB, LEEDS_DOOR, kind="request", purpose="section-47-enquiry",
                   consent=CSH)
    response = send(LEEDS_DOOR, POLICE_HUB, kind="response", purpose="section-47-enquiry",
                    in_reply_to=request, consent=CSH, record={"household": {"size": 3}})
    assert sent == ["routed/None", "refused/stale", "routed/None", "routed/None"], sent
    world.log.checkpoint(datetime.now(UTC))
    return Exchanged(intelligence, stale, request, response)


_ADDRESS = re.compile(r"(?:serving|listening) on (\S+)")


@contextmanager
def serving(args: Sequence[str], *, env: Mapping[str, str] | None = None,
            cwd: Path | None = None, prefix: Sequence[str] = (),
            timeout: float = 120.0) -> Iterator[str]:
    """Run ``infoshare ARGS`` (a command that serves until stopped) and yield the address
    it prints; SIGTERM to its process group afterwards. ``prefix`` runs it through
    another command (``nsenter ...``)."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([*prefix, INFOSHARE, *args], cwd=cwd,
                                   env=dict(os.environ if env is None else env),
                                   stdout=subprocess.PIPE, stderr=errors, text=True,
                                   start_new_session=True)
        try:
            yield _address(process, timeout, errors)
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have ended by itself
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            assert process.stdout is not None
            process.stdout.close()


def _address(process: subprocess.Popen[str], timeout: float, errors: object) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                continue
            line = process.stdout.readline()
            if not line:
                break
            if found := _ADDRESS.search(line):
                return found.group(1)
    process.poll()
    errors.seek(0)  # type: ignore[attr-defined]
    said = errors.read().decode("utf-8", "replace")  # type: ignore[attr-defined]
    raise AssertionError(f"the server printed no address (exit {process.returncode}):\n{said}")
