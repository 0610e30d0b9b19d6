"""``infoshare broker bundle``: one organisation's secrets, and nothing of another's."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from agency.bundle import Bundle, read_bundle, write_bundle
from agency.errors import BundleError
from broker.host_config import BrokerConfig
from infoshare.cli import main
from keys import SigningKeyPair, write_public_key

PASSWORDS = {
    "leeds-cc.front-door": "leeds-door-secret",
    "leeds-cc.education-safeguarding": "leeds-school-secret",
    "wy-police.safeguarding-hub": "police-hub-secret",
    "wy-police.marac-coordinator": "police-marac-secret",
    "leeds-ccx.front-door": "lookalike-org-secret",
    "infoshare-broker": "broker-secret",
}


@pytest.fixture
def broker_home(tmp_path: Path) -> Path:
    home = tmp_path / "broker"
    home.mkdir()
    creds = home / "credentials.json"
    fd = os.open(creds, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(PASSWORDS, f)
    write_public_key(home / "registry-key.pub", SigningKeyPair.generate().public)
    write_public_key(home / "broker.signing.pub", SigningKeyPair.generate().public)
    (home / "registry.token").write_text("admin-side-token\n")
    BrokerConfig(home=home, origin="test.example/transfer-log", amqp_urls=("amqp://127.0.0.1:5672",),
                 management_url="http://127.0.0.1:15672", vhost="infoshare", tls_ca=None,
                 registry_url="http://127.0.0.1:8080", registry_key=home / "registry-key.pub",
                 log_database={"url": f"sqlite:///{home / 'transfer-log.db'}"}).save()
    return home


def test_a_bundle_holds_only_its_organisations_secrets(broker_home: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "leeds" / "bundle.json"
    result = CliRunner().invoke(main, ["broker", "bundle", "--home", str(broker_home),
                                       "--org", "leeds-cc", "--out", str(out),
                                       "--amqp-node", "amqp://10.0.0.1:5672",
                                       "--amqp-node", "amqp://10.0.0.2:5672"])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    for user, secret in PASSWORDS.items():
        assert (secret in text) == user.startswith("leeds-cc."), user
    assert "admin-side-token" not in text  # no registry token travels in a bundle
    bundle = read_bundle(out)
    assert bundle.units == {"leeds-cc/front-door": "leeds-door-secret",
                            "leeds-cc/education-safeguarding": "leeds-school-secret"}
    assert bundle.amqp_nodes == ("amqp://10.0.0.1:5672", "amqp://10.0.0.2:5672")
    assert bundle.vhost == "infoshare" and bundle.ca_file is None
    with pytest.raises(BundleError, match="not a unit of this bundle"):
        bundle.password("wy-police/safeguarding-hub")


def test_a_ca_file_travels_beside_the_bundle(broker_home: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    out = tmp_path / "police" / "bundle.json"
    result = CliRunner().invoke(main, ["broker", "bundle", "--home", str(broker_home),
                                       "--org", "wy-police", "--out", str(out),
                                       "--ca-file", str(ca),
                                       "--amqp-node", "amqps://broker.example:5671"])
    assert result.exit_code == 0, result.output
    bundle = read_bundle(out)
    assert bundle.ca_file == str((out.parent / "bundle-ca.pem").resolve())
    assert Path(bundle.ca_file).read_text() == ca.read_text()


def test_an_organisation_without_units_is_refused(broker_home: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["broker", "bundle", "--home", str(broker_home),
                                       "--org", "kirklees-mbc", "--out",
                                       str(tmp_path / "b.json")])
    assert result.exit_code == 1
    assert "no unit of kirklees-mbc" in result.output
    assert not (tmp_path / "b.json").exists()


def _bundle(**kw: object) -> Bundle:
    key = "A" * 43 + "="
    base: dict[str, object] = dict(org="leeds-cc", units={"leeds-cc/front-door": "pw"},
                                   amqp_nodes=("amqp://127.0.0.1:5672",), vhost="infoshare",
                                   registry_url="http://127.0.0.1:8080", registry_key=key,
                                   broker_key=key)
    base.update(kw)
    return Bundle(**base)  # type: ignore[arg-type]


def test_reading_refuses_loose_modes_and_foreign_units(tmp_path: Path) -> None:
    path = write_bundle(tmp_path / "bundle.json", _bundle())
    assert read_bundle(path).units == {"leeds-cc/front-door": "pw"}
    path.chmod(0o644)
    with pytest.raises(BundleError, match="chmod 600"):
        read_bundle(path)
    with pytest.raises(BundleError, match="another organisation"):
        write_bundle(tmp_path / "x.json", _bundle(units={"wy-police/safeguarding-hub": "pw"}))
    doc = json.loads(path.read_text())
    doc["extra"] = 1
    path.chmod(0o600)
    path.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="extra") as e:
        read_bundle(path)
    assert "pw" not in str(e.value)
