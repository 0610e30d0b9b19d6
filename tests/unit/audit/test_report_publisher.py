"""Reports name the unit whose AMQP user published each message, and filter by it.

For a refused message the publisher may not be the sender its header claims:
the honest export holds a police referral that the Leeds front door published
(refused ``sender_mismatch``).
"""

from __future__ import annotations

import csv
import io
import json

from audit_export import DOOR_USER, POLICE_USER, Built
from click.testing import CliRunner
from envelope_factories import FRONT_DOOR, POLICE

from audit import ReportFilters, report
from audit.audit_cli import audit as audit_group


def test_rows_carry_the_publisher_in_every_format(built: Built) -> None:
    r = report(built.export)
    spoof = next(row for row in r.rows if row.message_id == built.ids["mismatch"])
    assert (spoof.sender, spoof.publisher, spoof.reason) == (
        POLICE, DOOR_USER, "sender_mismatch")
    rows = list(csv.DictReader(io.StringIO(r.to_csv())))
    assert rows[0].keys() >= {"sender", "recipient", "publisher"}
    assert [row["publisher"] for row in rows] == [row.publisher or "" for row in r.rows]
    doc = json.loads(r.to_json())
    assert [row["publisher"] for row in doc["rows"]] == [row.publisher for row in r.rows]
    table = r.to_table()
    assert "publisher" in table.splitlines()[2] and DOOR_USER in table


def test_a_report_filters_by_publisher_given_as_user_or_address(built: Built) -> None:
    by_user = report(built.export, ReportFilters(publisher=DOOR_USER))
    by_address = report(built.export, ReportFilters(publisher=FRONT_DOOR))
    assert by_user.rows == by_address.rows
    assert {row.publisher for row in by_user.rows} == {DOOR_USER}
    assert built.ids["mismatch"] in {row.message_id for row in by_user.rows}
    refused = report(built.export, ReportFilters(publisher=POLICE_USER, decision="refused"))
    assert refused.rows and all(row.publisher == POLICE_USER for row in refused.rows)
    # The body published without a user_id has no publisher: no filter names it.
    everyone = report(built.export).rows
    assert sum(1 for row in everyone if row.publisher is None) == 1
    assert report(built.export, ReportFilters(publisher="nobody.here")).rows == []


def test_the_report_command_filters_by_publisher(built: Built) -> None:
    out = CliRunner().invoke(audit_group, ["report", str(built.export), "--format", "csv",
                                           "--publisher", FRONT_DOOR, "--decision",
                                           "refused"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert [(r["message_id"], r["publisher"], r["reason"]) for r in rows] == [
        (built.ids["mismatch"], DOOR_USER, "sender_mismatch")]
