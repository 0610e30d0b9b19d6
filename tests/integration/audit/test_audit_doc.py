"""docs/audit.md run exactly as written: every command of its ``sh`` blocks.

The page names real-looking hosts (``broker.example.gov.uk:8090``,
``registry.example.gov.uk:8080``) and fixed ports, so its commands run in a
private network namespace (``unshare``) where the loopback is the only
network and ``/etc/hosts`` names both hosts: nothing else on the machine can
hold those ports, and the commands reach the servers by the names the page
gives, over HTTPS with certificates from the session's CA (the environment's
``SSL_CERT_FILE``, as a machine's own CAs would be).

Set up first, as the page assumes: a registry with the West Yorkshire
protocol and the keys of two units and of the broker (served at
registry.example.gov.uk), an admin token in var/admin.token, the broker's
public key file in var/, and a transfer log in var/transfer-log.db decided by
the router's own code under the registry's directory. Then, in the order the
people involved act: the broker's operator (serving the log), the registry's
administrator (the auditor's token), the hand-over of the two keys, and the
auditor (fetch, verify, replay, report; the pages; the API).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from audit_export import route
from auditing_world import serving
from registry_testing import west_yorkshire

from broker.host_config import BrokerConfig
from broker.transfer_log import TransferLog
from keys import NoteSigner, new_keys, write_public_key_file
from protocols.envelope import build_envelope
from protocols.model import Consent, GroundId, amqp_user
from registry.changes import KeyOwner
from registry.datadir import create_data_dir
from registry.store import Store

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "audit.md"
HOSTS = ("broker.example.gov.uk", "registry.example.gov.uk")
DOOR, HUB = "leeds-cc/front-door", "wy-police/safeguarding-hub"
CSH = Consent("not_sought", GroundId("child-significant-harm"))
SERVERS = ("infoshare log serve", "infoshare audit serve")


def doc_sections() -> dict[str, list[str]]:
    """The commands of each ``##`` section's sh blocks, continuation lines joined."""
    out: dict[str, list[str]] = {}
    for part in DOC.read_text(encoding="utf-8").split("\n## ")[1:]:
        title, _, body = part.partition("\n")
        blocks = re.findall(r"```sh\n(.*?)```", body, flags=re.S)
        commands = [c for block in blocks for c in block.replace("\\\n", " ").splitlines()
                    if c.strip() and not c.lstrip().startswith("#")]
        if commands:
            out[title.strip()] = [" ".join(c.split()) for c in commands]
    return out


@contextmanager
def namespace(work: Path) -> Iterator[list[str]]:
    """A private network and mount namespace, loopback up, both hosts in /etc/hosts;
    yields the prefix that runs a command in it."""
    hosts = work / "hosts"
    hosts.write_text("127.0.0.1 localhost " + " ".join(HOSTS) + "\n")
    holder = subprocess.Popen(
        ["unshare", "--net", "--mount", "--", "bash", "-c",
         'ip link set lo up && mount --bind "$1" /etc/hosts && echo ready && exec sleep 900',
         "namespace", str(hosts)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n", \
            "unshare could not make a network namespace"
        # Entering a mount namespace moves to its root: --wd comes back to the work.
        yield ["nsenter", f"--target={holder.pid}", "--net", "--mount", f"--wd={work}", "--"]
    finally:
        os.killpg(holder.pid, signal.SIGTERM)
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()


def _certificate(ca: trustme.CA, host: str, directory: Path, stem: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    issued = ca.issue_cert(host)
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    return cert, key


ORIGIN = "broker.example.gov.uk/transfer-log"


def _broker_host(work: Path, env: dict[str, str]) -> None:
    """What the page assumes exists: a registry (var/registry, its admin token in
    var/admin.token), the broker host: its configuration, public key file and log in var/."""
    var = work / "var"
    data_dir, registry_key = create_data_dir(
        var / "registry", env["INFOSHARE_REGISTRY_PASSPHRASE"].encode("utf-8"))
    store = Store(data_dir.database_url, signing_key=registry_key)
    try:
        actor, admin = west_yorkshire(store, "IG officer, Leeds")
        since = datetime.now(UTC) - timedelta(days=7)
        units = {u: new_keys("unit", u) for u in (DOOR, HUB)}
        for unit, made in units.items():
            store.register_keys(KeyOwner("unit", unit), made.files, since, actor=actor)
        broker = new_keys("broker", "broker")
        store.register_keys(KeyOwner("broker", "broker"), broker.files, since, actor=actor)
        directory = store.directory()
    finally:
        store.close()
    (var / "admin.token").write_text(admin + "\n")
    (var / "admin.token").chmod(0o600)
    write_public_key_file(var / "broker.signing.pub", broker.files["signing"])
    shutil.copy(var / "registry" / "registry-key.pub", var / "registry-key.pub")
    BrokerConfig(home=var, origin=ORIGIN, amqp_urls=("amqps://broker.example.gov.uk:5671",),
                 management_url="https://broker.example.gov.uk:15671", vhost="infoshare",
                 tls_ca=None, registry_url="https://registry.example.gov.uk:8080",
                 registry_key=var / "registry-key.pub",
                 log_database={"url": "sqlite:///transfer-log.db"}).save()

    # The router's decisions, signed as the router signs them: a section 47 request
    # and its response, routed, and a stale request, refused.
    log = TransferLog.open(f"sqlite:///{var / 'transfer-log.db'}",
                           signer=NoteSigner(ORIGIN, broker.signing),
                           origin=ORIGIN)
    now = datetime.now(UTC).replace(microsecond=0)

    def envelope(sender: str, recipient: str, kind: str, created: datetime,
                 in_reply_to: str | None = None) -> tuple[bytes, str]:
        body, env_ = build_envelope(
            kind=kind, protocol="wy-iisp-2016", purpose="section-47-enquiry", sender=sender,
            recipient=recipient, record={"identity": {"ref": "T-1"}}, reasons="strategy",
            sender_key=units[sender].signing,
            recipient_key=units[recipient].encryption.public,  # type: ignore[union-attr]
            created_at=created, consent=CSH, subject_informed=False, in_reply_to=in_reply_to)
        return body, env_.header.message_id

    with log.batch() as lb:
        request, request_id = envelope(HUB, DOOR, "request", now)
        assert route(lb, request, amqp_user(HUB), directory, now) is not None
        response, _ = envelope(DOOR, HUB, "response", now, request_id)
        assert route(lb, response, amqp_user(DOOR), directory, now) is not None
        stale, _ = envelope(HUB, DOOR, "request", now - timedelta(days=2))
        assert route(lb, stale, amqp_user(HUB), directory, now) is not None
    log.checkpoint(now)
    log.close()


def test_the_audit_page_works_as_written(tmp_path: Path) -> None:
    sections = doc_sections()
    work = tmp_path
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFOSHARE_")}
    env.update(PATH=f"{bin_dir}:{env.get('PATH', '')}",
               INFOSHARE_REGISTRY_PASSPHRASE="a registry passphrase for tests",
               SSL_CERT_FILE=str(work / "ca.pem"), CURL_CA_BUNDLE=str(work / "ca.pem"))
    # The machine trusts this CA alone; both servers hold a certificate for their name.
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    _broker_host(work, env)
    _certificate(ca, "broker.example.gov.uk", work / "var" / "tls", "broker")
    registry_cert, registry_key = _certificate(ca, "registry.example.gov.uk",
                                               work / "registry-tls", "registry")

    with namespace(work) as inside:
        def run(line: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run([*inside, "bash", "-c", line], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, (line, done.stderr)
            return done

        def serve(line: str) -> Any:
            args = shlex.split(line)
            assert args[0] == "infoshare"
            return serving(args[1:], env=env, cwd=work, prefix=inside)

        registry = ["registry", "serve", "--home", "var/registry", "--host", "127.0.0.1",
                    "--port", "8080", "--certfile", str(registry_cert), "--keyfile",
                    str(registry_key)]
        with serving(registry, env=env, cwd=work, prefix=inside) as registry_url:
            assert registry_url == "https://127.0.0.1:8080", registry_url
            operator = sections["Serving the log (for the broker's operator)"]
            assert [c.startswith(SERVERS) for c in operator] == [False, True]
            run(operator[0])
            assert (work / "var" / "log-key.txt").read_text().startswith(ORIGIN + "+")
            with serve(operator[1]) as log_url:
                assert log_url == "https://0.0.0.0:8090", log_url
                (token_line,) = sections["What you need"]
                run(token_line)
                assert (work / "auditor.token").stat().st_mode & 0o777 == 0o600
                # Handed over by a route of the auditor's own.
                shutil.copy(work / "var" / "log-key.txt", work / "log-key.txt")
                shutil.copy(work / "var" / "registry" / "registry-key.pub",
                            work / "registry-key.pub")
                _the_auditor(sections, run, serve, inside, env, work)


def _the_auditor(sections: dict[str, list[str]], run: Any, serve: Any, inside: list[str],
                 env: dict[str, str], work: Path) -> None:
    fetch, verify, replay, summary, shares = sections["Fetch, verify, replay, report"]
    assert "--from https://broker.example.gov.uk:8090" in fetch
    assert run(fetch).stdout.startswith("exported 3 entries and 1 checkpoints to export")
    assert run(verify).stdout.startswith("ok: 3 entries, 1 checkpoints, evidence checked")
    assert run(replay).stdout == "ok: every decision re-runs to the same result\n"
    said = run(summary).stdout.splitlines()
    assert said[0] == "3 entries: 2 routed, 1 refused" and "refused stale: 1" in said, said
    run(shares)
    with open(work / "shares.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["kind"], r["decision"]) for r in rows] == [("request", "routed"),
                                                         ("response", "routed")]

    (pages,) = sections["The auditors' pages"]
    with serve(pages) as url:
        assert url == "http://127.0.0.1:8091", url
        answer = subprocess.run([*inside, "curl", "-s", "-o", "/dev/null", "-w",
                                 "%{http_code}", url + "/sign-in"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert answer.stdout == "200", answer

    (status,) = sections["The log server's API"]
    doc = json.loads(run(status).stdout)
    assert doc["ok"] is True and doc["entries"] == doc["tree_size"] == 3
