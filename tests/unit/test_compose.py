"""The structure of docker-compose.yml, the image and its lock file (read as files).

Docker cannot run containers on the test machines, so what compose would
refuse or get wrong at start-up is checked here instead: health-gated
start-up order, secrets only as files, one volume per holder of private
keys, every AMQP client given the three nodes over TLS, pinned images and a
hash-checked lock file.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from protocols.envelope import MAX_BODY_BYTES

ROOT = Path(__file__).resolve().parents[2]
NODES = ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3")
#: Environment names that hold a secret's value (allowed only as NAME_FILE).
SECRET_NAME = re.compile(r"(PASS|PASSWORD|PASSPHRASE|SECRET|TOKEN|COOKIE|DATABASE_URL|KEY)$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def _is_job(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", [])
    return command if isinstance(command, str) else " ".join(command)


def _volumes(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(volume name, mount point) of every named volume the service mounts."""
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        if not source.startswith((".", "/")):
            yield source, target


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _secret_names(service: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def test_every_long_running_service_has_a_health_check(
        services: dict[str, dict[str, Any]]) -> None:
    unchecked = [name for name, s in services.items()
                 if not _is_job(s) and not s.get("healthcheck", {}).get("test")]
    assert unchecked == []


def test_start_up_waits_for_health_and_for_init_jobs_to_succeed(
        services: dict[str, dict[str, Any]]) -> None:
    wrong = []
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for dep, how in depends.items():
            wanted = ("service_completed_successfully" if _is_job(services[dep])
                      else "service_healthy")
            if how.get("condition") != wanted:
                wrong.append(f"{name} -> {dep}: {how}")
    assert wrong == []


def test_init_jobs_run_once_and_in_order(services: dict[str, dict[str, Any]]) -> None:
    jobs = {name for name, s in services.items() if _is_job(s)}
    for step in ("registry-init", "protocol-load", "broker-init", "broker-provision",
                 "broker-key-register"):
        assert step in jobs

    def before(name: str) -> set[str]:
        found: set[str] = set()
        for dep in services[name].get("depends_on", {}):
            found |= {dep} | before(dep)
        return found

    assert {"registry-init"} <= before("protocol-load")
    assert {"protocol-load", "broker-init", "rabbitmq-1"} <= before("broker-provision")
    for router in ("router-1", "router-2"):
        assert {"broker-provision", "broker-key-register", "postgres"} <= before(router)
    for gateway in ("gateway-leeds-cc", "gateway-wy-police"):
        assert {"router-1", "router-2", "broker-provision"} <= before(gateway)
        assert f"{gateway}-keys" in before(gateway)


def test_no_secret_in_the_environment(services: dict[str, dict[str, Any]],
                                      compose: dict[str, Any]) -> None:
    problems = []
    for name, service in services.items():
        mounted = _secret_names(service)
        for key, value in _environment(service).items():
            if key.endswith("_FILE"):
                secret = value.removeprefix("/run/secrets/")
                if value.startswith("/run/secrets/") and secret not in mounted:
                    problems.append(f"{name}: {key} names a secret it does not mount")
                continue
            if SECRET_NAME.search(key):
                problems.append(f"{name}: {key} holds a secret's value")
            if re.search(r"://[^/\s]*:[^/\s]*@", value):
                problems.append(f"{name}: {key} holds a URL with a password")
        if re.search(r"://[^/\s:]+:[^/\s]+@", _command(service)):
            problems.append(f"{name}: a URL with a password on its command line")
    assert problems == []
    for secret in compose["secrets"].values():
        assert set(secret) == {"file"}, "secrets are files, never environment values"


def test_no_volume_is_shared_by_two_holders_of_private_keys(
        services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    volumes = compose["volumes"]
    holder_of = {name: v["labels"]["infoshare.holder"] for name, v in volumes.items()}
    private = {name for name, v in volumes.items()
               if v["labels"].get("infoshare.private-keys") == "true"}
    assert {"registry", "broker", "gateway-leeds-cc", "gateway-wy-police"} <= private
    problems = []
    for name, service in services.items():
        holder = service.get("labels", {}).get("infoshare.holder")
        mounted = [v for v, _ in _volumes(service)]
        assert set(mounted) <= set(volumes), f"{name} mounts an undeclared volume"
        keys = [v for v in mounted if v in private]
        if len(keys) > 1:
            problems.append(f"{name} mounts the private keys of {keys}")
        problems += [f"{name} ({holder}) mounts {v}, held by {holder_of[v]}"
                     for v in keys if holder_of[v] != holder]
    assert problems == []


def test_every_amqp_client_is_given_the_three_nodes_over_tls(
        services: dict[str, dict[str, Any]]) -> None:
    init = shlex.split(_command(services["broker-init"]).replace("\\\n", " "))
    urls = [init[i + 1] for i, arg in enumerate(init) if arg == "--amqp-url"]
    assert sorted(urls) == [f"amqps://{n}:5671" for n in NODES]
    assert "--tls-ca" in init
    assert init[init.index("--management-url") + 1].startswith("https://")
    # The registry is served over HTTPS too, and read that way.
    assert init[init.index("--registry-url") + 1] == "https://registry:8443"
    serve = services["registry"]["command"]
    assert {"--certfile", "--keyfile"} <= set(serve)
    # Whatever speaks AMQP reads those nodes: the broker's own configuration, or a
    # bundle made from it (the bundle takes every node of the configuration).
    for name, service in services.items():
        command = _command(service)
        if re.search(r"broker (run|provision|bundle)", command):
            assert ("broker", "/var/lib/infoshare/home") in set(_volumes(service)), name
            assert "--amqp-node" not in command, f"{name} narrows the nodes"
        if "agency init" in command:
            assert "bundle/bundle.json" in command, name
    for org in ("leeds-cc", "wy-police"):
        bundle = f"bundle-{org}"
        assert "broker bundle" in _command(services[bundle])
        assert (bundle, "/var/lib/infoshare/handover") in set(_volumes(services[bundle]))
        assert (bundle, "/var/lib/infoshare/bundle") in {
            (v, t) for v, t in _volumes(services[f"gateway-{org}-init"])}


def test_the_deployment_has_its_parts(services: dict[str, dict[str, Any]]) -> None:
    assert [n for n in services if "broker run" in _command(services[n])] == [
        "router-1", "router-2"]
    gateways = sorted(n for n in services if "agency serve" in _command(services[n]))
    assert gateways == ["gateway-leeds-cc", "gateway-wy-police"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert "registry serve" in _command(services["registry"])
    provision = shlex.split(_command(services["broker-provision"]))
    assert provision[provision.index("--admin-user") + 1] not in ("guest", "")


def test_rabbitmq_speaks_tls_only_and_has_an_administrator_of_its_own(
        services: dict[str, dict[str, Any]]) -> None:
    conf = dict(line.split(" = ", 1) for line in
                (ROOT / "deploy" / "rabbitmq.conf").read_text().splitlines()
                if line and not line.startswith("#"))
    assert conf["listeners.tcp"] == "none"
    assert conf["listeners.ssl.default"] == "5671"
    assert "management.ssl.port" in conf
    assert not [k for k in conf if k.startswith("management.tcp")]
    assert conf["loopback_users.guest"] == "true"
    assert int(conf["max_message_size"]) >= MAX_BODY_BYTES
    for node in NODES:
        service = services[node]
        targets = {s["target"]: s["source"] for s in service["secrets"]}
        assert targets["/etc/rabbitmq/conf.d/90-admin.conf"] == "rabbitmq_admin_conf"
        assert targets["/var/lib/rabbitmq/.erlang.cookie"] == "erlang_cookie"
        assert targets["/etc/rabbitmq/tls/key.pem"] == f"{node.replace('-', '_')}_key"
        assert service["hostname"] == node


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service["image"]
        # An exact release (PostgreSQL's are major.minor), never a moving tag.
        assert re.fullmatch(r"[a-z0-9./-]+:\d+\.\d+(\.\d+)?(-[a-z0-9.-]+)?", image), (
            name, image)
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}",
                                 base.group(1))
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile
    assert "--no-index" in dockerfile
    assert re.search(r"^USER 10001", dockerfile, re.M)


def test_the_lock_file_pins_every_dependency_with_hashes() -> None:
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    # One block per requirement: its line, then its hashes and comments, indented.
    blocks = re.findall(r"^([A-Za-z0-9].*(?:\n[ \t].*)*)", lock, re.M)
    pinned = {}
    for block in blocks:
        head = block.split()[0]
        name, _, version = head.partition("==")
        assert version, f"{head} is not pinned"
        assert "--hash=sha256:" in block, f"{head} has no hash"
        pinned[re.sub(r"[-_.]+", "-", name.lower())] = version
    assert "--index-url" not in lock and "--find-links" not in lock
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for requirement in project["project"]["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        assert name and re.sub(r"[-_.]+", "-", name.group(0).lower()) in pinned, requirement
    assert "setuptools" in pinned  # the image builds the project offline
