"""``infoshare registry serve`` as a real gunicorn process: port 0, HTTPS, the client's CA file.

The server is started the way an operator would, its address read from the
one line it prints; the client verifies its certificate against the test
session's CA (``tls_server_files``) and refuses it without that CA.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from keys import parse_public_key_text
from registry.client import RegistryClient
from registry.errors import RegistryUnavailable

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple"


@dataclass
class Running:
    url: str
    home: Path
    agency_token: str
    pinned: bytes


def _infoshare(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infoshare.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env, check=True)


def _serve(home: Path, env: dict[str, str], *extra: str) -> Iterator[tuple[str, str]]:
    server = subprocess.Popen(
        [sys.executable, "-m", "infoshare.cli", "registry", "serve", "--home", str(home),
         "--port", "0", "--workers", "1", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        assert line.startswith("registry listening on "), (line, server.stderr.read()
                                                            if server.poll() is not None else "")
        yield line, line.removeprefix("registry listening on ")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        for stream in (server.stdout, server.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def registry_home(tmp_path: Path) -> tuple[Path, dict[str, str], str]:
    home = tmp_path / "registry"
    env = {**os.environ, "INFOSHARE_REGISTRY_PASSPHRASE": PASSPHRASE,
           "INFOSHARE_HOME": str(home)}
    env.pop("INFOSHARE_REGISTRY_CA_FILE", None)
    _infoshare("registry", "init", "--token-out", str(tmp_path / "admin.token"), env=env)
    env["INFOSHARE_TOKEN"] = (tmp_path / "admin.token").read_text().strip()
    agency = json.loads(_infoshare("registry", "token", "create", "--role", "agency", "--label",
                                   "serve test", "--json", env=env).stdout)
    return home, env, agency["secret"]


def test_port_0_prints_the_address_it_got(registry_home) -> None:  # type: ignore[no-untyped-def]
    home, env, agency = registry_home
    for _, url in _serve(home, env):
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        pinned = parse_public_key_text((home / "registry-key.pub").read_text())
        assert RegistryClient(url, agency, pinned).directory().version == 0


def test_https_with_the_ca_file_and_refused_without(registry_home, tls_server_files) -> None:  # type: ignore[no-untyped-def]
    home, env, agency = registry_home
    pinned = parse_public_key_text((home / "registry-key.pub").read_text())
    for _, url in _serve(home, env, "--certfile", str(tls_server_files.cert),
                         "--keyfile", str(tls_server_files.key)):
        assert url.startswith("https://127.0.0.1:")
        client = RegistryClient(url, agency, pinned, ca_file=tls_server_files.ca)
        assert client.directory().version == 0
        with pytest.raises(RegistryUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            RegistryClient(url, agency, pinned).directory()
        # The CA file may also come from the environment, for every command that reads it.
        os.environ["INFOSHARE_REGISTRY_CA_FILE"] = str(tls_server_files.ca)
        try:
            assert RegistryClient(url, agency, pinned).directory().version == 0
        finally:
            del os.environ["INFOSHARE_REGISTRY_CA_FILE"]


def test_a_ca_file_that_is_not_pem_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(RegistryUnavailable, match="CA file"):
        RegistryClient("https://127.0.0.1:1", "t", bytes(32), ca_file=bad)


def test_https_needs_both_files(registry_home, tls_server_files) -> None:  # type: ignore[no-untyped-def]
    home, env, _ = registry_home
    result = subprocess.run(
        [sys.executable, "-m", "infoshare.cli", "registry", "serve", "--home", str(home),
         "--certfile", str(tls_server_files.cert)], capture_output=True, text=True, env=env,
        timeout=60)
    assert result.returncode == 2 and "--keyfile" in result.stderr
