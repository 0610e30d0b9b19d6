"""The deployment's RabbitMQ configuration enforces the wire spec's limit on a body."""

from __future__ import annotations

from pathlib import Path

from protocols.envelope import MAX_BODY_BYTES

CONF = Path(__file__).resolve().parents[3] / "deploy" / "rabbitmq.conf"


def test_deploy_rabbitmq_conf_sets_max_message_size_to_the_wire_limit() -> None:
    pairs = (line.split("=", 1) for line in CONF.read_text().splitlines()
             if "=" in line and not line.lstrip().startswith("#"))
    settings = {key.strip(): value.strip() for key, value in pairs}
    assert int(settings["max_message_size"]) == MAX_BODY_BYTES == 16 * 1024 * 1024
