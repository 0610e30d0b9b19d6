"""The ``protocol`` command group: check a protocol file and summarise its rules.

``infoshare protocol check FILE`` prints what an administrator reviews before
loading a file into the registry, or the file's problems one per line with
exit status 1. The main ``infoshare`` group adds this group; nothing here
touches the registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import click

from protocols.directory import format_time
from protocols.errors import DefinitionError
from protocols.loader import ProtocolFile, load_protocol_file
from protocols.model import ANY_ROLE, KINDS, Purpose

_APPROVAL = {
    "never": "none",
    "always": "a manager countersigns every message",
    "when_refused": "a manager countersigns when consent is refused",
}


def _join(items: Iterable[str]) -> str:
    return ", ".join(items) or "-"


def _roles(roles: frozenset[str]) -> str:
    return "any unit of a signatory" if ANY_ROLE in roles else _join(sorted(roles))


def _kinds(p: Purpose) -> list[str]:
    return [k for k in KINDS if p.allows_kind(k)]


def _purpose_lines(p: Purpose) -> Iterator[str]:
    yield f"  {p.id}: {p.title}"
    yield f"    kinds:       {_join(_kinds(p))}"
    yield f"    roles:       {_roles(p.sender_roles)} -> {_roles(p.recipient_roles)}"
    yield f"    categories:  {_join(sorted(p.data_categories))}"
    if p.consent_required:
        yield "    consent:     required (only given consent is accepted)"
    else:
        yield f"    consent:     not required on the grounds {_join(sorted(p.grounds))}"
    informed = ("may be withheld where telling would prejudice the purpose"
                if p.subject_may_be_withheld else "must be informed")
    yield f"    subject:     {informed}"
    yield f"    approval:    {_APPROVAL[p.approval]}"
    lb = p.legal_basis
    yield f"    article 6:   {lb.article6}"
    for label, value in (("article 9:  ", lb.article9), ("DPA Sch 1:  ", lb.dpa_schedule1),
                         ("DPA Part 3: ", lb.dpa_part3)):
        if value:
            yield f"    {label} {value}"


def summary_lines(loaded: ProtocolFile) -> Iterator[str]:
    """The readable summary of a loaded protocol file, line by line."""
    p = loaded.protocol
    yield f"{p.id} version {p.version}: {p.title}"
    yield f"  status:         {p.status.value}"
    yield f"  effective from: {format_time(p.effective_from)}"
    yield f"  ends:           {format_time(p.ends_at) if p.ends_at else '-'}"
    yield f"  review by:      {format_time(p.review_by) if p.review_by else '-'}"
    yield f"  approved by:    {p.approved_by}"
    yield ""
    signatories = [o for o in loaded.organisations if o.id in p.signatories]
    others = [o for o in loaded.organisations if o.id not in p.signatories]
    for heading, orgs in (("signatories", signatories), ("other parties", others)):
        if not orgs:
            continue
        yield f"{heading} ({len(orgs)}):"
        for o in orgs:
            yield f"  {o.id}: {o.name} ({o.sector})"
            width = max((len(u.id) for u in o.units), default=0)
            for u in o.units:
                yield f"    {u.id.ljust(width)}  roles: {_join(sorted(u.roles))}"
        yield ""
    yield f"grounds: {_join(g.id for g in p.grounds)}"
    yield "categories: " + _join(c.id + (" (special)" if c.special else "")
                                 for c in p.categories)
    yield ""
    yield f"purposes ({len(p.purposes)}):"
    for purpose in p.purposes:
        yield from _purpose_lines(purpose)


@click.group("protocol")
def protocol() -> None:
    """Protocol files: the rules of sharing, as data."""


@protocol.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check(file: Path) -> None:
    """Validate FILE and summarise it, or list its problems (exit status 1)."""
    try:
        loaded = load_protocol_file(file)
    except DefinitionError as e:
        for line in str(e).splitlines():
            click.echo(line, err=True)
        raise click.exceptions.Exit(1) from None
    for line in summary_lines(loaded):
        click.echo(line)
