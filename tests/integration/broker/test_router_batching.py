"""How the router groups deliveries into batches (one log commit each).

A batch starts at most once per ``batch_delay``, so that under load a commit
serves many messages; a message reaching an idle router is not held for the
delay. The delay here is a minute, far longer than any wait of the test: a
router that held a lone message for it would fail the test, however slow the
machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from router_world import LEEDS_CSC, POLICE_INTEL, World, running_world

from broker.topology import Credentials
from protocols.loader import ProtocolFile

pytestmark = pytest.mark.integration

VHOST = "infoshare-test-batching"


@pytest.fixture(scope="module")
def slow_batches(rabbit_node: Any, amqp_base: str, wy_protocol: ProtocolFile,
                 vhost_factory: Callable[[str], Credentials],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with running_world(management_url=rabbit_node.management_url, amqp_base=amqp_base,
                       wy_protocol=wy_protocol, credentials=vhost_factory(VHOST), vhost=VHOST,
                       log_path=tmp_path_factory.mktemp("batching") / "log.db",
                       batch_delay=60.0) as w:
        yield w


def test_a_message_reaching_an_idle_router_is_routed_without_waiting_for_a_batch(
        slow_batches: World) -> None:
    body, mid = slow_batches.build()
    slow_batches.publish(LEEDS_CSC, body)
    notice = slow_batches.notice(LEEDS_CSC, mid)  # waits 20 s at most
    assert (notice.decision, notice.reason) == ("routed", None)
    _, delivered = slow_batches.envelope(POLICE_INTEL, mid)
    assert delivered == body
