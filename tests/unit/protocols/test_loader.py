"""Protocol files: the West Yorkshire file, every purpose of the domain, broken files, the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import protocols
from protocols.cli import protocol as protocol_cli
from protocols.errors import DefinitionError
from protocols.loader import ProtocolFile, load_protocol_file, load_protocol_text
from protocols.model import ProtocolStatus

WY = Path(protocols.__file__).parent / "definitions" / "west-yorkshire-iisp-2016.yaml"
WY_TEXT = WY.read_text(encoding="utf-8")

ALL_GROUNDS = {"child-significant-harm", "adult-serious-harm", "serious-crime"}
ALL_CATEGORIES = {"identity", "address", "household", "concern", "health", "education",
                  "domestic-abuse", "offending", "intelligence", "risk", "chronology"}
SIGNATORIES = {"leeds-cc", "bradford-mdc", "calderdale-mbc", "kirklees-mbc", "wakefield-mdc",
               "wy-police"}

# The purposes table of the domain description, one row per purpose:
# consent required, grounds, senders, recipients, categories, subject may be
# withheld, approval, kinds that open an exchange.
DOMAIN_PURPOSES: dict[str, tuple[bool, set[str], set[str], set[str], set[str], bool, str,
                                 set[str]]] = {
    "safeguarding-referral": (
        False, ALL_GROUNDS, {"*"}, {"front-door"},
        {"identity", "address", "household", "concern", "education", "health",
         "domestic-abuse", "offending"},
        True, "when_refused", {"referral"}),
    "section-47-enquiry": (
        False, {"child-significant-harm"}, {"front-door", "police-safeguarding"},
        {"front-door", "police-safeguarding"}, ALL_CATEGORIES - {"intelligence"},
        True, "never", {"request"}),
    "child-in-need-assessment": (
        True, set(), {"childrens-social-care"}, {"health", "education"},
        {"identity", "household", "health", "education", "concern"},
        False, "never", {"request"}),
    "early-help": (
        True, set(), {"early-help", "education", "health"}, {"early-help"},
        {"identity", "household", "education", "health"},
        False, "never", {"referral"}),
    "marac-referral": (
        False, {"adult-serious-harm", "child-significant-harm"}, {"*"}, {"marac"},
        {"identity", "address", "household", "domestic-abuse", "risk", "offending", "health"},
        True, "when_refused", {"referral"}),
    "police-intelligence": (
        False, {"serious-crime"}, {"*"}, {"police-intelligence"},
        {"identity", "address", "intelligence", "concern"},
        True, "never", {"referral"}),
    "dvds-right-to-know": (
        False, {"adult-serious-harm"}, {"front-door", "marac"}, {"police-safeguarding"},
        {"identity", "domestic-abuse", "concern"},
        True, "always", {"referral"}),
    "csod-disclosure-check": (
        False, {"child-significant-harm"}, {"police-safeguarding"}, {"front-door"},
        {"identity", "address", "household", "offending"},
        True, "always", {"referral", "request"}),
    "case-review-records": (
        False, ALL_GROUNDS, {"safeguarding-partnership"}, {"*"},
        {"identity", "chronology", "concern"},
        True, "always", {"request"}),
    "operation-encompass": (
        False, {"child-significant-harm"}, {"police-safeguarding"}, {"education"},
        {"identity", "domestic-abuse"},
        True, "never", {"referral"}),
}


@pytest.fixture(scope="module")
def wy() -> ProtocolFile:
    return load_protocol_file(WY)


def test_the_west_yorkshire_protocol_loads(wy: ProtocolFile) -> None:
    p = wy.protocol
    assert p.id == "wy-iisp-2016"
    assert p.title == "West Yorkshire Inter Agency Information Sharing Protocol (2016)"
    assert p.status is ProtocolStatus.IN_FORCE
    assert p.effective_from == datetime(2016, 4, 1, tzinfo=UTC)
    assert p.review_by is not None and p.review_by > p.effective_from
    assert p.approved_by and p.security and p.retention
    assert p.signatories == SIGNATORIES
    assert {o.id for o in wy.organisations} >= SIGNATORIES
    assert {g.id for g in p.grounds} == ALL_GROUNDS
    assert {c.id for c in p.categories} == ALL_CATEGORIES
    assert {c.id for c in p.categories if c.special} == {"health", "offending"}
    assert p.in_force(datetime(2026, 11, 24, tzinfo=UTC))


def test_units_and_roles(wy: ProtocolFile) -> None:
    by_org = {o.id: {u.id: u.roles for u in o.units} for o in wy.organisations}
    for org in SIGNATORIES - {"wy-police"}:
        units = by_org[org]
        assert units["front-door"] == {"front-door"}
        assert units["childrens-social-care"] == {"childrens-social-care"}
        assert units["early-help"] == {"early-help"}
        assert units["education-safeguarding"] == {"education"}
        assert units["safeguarding-partnership"] == {"safeguarding-partnership"}
    assert by_org["wy-police"] == {
        "safeguarding-hub": {"police-safeguarding"},
        "intelligence-bureau": {"police-intelligence"},
        "marac-coordinator": {"marac"},
    }
    councils_with_marac = [o for o in SIGNATORIES - {"wy-police"}
                           if any("marac" in r for r in by_org[o].values())]
    assert 1 <= len(councils_with_marac) <= 2
    for o in wy.organisations:
        for u in o.units:
            assert u.org == o.id


def test_every_purpose_of_the_domain_is_present_with_its_rules(wy: ProtocolFile) -> None:
    purposes = {p.id: p for p in wy.protocol.purposes}
    assert set(purposes) == set(DOMAIN_PURPOSES)
    for pid, (consent, grounds, senders, recipients, cats, withheld, approval,
              opens) in DOMAIN_PURPOSES.items():
        p = purposes[pid]
        assert p.consent_required is consent, pid
        assert p.grounds == grounds, pid
        assert p.sender_roles == senders, pid
        assert p.recipient_roles == recipients, pid
        assert p.data_categories == cats, pid
        assert p.subject_may_be_withheld is withheld, pid
        assert p.approval == approval, pid
        assert p.opens == opens, pid


def test_every_purpose_names_its_legal_bases(wy: ProtocolFile) -> None:
    special = {c.id for c in wy.protocol.categories if c.special}
    police_roles = {r for o in wy.organisations if o.id == "wy-police" for u in o.units
                    for r in u.roles}
    for p in wy.protocol.purposes:
        lb = p.legal_basis
        assert lb.article6.startswith("6(1)("), p.id
        if p.data_categories & special:
            assert lb.article9 or lb.dpa_schedule1, p.id
        police_involved = "*" in p.sender_roles | p.recipient_roles or bool(
            police_roles & (p.sender_roles | p.recipient_roles))
        assert bool(lb.dpa_part3) is police_involved, p.id


# --- broken files ---------------------------------------------------------------------


def _edit(old: str, new: str, nth: int = 1) -> str:
    """The West Yorkshire text with the nth occurrence of ``old`` replaced."""
    at = -1
    for _ in range(nth):
        at = WY_TEXT.index(old, at + 1)
    return WY_TEXT[:at] + new + WY_TEXT[at + len(old):]


BROKEN = [
    pytest.param(_edit("version: 1\n", "version: 1\ncolour: blue\n"), "colour",
                 id="unknown top-level field"),
    pytest.param(_edit("    approval: never\n", "    approval: never\n    priority: high\n"),
                 "purposes.1.priority", id="unknown field in a purpose"),
    pytest.param(_edit("- id: section-47-enquiry", "- id: Section_47"), "purposes.1.id",
                 id="bad purpose name"),
    pytest.param(_edit("id: wy-iisp-2016", "id: wy--iisp"), "id", id="double hyphen"),
    pytest.param(_edit("{id: front-door, name", "{id: " + "a" * 41 + ", name"),
                 "parties.0.units.0.id", id="name longer than 40"),
    pytest.param(_edit("data_categories: [identity, domestic-abuse]",
                       "data_categories: [identity, weather]"),
                 "purposes.9.data_categories.1", id="undeclared category"),
    pytest.param(_edit("grounds: [serious-crime]", "grounds: [public-interest]"),
                 "purposes.5.grounds.0", id="undeclared ground"),
    pytest.param(_edit("version: 1\n", "version: 1\nversion: 2\n"), "version",
                 id="duplicate top-level key"),
    pytest.param(_edit("    approval: never\n", "    approval: never\n    approval: always\n"),
                 "purposes.1.approval", id="duplicate key in a purpose"),
    pytest.param(_edit('"2016-04-01T00:00:00Z"', "2016-04-01"), "effective_from",
                 id="date without time"),
    pytest.param(_edit('"2016-04-01T00:00:00Z"', '"2016-04-01T00:00:00+01:00"'),
                 "effective_from", id="offset instead of Z"),
    pytest.param(_edit('"2019-04-01T00:00:00Z"', '"2015-04-01T00:00:00Z"'), "review_by",
                 id="review before effective"),
    pytest.param(_edit("recipient_roles: [education]", "recipient_roles: [teacher]"),
                 "purposes.9.recipient_roles.0", id="unknown role in a purpose"),
    pytest.param(_edit("sender_roles: [childrens-social-care]", "sender_roles: [social-work]"),
                 "purposes.2.sender_roles.0", id="unknown sender role"),
    pytest.param(_edit("  - wy-police\n\nparties", "  - wy-police\n  - nyp\n\nparties"),
                 "signatories.6", id="signatory not a party"),
    pytest.param(_edit("opens: [referral, request]", "opens: [referral, response]"),
                 "purposes.7.opens.1", id="opens a reply kind"),
    pytest.param(_edit("approval: always", "approval: sometimes"), "purposes.6.approval",
                 id="approval not known"),
    pytest.param(_edit("status: in_force", "status: active"), "status", id="status not known"),
    pytest.param(_edit("consent_required: true", "consent_required: true\n"
                       "    grounds: [serious-crime]"),
                 "purposes.2.grounds", id="consent required with grounds"),
    pytest.param(_edit("consent_required: false\n    grounds: [serious-crime]\n",
                       "consent_required: false\n"),
                 "purposes.5.grounds", id="no consent and no grounds"),
    pytest.param(_edit("special: true}", "special: yes}"), "categories.4.special",
                 id="yes is not a boolean"),
    pytest.param(_edit("- id: operation-encompass", "- id: early-help"), "purposes.9.id",
                 id="purpose named twice"),
    pytest.param(_edit('sender_roles: ["*"]', 'sender_roles: ["*", front-door]'),
                 "purposes.0.sender_roles", id="star with other roles"),
    pytest.param(_edit("version: 1", "version: one"), "version", id="version not a number"),
    pytest.param(_edit("  - id: serious-crime\n", "  - id: serious-crimes\n"), "grounds",
                 id="a wire spec ground missing"),
    pytest.param(_edit("      article6: 6(1)(e) public task (Children Act 1989 s47)\n", ""),
                 "purposes.1.legal_basis.article6", id="no article 6 basis"),
    pytest.param("- a list\n", "(document)", id="not a mapping"),
    pytest.param("id: [unclosed\n", "(document)", id="not YAML"),
    pytest.param("a: &x {b: 1}\nc: *x\n", "c", id="alias"),
]


@pytest.mark.parametrize(("text", "path"), BROKEN)
def test_broken_files_name_the_field(text: str, path: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        load_protocol_text(text, "broken.yaml")
    err = caught.value
    assert path in err.problems, err.problems
    assert err.source == "broken.yaml"
    assert any(line.startswith(f"broken.yaml: {path}: ") for line in str(err).splitlines())


def test_error_messages_do_not_repeat_values_from_the_file() -> None:
    text = _edit("- id: section-47-enquiry", "- id: Jane_Smith_case")
    with pytest.raises(DefinitionError) as caught:
        load_protocol_text(text, "broken.yaml")
    assert "Jane" not in str(caught.value)


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="cannot read"):
        load_protocol_file(tmp_path / "missing.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("title: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(DefinitionError, match="UTF-8"):
        load_protocol_file(bad)


def test_the_loaded_file_equals_a_second_load() -> None:
    # Frozen values with no hidden state: loading twice gives equal results.
    assert load_protocol_text(WY_TEXT, "a") == load_protocol_text(WY_TEXT, "b")


# --- infoshare protocol check ------------------------------------------------------------


def _infoshare() -> click.Group:
    # The main group is built elsewhere; this one mounts the protocol group the same way.
    return click.Group("infoshare", commands={"protocol": protocol_cli})


def test_check_prints_a_summary(wy: ProtocolFile) -> None:
    result = CliRunner().invoke(_infoshare(), ["protocol", "check", str(WY)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("wy-iisp-2016 version 1: ")
    assert "in_force" in out and "2016-04-01T00:00:00Z" in out
    for org in wy.organisations:
        assert f"  {org.id}: {org.name}" in out
    for p in wy.protocol.purposes:
        assert f"  {p.id}: {p.title}" in out
    assert "any unit of a signatory -> front-door" in out
    assert "a manager countersigns when consent is refused" in out
    assert "required (only given consent is accepted)" in out
    assert "request, response, declined, receipt" in out


def test_check_lists_errors_and_exits_1(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(_edit("data_categories: [identity, domestic-abuse]",
                            "data_categories: [identity, weather]")
                      .replace("status: in_force", "status: active"))
    result = CliRunner().invoke(_infoshare(), ["protocol", "check", str(broken)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert f"{broken}: status: Must be one of: draft, in_force, suspended, ended." in lines
    assert "Traceback" not in result.output
