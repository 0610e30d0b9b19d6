"""An auditor fetches the served log over HTTPS, end to end, as the commands run.

A real router on the session's RabbitMQ node decides a small exchange under a
real registry's directories; ``infoshare log serve`` (gunicorn, HTTPS with the
session's CA) serves its log; ``infoshare audit export --from URL`` fetches it
with an auditor's registry token. The export then passes the spec's own
verifier (tests/support/spec_verifier.py), ``audit verify --log-key`` and
``audit replay``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import spec_verifier
from auditing_world import INFOSHARE, Exchanged, RegistrySite, exchange, served_registry, serving
from router_world import ORIGIN, World, running_world

from broker.topology import Credentials
from keys import NoteSigner
from protocols.loader import ProtocolFile

pytestmark = pytest.mark.integration

VHOST = "infoshare-test-log-https"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistrySite]:
    with served_registry(tmp_path_factory.mktemp("registry")) as site:
        yield site


@pytest.fixture(scope="module")
def routed(rabbit_node: Any, amqp_base: str, wy_protocol: ProtocolFile,
           vhost_factory: Callable[[str], Credentials], registry: RegistrySite,
           tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[World, Exchanged, Path]]:
    log_path = tmp_path_factory.mktemp("broker") / "transfer-log.db"
    with running_world(management_url=rabbit_node.management_url, amqp_base=amqp_base,
                       wy_protocol=wy_protocol, credentials=vhost_factory(VHOST), vhost=VHOST,
                       log_path=log_path, registry=registry.feed) as w:
        yield w, exchange(w), log_path


def _infoshare(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFOSHARE, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_an_auditor_fetches_verifies_and_replays_the_log_over_https(
        routed: tuple[World, Exchanged, Path], registry: RegistrySite, tls_server_files: Any,
        tmp_path: Path) -> None:
    world, ids, log_path = routed
    log_key = NoteSigner(ORIGIN, world.broker_key).verifier
    (tmp_path / "log-key.txt").write_text(log_key.line() + "\n")
    for role in ("auditor", "agency"):
        path = tmp_path / f"{role}.token"
        path.write_text(registry.tokens[role] + "\n")
        path.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFOSHARE_")}
    # The auditor's machine trusts the CA that signed the log server's certificate.
    env["SSL_CERT_FILE"] = str(tls_server_files.ca)
    served = ["log", "serve", "--log", str(log_path), "--log-key", "log-key.txt",
              "--registry", registry.url, "--registry-key", str(registry.key_file),
              "--index", str(tmp_path / "log-index.sqlite"), "--port", "0",
              "--certfile", str(tls_server_files.cert), "--keyfile", str(tls_server_files.key)]
    with serving(served, env=env, cwd=tmp_path) as url:
        assert url.startswith("https://127.0.0.1:"), url
        refused = _infoshare("audit", "export", "agency-export", "--from", url,
                             "--token-file", "agency.token", "--log-key", "log-key.txt",
                             "--registry-key", str(registry.key_file), env=env, cwd=tmp_path)
        assert refused.returncode == 1
        assert "only a registry token with role auditor may read the transfer log; this one " \
               "is an agency's (HTTP 403)" in refused.stderr
        assert not (tmp_path / "agency-export").exists()
        fetched = _infoshare("audit", "export", "export", "--from", url,
                             "--token-file", "auditor.token", "--log-key", "log-key.txt",
                             "--registry-key", str(registry.key_file), env=env, cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    version = registry.store.directory().version
    # The router signs checkpoints of its own as well as the last one, over all four.
    assert re.fullmatch(rf"exported 4 entries and \d+ checkpoints to export \(registry "
                        rf"versions {version}\)\n", fetched.stdout), fetched.stdout

    counts = spec_verifier.verify_export(str(tmp_path / "export"), name=ORIGIN,
                                         public_key=world.broker_key.public)
    assert counts["entries"] == counts["evidence"] == 4

    verified = _infoshare("audit", "verify", "export", "--log-key", "log-key.txt",
                          env=env, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert re.match(r"ok: 4 entries, \d+ checkpoints, evidence checked, root ", verified.stdout)
    replayed = _infoshare("audit", "replay", "export", "--registry-key",
                          str(registry.key_file), env=env, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == "ok: every decision re-runs to the same result\n"
    refusals = _infoshare("audit", "report", "export", "--decision", "refused", "--format",
                          "csv", env=env, cwd=tmp_path)
    assert refusals.returncode == 0, refusals.stderr
    (_, row) = refusals.stdout.splitlines()
    assert ids.stale in row and ",stale," in row and ids.intelligence not in row
