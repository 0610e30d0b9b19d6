"""The organisation bundle: everything one organisation's tools need to reach the broker.

Made on the broker host by ``infoshare broker bundle --org ORG``, handed to
the organisation's IT team, and read by its gateway and by ``infoshare
send/receive/notices``. One JSON object (``format`` ``infoshare-bundle/v1``):

- ``org``: the organisation the bundle is for;
- ``units``: ``{"org/unit": "AMQP password"}`` for that organisation's units
  only (never another organisation's secret);
- ``amqp_nodes``: every RabbitMQ node's base URL (``amqp://host:port`` or
  ``amqps://``), tried in turn; ``vhost``; ``ca_file``: a CA certificate file
  for TLS (relative to the bundle's directory) or null;
- ``registry_url`` and ``registry_key`` (the pinned registry public key, as
  text) and ``broker_key`` (the broker's notice key, as text).

The bundle holds no registry token: each gateway has an agency-role token of
its own, created by a registry administrator and given to the gateway's
operator (``--token-file`` or ``INFOSHARE_TOKEN``).

Invariants: written atomically with mode 0600; refused on read when group or
others may read it; fields checked with marshmallow (``unknown=RAISE``), and
every unit must belong to ``org``.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from agency.errors import BundleError
from agency.files import write_atomic
from keys import KeyFormatError, parse_public_key_text

__all__ = ["BUNDLE_FILE", "BUNDLE_FORMAT", "TOKEN_ENV", "TOKEN_FILE", "Bundle", "read_bundle",
           "read_token", "write_bundle"]

BUNDLE_FORMAT = "infoshare-bundle/v1"
BUNDLE_FILE = "bundle.json"
_NAME = r"[a-z0-9](?:-?[a-z0-9])*"
_ADDRESS = rf"^{_NAME}/{_NAME}$"
_NODE = r"^amqps?://[^/@\s?]+/?(\?\S*)?$"


@dataclass(frozen=True)
class Bundle:
    org: str
    units: dict[str, str]
    amqp_nodes: tuple[str, ...]
    vhost: str
    registry_url: str
    registry_key: str
    broker_key: str
    ca_file: str | None = None

    def password(self, unit: str) -> str:
        """Raises: BundleError: ``unit`` is not one of this bundle's units."""
        try:
            return self.units[unit]
        except KeyError:
            raise BundleError(f"{unit} is not a unit of this bundle (it is for "
                              f"{self.org}: {', '.join(sorted(self.units))})") from None

    def registry_public_key(self) -> bytes:
        return parse_public_key_text(self.registry_key)

    def broker_public_key(self) -> bytes:
        return parse_public_key_text(self.broker_key)

    def to_json(self) -> dict[str, Any]:
        return {"format": BUNDLE_FORMAT, "org": self.org, "units": dict(self.units),
                "amqp_nodes": list(self.amqp_nodes), "vhost": self.vhost,
                "registry_url": self.registry_url, "registry_key": self.registry_key,
                "broker_key": self.broker_key, "ca_file": self.ca_file}


class _BundleSchema(Schema):
    class Meta:
        unknown = RAISE

    format = fields.String(required=True, validate=validate.Equal(BUNDLE_FORMAT))
    org = fields.String(required=True, validate=validate.Regexp(rf"^{_NAME}$"))
    units = fields.Dict(keys=fields.String(validate=validate.Regexp(_ADDRESS)),
                        values=fields.String(validate=validate.Length(min=1)),
                        required=True, validate=validate.Length(min=1))
    amqp_nodes = fields.List(fields.String(validate=validate.Regexp(_NODE)),
                             required=True, validate=validate.Length(min=1))
    vhost = fields.String(required=True, validate=validate.Length(min=1))
    registry_url = fields.String(required=True, validate=validate.Regexp(r"^https?://\S+$"))
    registry_key = fields.String(required=True)
    broker_key = fields.String(required=True)
    ca_file = fields.String(required=True, allow_none=True)


def _parse(doc: object, where: str) -> Bundle:
    try:
        data = _BundleSchema().load(doc)  # type: ignore[arg-type]
    except ValidationError as e:
        # Field names only: the messages could quote a password.
        raise BundleError(f"{where}: not a bundle (check {', '.join(sorted(_fields(e)))})") \
            from None
    strangers = sorted(u for u in data["units"] if u.split("/")[0] != data["org"])
    if strangers:
        raise BundleError(f"{where}: units of another organisation: {', '.join(strangers)}")
    for name in ("registry_key", "broker_key"):
        try:
            parse_public_key_text(data[name])
        except KeyFormatError:
            raise BundleError(f"{where}: {name} is not a public key") from None
    data.pop("format")
    data["amqp_nodes"] = tuple(data["amqp_nodes"])
    return Bundle(**data)


def _fields(e: ValidationError) -> list[str]:
    messages = e.messages
    return [str(k) for k in messages] if isinstance(messages, dict) else ["the document"]


def read_bundle(path: Path) -> Bundle:
    """Read a bundle; ``ca_file`` comes back resolved against the bundle's directory.

    Raises:
        BundleError: missing, readable by others, or not of the documented form.
    """
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise BundleError(f"{path}: mode {mode:04o} lets others read it; chmod 600 it")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path} not found: ask the broker's operator for your "
                          "organisation's bundle (infoshare broker bundle)") from None
    except OSError as e:
        raise BundleError(f"{path}: cannot read ({e.strerror})") from e
    except ValueError:
        raise BundleError(f"{path}: not JSON") from None
    bundle = _parse(doc, str(path))
    if bundle.ca_file is not None:
        bundle = Bundle(**{**bundle.__dict__,
                           "ca_file": str((path.parent / bundle.ca_file).resolve())})
    return bundle


def write_bundle(path: Path, bundle: Bundle) -> Path:
    """Write ``bundle`` to ``path`` atomically with mode 0600.

    Raises:
        BundleError: the bundle is not valid or the file cannot be written.
    """
    path = Path(path)
    _parse(bundle.to_json(), str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, (json.dumps(bundle.to_json(), indent=2, sort_keys=True) + "\n")
                     .encode("utf-8"))
    except OSError as e:
        raise BundleError(f"{path}: cannot write ({e.strerror})") from e
    return path


TOKEN_ENV = "INFOSHARE_TOKEN"
TOKEN_FILE = "registry.token"


def read_token(token_file: Path | None, home: Path | None = None) -> str:
    """The registry token: ``token_file``, else ``$INFOSHARE_TOKEN``, else ``HOME/registry.token``.

    Raises:
        BundleError: none of them gives a token.
    """
    candidates = [token_file] if token_file is not None else []
    if token_file is None and os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if token_file is None and home is not None and (Path(home) / TOKEN_FILE).exists():
        candidates.append(Path(home) / TOKEN_FILE)
    for path in candidates:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise BundleError(f"{path}: cannot read ({e.strerror})") from e
        if token:
            return token
        raise BundleError(f"{path} is empty")
    raise BundleError(f"no registry token: give --token-file FILE or set {TOKEN_ENV} (an "
                      "agency token of your own from the registry's administrator)")
