"""The broker host's configuration file: its form, the log's name, and no secret in it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from broker.errors import ConfigError
from broker.host_config import (
    CONFIG_FILE,
    BrokerConfig,
    check_amqp_url,
    check_origin,
    default_origin,
    load,
    log_database_reference,
    read_secret_file,
)


def _config(home: Path, **changes: object) -> BrokerConfig:
    fields: dict[str, object] = dict(
        home=home, origin="infoshare.leeds.gov.uk/transfer-log",
        amqp_urls=("amqps://rabbitmq-1:5671", "amqps://rabbitmq-2:5671"),
        management_url="https://rabbitmq-1:15671", vhost="infoshare",
        tls_ca=home / "ca.pem", registry_url="https://registry.leeds.gov.uk",
        registry_key=home / "registry-key.pub", log_database={"url_env": "LOG_DB"})
    fields.update(changes)
    return BrokerConfig(**fields)  # type: ignore[arg-type]


def test_saved_configuration_loads_back_and_is_private(tmp_path: Path) -> None:
    config = _config(tmp_path)
    path = config.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load(tmp_path) == config


def test_unknown_or_missing_fields_are_refused(tmp_path: Path) -> None:
    doc = _config(tmp_path).document()
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**doc, "password": "x"}))
    with pytest.raises(ConfigError, match="password: Unknown field"):
        load(tmp_path)
    del doc["vhost"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="vhost"):
        load(tmp_path)


def test_a_missing_configuration_says_which_command_makes_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="infoshare broker init --home"):
        load(tmp_path / "nowhere")


@pytest.mark.parametrize(("url", "kept"), [
    ("amqps://rabbitmq-1:5671", "amqps://rabbitmq-1:5671"),
    ("amqp://127.0.0.1:5672/", "amqp://127.0.0.1:5672"),
    ("amqps://[::1]:5671", "amqps://[::1]:5671"),
])
def test_node_urls_are_kept_without_anything_else(url: str, kept: str) -> None:
    assert check_amqp_url(url) == kept


@pytest.mark.parametrize(("url", "says"), [
    ("amqps://guest:guest@rabbitmq-1:5671", "without a user or password"),
    ("amqps://rabbitmq-1:5671/infoshare", "without a virtual host"),
    ("http://rabbitmq-1:15672", "amqps://host:port"),
    ("amqps://rabbitmq-1:99999", "not a URL"),
    ("rabbitmq-1:5671", "amqps://host:port"),
])
def test_node_urls_with_more_or_less_are_refused(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        check_amqp_url(url)


def test_the_log_is_named_after_the_registrys_domain() -> None:
    assert default_origin("https://registry.wy-iisp.org.uk:8443") == \
        "registry.wy-iisp.org.uk/transfer-log"


@pytest.mark.parametrize("registry", ["http://127.0.0.1:8080", "http://localhost:8080",
                                      "http://[::1]:8080"])
def test_without_a_registry_domain_the_log_is_named_after_this_machine(registry: str) -> None:
    name = default_origin(registry)
    assert name.endswith("/transfer-log")
    assert not name.startswith(("127.", "[", "::"))
    assert check_origin(name) == name


@pytest.mark.parametrize("name", ["", "a b/log", "x+y/log", "log\nname", "-x/log"])
def test_log_names_that_cannot_name_a_checkpoint_key_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="log name"):
        check_origin(name)


def test_a_database_url_with_a_password_is_never_kept_in_the_configuration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFOSHARE_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="holds a password"):
        log_database_reference(tmp_path, url="postgresql://u:secret@db/log", url_file=None)
    url_file = tmp_path / "db-url"
    url_file.write_text("postgresql://u:secret@db/log\n")
    url_file.chmod(0o600)
    assert log_database_reference(tmp_path, url=None, url_file=url_file) == {
        "url_file": str(url_file)}
    monkeypatch.setenv("INFOSHARE_DATABASE_URL", "postgresql://u:secret@db/log")
    assert log_database_reference(tmp_path, url=None, url_file=None) == {
        "url_env": "INFOSHARE_DATABASE_URL"}
    monkeypatch.delenv("INFOSHARE_DATABASE_URL")
    assert log_database_reference(tmp_path, url=None, url_file=None) == {
        "url": f"sqlite:///{tmp_path.resolve() / 'transfer-log.db'}"}


def test_the_database_url_is_read_where_the_configuration_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFOSHARE_DATABASE_URL", raising=False)
    url_file = tmp_path / "db-url"
    url_file.write_text("postgresql://u:secret@db/log\n")
    url_file.chmod(0o600)
    config = _config(tmp_path, log_database={"url_file": str(url_file)})
    assert config.log_database_url() == "postgresql://u:secret@db/log"
    monkeypatch.setenv("INFOSHARE_DATABASE_URL", "postgresql://other@db/log")
    assert config.log_database_url() == "postgresql://other@db/log"


def test_secret_files_readable_by_others_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("isr_secret\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_secret_file(path, "token file")
    path.chmod(0o600)
    assert read_secret_file(path, "token file") == "isr_secret"
