"""One unit floods the broker with bodies that are not envelopes; the others are not slowed.

Each unit has its own ingress queue (length-limited, ``reject-publish``) and
the router takes from all of them side by side, so a valid envelope waits
behind at most what the router has already taken of the flood, never behind
the flood's backlog. The test asserts facts of order, not times: every valid
envelope is decided while the flood still has thousands waiting, and ahead of
all but a prefetch's worth of them; only the flooding unit is nacked. The
times are measured and printed.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from harness import FLOODER, Outcome, RegistryServer, assert_clean, scenario, wait_for

from broker.node import RabbitNode

pytestmark = [pytest.mark.integration, pytest.mark.faults]

FLOOD = 20_000
VALID = 60
VALID_SENDER = "leeds-cc/education-safeguarding"
#: What the router may hold of one queue (its prefetch per queue) and of the
#: batch it is deciding: a valid envelope never waits behind more of the flood.
HELD_AT_MOST = 250 + 250 + 200


def test_a_flooding_unit_slows_only_itself(
        tmp_path: Path, faults_node: RabbitNode, fault_registry: RegistryServer,
        fault_table: list[Outcome]) -> None:
    with scenario("flood", tmp_path, fault_registry, [faults_node]) as s:
        router = s.start_router()
        s.start_recipients()
        flooder = s.start_sender(FLOODER, FLOOD, kind="malformed", window=512)
        # The flood first builds a backlog, then the valid unit sends, a few a second.
        wait_for("flood backlog", lambda: s.history().confirmed.__len__() >= 4000, 60)
        valid = s.start_sender(VALID_SENDER, VALID, rate=10)
        outcome = s.finish(settle_timeout=300)
        decisions = router.decisions()
        history = s.history()
        flooder_stats = json.loads(flooder.text().strip().splitlines()[-1])
        valid_stats = json.loads(valid.text().strip().splitlines()[-1])
    fault_table.append(outcome)
    assert_clean(outcome)

    flood_keys = {k for k, r in history.attempted.items() if r == "-"}
    valid_keys = set(history.attempted) - flood_keys
    decided = {mid: (t, seq) for t, seq, mid in decisions if mid != "None"}
    flood_times = sorted(t for t, _, mid in decisions if mid == "None")
    flood_confirms = sorted(history.confirmed_at[k] for k in flood_keys)
    assert len(flood_times) == FLOOD and len(valid_keys) == VALID

    def flood_waiting(t: float) -> int:
        return _count_before(flood_confirms, t) - _count_before(flood_times, t)

    latencies, ahead, backlog = [], [], []
    for key in valid_keys:
        confirmed, (at, _) = history.confirmed_at[key], decided[key]
        latencies.append(at - confirmed)
        ahead.append(_count_before(flood_times, at) - _count_before(flood_times, confirmed))
        backlog.append(flood_waiting(confirmed))
    last_valid_seq = max(decided[k][1] for k in valid_keys)
    figures = {
        "valid_decision_seconds_p50": round(statistics.median(latencies), 3),
        "valid_decision_seconds_max": round(max(latencies), 3),
        "flood_decided_ahead_of_a_valid_message_max": max(ahead),
        "flood_waiting_when_a_valid_message_arrived_max": max(backlog),
        "flood_waiting_when_the_last_valid_message_was_decided":
            flood_waiting(max(decided[k][0] for k in valid_keys)),
        "flood_drained_seconds": round(flood_times[-1] - flood_confirms[0], 3),
        "flooder_nacks": flooder_stats["nacks"], "valid_sender_nacks": valid_stats["nacks"],
    }
    outcome.notes.update(figures)
    print("flood figures:", json.dumps(figures), flush=True)

    # The flood was real: thousands waited while the valid messages arrived ...
    assert max(backlog) > 3 * HELD_AT_MOST, figures
    # ... yet each valid message waited behind at most what the router already held,
    assert max(ahead) <= HELD_AT_MOST, figures
    # every one was decided before the flood had drained,
    assert last_valid_seq < max(seq for _, seq, mid in decisions if mid == "None")
    # and only the flooding unit was pushed back by its full queue.
    assert flooder_stats["nacks"] > 0 and valid_stats["nacks"] == 0, figures


def _count_before(sorted_times: list[float], t: float) -> int:
    import bisect
    return bisect.bisect_left(sorted_times, t)
