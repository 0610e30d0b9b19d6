"""Protocol files (YAML) to validated :class:`Protocol` and :class:`Organisation` values.

A protocol file is one YAML mapping: the protocol's own fields at the top
level, its ``grounds``, ``categories`` and ``purposes``, the ``parties``
(organisations with their units and roles) and the ``signatories`` among them.

Invariants of every :class:`ProtocolFile` this module returns:

- every id, role, category and ground has the wire spec section 1 name form;
- ids are unique where they name something (grounds, categories, parties,
  units within a party, purposes) and no list names a thing twice;
- signatories are declared parties; the grounds include the three of wire
  spec 3.1;
- every purpose's categories and grounds are declared by the protocol, and
  every role it names is held by some unit of a signatory (or is ``*``);
- a purpose that requires consent lists no grounds, one that does not lists
  at least one;
- times are RFC 3339 UTC with whole seconds, exactly as on the wire.

Anything else raises :class:`DefinitionError` naming the file and the field
path (``purposes.3.data_categories.1``); nothing half-loaded is returned.
Messages hold field paths and codes only, never values from the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validates_schema
from marshmallow.validate import Length, OneOf, Range

from protocols.directory import parse_time
from protocols.errors import DefinitionError
from protocols.model import (
    ANY_ROLE,
    OPENING_KINDS,
    Category,
    CategoryId,
    Ground,
    GroundId,
    LegalBasis,
    Organisation,
    OrgId,
    Protocol,
    ProtocolId,
    ProtocolStatus,
    Purpose,
    PurposeId,
    Role,
    Unit,
    UnitId,
)
from protocols.text import is_prose, is_text, refused_characters

#: Wire spec section 1: organisation, unit, protocol, purpose, category and role ids.
NAME_PATTERN = r"[a-z0-9](-?[a-z0-9])*"
NAME_MAX = 40
#: Wire spec 3.1: every protocol has at least these non-consent grounds.
REQUIRED_GROUNDS = ("child-significant-harm", "adult-serious-harm", "serious-crime")
APPROVALS = ("never", "always", "when_refused")
#: Protocol files are edited by hand; anything bigger is a mistake or an attack.
MAX_TEXT = 1024 * 1024
#: Path used for problems of the whole document rather than one field.
DOCUMENT = "(document)"
#: A protocol file is a few levels deep; thousands of levels are an attack on the parser.
MAX_DEPTH = 32
#: Longer numbers are no version and no count; Python refuses past 4,300 digits.
MAX_DIGITS = 18
#: Versions are 32-bit integers in the registry's database.
MAX_VERSION = 2**31 - 1

_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class ProtocolFile:
    """A loaded protocol file: the protocol and its parties."""

    protocol: Protocol
    organisations: tuple[Organisation, ...]


# --- YAML ------------------------------------------------------------------------------


class _YAMLProblems(yaml.YAMLError):
    """Structural problems found before construction, by field path."""

    def __init__(self, problems: dict[str, list[str]]) -> None:
        super().__init__("structural problems")
        self.problems = problems


def _check_nodes(node: yaml.Node, path: tuple[str, ...], seen: set[int],
                 problems: dict[str, list[str]]) -> None:
    where = ".".join(path) or DOCUMENT
    if id(node) in seen:
        # The composer resolves an alias to the node it names, so a node met
        # twice is an alias. Refused: each rule is stated where it applies, and
        # alias bombs cannot expand into the schema.
        problems.setdefault(where, []).append("YAML aliases are not allowed")
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in keys:
                at = ".".join((*path, key))
                problems.setdefault(at, []).append(
                    f"duplicate key (line {line}, first on line {keys[key]})")
            else:
                keys[key] = line
            _check_nodes(value_node, (*path, key), seen, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_nodes(item, (*path, str(i)), seen, problems)


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys, aliases, deep nesting and huge numbers.

    PyYAML keeps the last of two equal keys silently, which would let a
    reviewer read one rule while another is loaded. Its composer recurses once
    per level of nesting, so depth is limited well before Python's stack is;
    its int() of a long digit string raises past 4,300 digits, so numbers are
    limited to what a protocol file can mean. Times stay text.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value).replace("_", "")
        if sum(c.isdigit() for c in text) > MAX_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number of more than {MAX_DIGITS} digits", node.start_mark)
        value: int = super().construct_yaml_int(node)
        return value

    def construct_document(self, node: yaml.Node) -> Any:
        problems: dict[str, list[str]] = {}
        _check_nodes(node, (), set(), problems)
        if problems:
            raise _YAMLProblems(problems)
        return super().construct_document(node)


# Times stay strings so that _Time sees the exact text: PyYAML would otherwise
# turn "2016-04-01" or "+01:00" offsets into datetimes the wire spec refuses.
# Only true and false are booleans: YAML 1.1 also reads yes, no, on and off
# as booleans, which would turn a role named "no" into False unseen.
_DROPPED = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool"}
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))
StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=StrictLoader)  # a SafeLoader: builds no objects
    except _YAMLProblems as e:
        raise DefinitionError(source, e.problems) from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise DefinitionError(source, {DOCUMENT: [f"{where}{e.problem or 'not YAML'}"]}) from e
    except yaml.YAMLError as e:
        raise DefinitionError(source, {DOCUMENT: ["not YAML"]}) from e
    except (RecursionError, ValueError) as e:
        # The limits above should make these unreachable; a file that still
        # finds a way is refused, never a crash.
        raise DefinitionError(source, {DOCUMENT: ["too deep or too large to read"]}) from e


# --- fields ----------------------------------------------------------------------------


def _check_name(value: str) -> None:
    if len(value) > NAME_MAX or not _NAME.fullmatch(value):
        raise ValidationError(
            f"not a name: lowercase letters and digits, single hyphens between them, "
            f"at most {NAME_MAX} characters")


def _check_role(value: str) -> None:
    if value != ANY_ROLE:
        _check_name(value)


class _Name(fields.String):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=_check_name, **kwargs)


class _RoleRef(fields.String):
    """A role in a purpose: a role name, or ``*`` for any unit of a signatory."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=_check_role, **kwargs)


def _check_text(value: str) -> None:
    if not is_text(value):
        raise ValidationError(_text_problem(value, prose=False))


def _check_prose(value: str) -> None:
    if not is_prose(value):
        raise ValidationError(_text_problem(value, prose=True))


def _check_optional_prose(value: str) -> None:
    if value:
        _check_prose(value)


def _text_problem(value: str, *, prose: bool) -> str:
    refused = refused_characters(value, prose=prose)
    if refused:
        return ("holds control or invisible formatting characters "
                f"({', '.join(refused[:5])}); retype it without them")
    return "must be text, not only spaces"


class _Text(fields.String):
    """One line of text: no control or format characters, not only spaces."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=_check_text, **kwargs)


class _Prose(fields.String):
    """Text that may run over lines (folded YAML); empty only where ``optional``."""

    def __init__(self, *, optional: bool = False, **kwargs: Any) -> None:
        super().__init__(validate=_check_optional_prose if optional else _check_prose, **kwargs)


class _StrictBool(fields.Boolean):
    # marshmallow's Boolean takes "yes", "on", 1 and more; a rule is true or false.
    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class _StrictInt(fields.Integer):
    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid", input=value)
        return value


class _Time(fields.Field[datetime]):
    """An RFC 3339 UTC time with whole seconds, e.g. ``2016-04-01T00:00:00Z``."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> datetime:
        try:
            return parse_time(value)
        except (TypeError, ValueError) as e:
            raise ValidationError(
                "not an RFC 3339 UTC time with whole seconds, such as 2016-04-01T00:00:00Z"
            ) from e


def _names(**kwargs: Any) -> fields.List[str]:
    return fields.List(_Name(), **kwargs)


# --- schemas ---------------------------------------------------------------------------


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class _GroundSchema(_Strict):
    id = _Name(required=True)
    title = _Text(required=True)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> Ground:
        return Ground(id=GroundId(data["id"]), title=data["title"])


class _CategorySchema(_Strict):
    id = _Name(required=True)
    title = _Text(required=True)
    special = _StrictBool(load_default=False)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> Category:
        return Category(id=CategoryId(data["id"]), title=data["title"], special=data["special"])


class _UnitSchema(_Strict):
    # No post_load: a Unit needs its organisation's id, which the party supplies.
    id = _Name(required=True)
    name = _Text(required=True)
    roles = _names(required=True, validate=Length(min=1))


class _PartySchema(_Strict):
    id = _Name(required=True)
    name = _Text(required=True)
    sector = _Name(required=True)
    units = fields.List(fields.Nested(_UnitSchema), load_default=list)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> Organisation:
        org = OrgId(data["id"])
        units = tuple(
            Unit(org=org, id=UnitId(u["id"]), name=u["name"],
                 roles=frozenset(Role(r) for r in u["roles"]))
            for u in data["units"]
        )
        return Organisation(id=org, name=data["name"], sector=data["sector"], units=units)


class _LegalBasisSchema(_Strict):
    article6 = _Text(required=True)
    article9 = _Text(load_default=None, allow_none=True)
    dpa_schedule1 = _Text(load_default=None, allow_none=True)
    dpa_part3 = _Text(load_default=None, allow_none=True)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> LegalBasis:
        return LegalBasis(**data)


class _PurposeSchema(_Strict):
    id = _Name(required=True)
    title = _Text(required=True)
    description = _Prose(required=True)
    opens = fields.List(fields.String(validate=OneOf(OPENING_KINDS)), required=True,
                        validate=Length(min=1))
    sender_roles = fields.List(_RoleRef(), required=True, validate=Length(min=1))
    recipient_roles = fields.List(_RoleRef(), required=True, validate=Length(min=1))
    data_categories = _names(required=True, validate=Length(min=1))
    consent_required = _StrictBool(required=True)
    grounds = _names(load_default=list)
    subject_may_be_withheld = _StrictBool(required=True)
    approval = fields.String(required=True, validate=OneOf(APPROVALS))
    legal_basis = fields.Nested(_LegalBasisSchema, required=True)

    @validates_schema
    def _consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        if data["consent_required"] and data["grounds"]:
            errors["grounds"] = ["a purpose that requires consent lists no grounds"]
        if not data["consent_required"] and not data["grounds"]:
            errors["grounds"] = [
                "a purpose that does not require consent lists the grounds it accepts"]
        if data["consent_required"] and data["approval"] == "when_refused":
            errors["approval"] = [
                "when_refused never applies: this purpose accepts only given consent"]
        for field in ("sender_roles", "recipient_roles"):
            if ANY_ROLE in data[field] and len(data[field]) > 1:
                errors[field] = ["'*' already means any unit; it stands alone"]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> Purpose:
        return Purpose(
            id=PurposeId(data["id"]), title=data["title"], description=data["description"],
            opens=frozenset(data["opens"]),
            sender_roles=frozenset(Role(r) for r in data["sender_roles"]),
            recipient_roles=frozenset(Role(r) for r in data["recipient_roles"]),
            data_categories=frozenset(CategoryId(c) for c in data["data_categories"]),
            consent_required=data["consent_required"],
            grounds=frozenset(GroundId(g) for g in data["grounds"]),
            subject_may_be_withheld=data["subject_may_be_withheld"],
            approval=data["approval"], legal_basis=data["legal_basis"],
        )


class _ProtocolFileSchema(_Strict):
    id = _Name(required=True)
    version = _StrictInt(required=True, validate=Range(min=1, max=MAX_VERSION))
    title = _Text(required=True)
    status = fields.String(required=True, validate=OneOf([s.value for s in ProtocolStatus]))
    effective_from = _Time(required=True)
    ends_at = _Time(load_default=None, allow_none=True)
    review_by = _Time(load_default=None, allow_none=True)
    approved_by = _Text(required=True)
    security = _Prose(optional=True, load_default="")
    retention = _Prose(optional=True, load_default="")
    grounds = fields.List(fields.Nested(_GroundSchema), required=True)
    categories = fields.List(fields.Nested(_CategorySchema), required=True,
                             validate=Length(min=1))
    parties = fields.List(fields.Nested(_PartySchema), required=True, validate=Length(min=1))
    signatories = _names(required=True, validate=Length(min=1))
    purposes = fields.List(fields.Nested(_PurposeSchema), required=True)

    @validates_schema(pass_original=True)
    def _cross_references(self, data: dict[str, Any], original: Mapping[str, Any],
                          **kwargs: Any) -> None:
        # Runs only when every field is well formed. The purposes' role,
        # category and ground lists are read from the original mapping: the
        # frozensets of Purpose no longer know the list positions that field
        # paths name.
        problems = _Problems()
        effective: datetime = data["effective_from"]
        for field in ("ends_at", "review_by"):
            if data[field] is not None and data[field] <= effective:
                problems.add(field, "must be after effective_from")
        grounds = problems.unique("grounds", [g.id for g in data["grounds"]])
        for g in REQUIRED_GROUNDS:
            if g not in grounds:
                problems.add("grounds", f"the ground {g} of wire spec 3.1 is not declared")
        categories = problems.unique("categories", [c.id for c in data["categories"]])
        special = {c.id for c in data["categories"] if c.special}
        parties: list[Organisation] = data["parties"]
        party_ids = problems.unique("parties", [o.id for o in parties])
        for i, o in enumerate(parties):
            problems.unique(f"parties.{i}.units", [u.id for u in o.units])
        signatories = problems.unique("signatories", data["signatories"], suffix="")
        for i, s in enumerate(data["signatories"]):
            if s not in party_ids:
                problems.add(f"signatories.{i}", "not a declared party")
        roles = {r for o in parties if o.id in signatories for u in o.units for r in u.roles}
        problems.unique("purposes", [p.id for p in data["purposes"]])
        for i, raw in enumerate(original["purposes"]):
            at = f"purposes.{i}"
            problems.members(f"{at}.data_categories", raw["data_categories"], categories,
                             "not a category declared by the protocol")
            problems.members(f"{at}.grounds", raw.get("grounds", []), grounds,
                             "not a ground declared by the protocol")
            for field in ("sender_roles", "recipient_roles"):
                problems.members(f"{at}.{field}", raw[field], roles | {ANY_ROLE},
                                 "no unit of a signatory holds this role")
            p: Purpose = data["purposes"][i]
            lb = p.legal_basis
            if p.data_categories & special and not (lb.article9 or lb.dpa_schedule1
                                                    or lb.dpa_part3):
                problems.add(f"{at}.legal_basis",
                             "special category or criminal offence data needs an article 9 "
                             "condition, a DPA 2018 Schedule 1 condition or DPA Part 3")
        problems.raise_if_any()

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> ProtocolFile:
        protocol = Protocol(
            id=ProtocolId(data["id"]), version=data["version"], title=data["title"],
            status=ProtocolStatus(data["status"]), effective_from=data["effective_from"],
            ends_at=data["ends_at"], review_by=data["review_by"],
            approved_by=data["approved_by"],
            signatories=frozenset(OrgId(s) for s in data["signatories"]),
            grounds=tuple(data["grounds"]), categories=tuple(data["categories"]),
            purposes=tuple(data["purposes"]), security=data["security"],
            retention=data["retention"],
        )
        return ProtocolFile(protocol=protocol, organisations=tuple(data["parties"]))


class _Problems:
    """Cross-reference problems by dotted field path, raised as one ValidationError."""

    def __init__(self) -> None:
        self.found: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.found.setdefault(path, []).append(message)

    def unique(self, path: str, ids: Iterable[str], suffix: str = ".id") -> set[str]:
        """The set of ``ids``, noting every repeat at its own position."""
        seen: set[str] = set()
        for i, x in enumerate(ids):
            if x in seen:
                self.add(f"{path}.{i}{suffix}", "named twice")
            seen.add(x)
        return seen

    def members(self, path: str, values: Iterable[str], allowed: set[str],
                message: str) -> None:
        seen: set[str] = set()
        for i, x in enumerate(values):
            if x not in allowed:
                self.add(f"{path}.{i}", message)
            elif x in seen:
                self.add(f"{path}.{i}", "named twice")
            seen.add(x)

    def raise_if_any(self) -> None:
        if self.found:
            # A flat mapping of dotted paths: _flatten passes it through as is.
            raise ValidationError(dict(self.found))


def _flatten(messages: Any, path: tuple[str, ...], out: dict[str, list[str]]) -> None:
    """marshmallow's nested error messages as ``{"a.0.b": [message, ...]}``."""
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            # "_schema" marks errors of a whole object, which its own path names.
            _flatten(value, path if key == "_schema" else (*path, str(key)), out)
    elif isinstance(messages, list | tuple):
        for m in messages:
            _flatten(m, path, out)
    else:
        out.setdefault(".".join(path) or DOCUMENT, []).append(str(messages))


def load_protocol_text(text: str, source: str) -> ProtocolFile:
    """Load and validate a protocol file given as text; ``source`` names it in errors.

    Raises:
        DefinitionError: the text is not YAML, or the protocol breaks a rule above.
    """
    if len(text) > MAX_TEXT:
        raise DefinitionError(source, {DOCUMENT: [f"larger than {MAX_TEXT} characters"]})
    doc = _parse_yaml(text, source)
    if not isinstance(doc, dict):
        raise DefinitionError(source, {DOCUMENT: ["a protocol file is a YAML mapping"]})
    try:
        loaded = _ProtocolFileSchema().load(doc)
    except ValidationError as e:
        problems: dict[str, list[str]] = {}
        _flatten(e.messages, (), problems)
        raise DefinitionError(source, problems) from e
    assert isinstance(loaded, ProtocolFile)
    return loaded


def load_protocol_file(path: Path) -> ProtocolFile:
    """Load and validate a protocol file.

    Raises:
        DefinitionError: unreadable, not UTF-8, not YAML, or invalid.
    """
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise DefinitionError(source, {DOCUMENT: [f"cannot read ({e.strerror})"]}) from e
    except UnicodeDecodeError as e:
        raise DefinitionError(source, {DOCUMENT: ["not UTF-8 text"]}) from e
    return load_protocol_text(text, source)
