"""The broker host's own directory (``--home``) and its configuration file.

Layout of HOME (created 0700; every file in it 0600 unless public)::

    broker.json           this configuration (below)
    broker.signing.key    the broker's Ed25519 key, sealed with INFOSHARE_PASSPHRASE
    broker.signing.pub    its public key (register it with the registry)
    log-key.txt           the log's verifier key line (wire spec 6.2), public
    registry-key.pub      the registry's public key, pinned at init (a copy)
    registry.token        a registry token to read the directory (optional)
    credentials.json      AMQP passwords made by provisioning
    transfer-log.db       the transfer log, when it lives on SQLite

``broker.json`` is one JSON object with exactly these fields:
``origin`` (the log's name in its checkpoints), ``amqp_urls`` (every RabbitMQ
node, ``amqp[s]://host:port``, no user or password), ``management_url``,
``vhost``, ``tls_ca`` (CA file that RabbitMQ's certificates are checked
against, or null), ``registry_url``, ``registry_key`` (the pinned key file)
and ``log_database``: exactly one of ``{"url": ...}`` (a database URL holding
no password), ``{"url_file": ...}`` (a file holding the URL) or
``{"url_env": ...}`` (an environment variable holding it). Relative paths are
relative to HOME. Nothing secret is in the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import stat
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from broker.errors import ConfigError

__all__ = [
    "CONFIG_FILE",
    "CREDENTIALS_FILE",
    "DATABASE_URL_ENV",
    "HOME_ENV",
    "KEY_FILE",
    "LOG_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "REGISTRY_KEY_FILE",
    "TOKEN_FILE",
    "BrokerConfig",
    "check_amqp_url",
    "default_origin",
    "ensure_private_dir",
    "load",
    "read_secret_file",
    "write_private_file",
]

HOME_ENV = "INFOSHARE_HOME"
DATABASE_URL_ENV = "INFOSHARE_DATABASE_URL"
CONFIG_FILE = "broker.json"
KEY_FILE = "broker.signing.key"
PUBLIC_KEY_FILE = "broker.signing.pub"
LOG_KEY_FILE = "log-key.txt"
REGISTRY_KEY_FILE = "registry-key.pub"
TOKEN_FILE = "registry.token"
CREDENTIALS_FILE = "credentials.json"
SQLITE_FILE = "transfer-log.db"

#: A log name: what C2SP calls an origin, e.g. ``infoshare.leeds.gov.uk/transfer-log``.
#: It is also the checkpoint key's name, which holds no space and no "+".
_ORIGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_~/-]{0,199}")


def check_origin(origin: str) -> str:
    """``origin`` if it can name the log; else ConfigError saying what a name is."""
    if not _ORIGIN.fullmatch(origin):
        raise ConfigError(f"log name {origin!r}: letters, digits and . : _ ~ / - only "
                          "(no spaces, no '+'), such as infoshare.example.gov.uk/transfer-log")
    return origin


def default_origin(registry_url: str) -> str:
    """The log's name when none is given: ``<host>/transfer-log``.

    The host is the registry's when that is a DNS name (the deployment's own
    domain), else this machine's fully qualified name, else its host name.
    """
    candidates = ((urllib.parse.urlsplit(registry_url).hostname or "").lower(),
                  socket.getfqdn().lower())
    host = next((h for h in candidates if _is_dns_name(h)), socket.gethostname().lower())
    return check_origin(f"{host}/transfer-log")


def _is_dns_name(host: str) -> bool:
    if "." not in host or host.startswith("localhost") or host.endswith(".localhost"):
        return False
    return not re.fullmatch(r"[0-9.]+|[0-9a-f:]+", host)


def check_amqp_url(url: str) -> str:
    """A node URL as the configuration keeps it: ``amqp[s]://host[:port]``, nothing more.

    Raises:
        ConfigError: another scheme, no host, a user or password, or a vhost path.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"{url!r} is not a URL") from e
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ConfigError(f"{url!r}: an AMQP URL is amqps://host:port (or amqp:// on "
                          "loopback)")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("give the AMQP URL without a user or password: each client "
                          "adds its own")
    if parts.path not in ("", "/"):
        raise ConfigError("give the AMQP URL without a virtual host: use --vhost")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _no_password(url: str) -> str:
    try:
        has_password = urllib.parse.urlsplit(url).password is not None
    except ValueError as e:
        raise ConfigError("the log database URL is not a URL") from e
    if has_password:
        raise ConfigError(f"the log database URL holds a password: put it in a file "
                          f"(--database-url-file) or in {DATABASE_URL_ENV}")
    return url


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class _DatabaseSchema(_Strict):
    url = fields.String(validate=validate.Length(min=1))
    url_file = fields.String(validate=validate.Length(min=1))
    url_env = fields.String(validate=validate.Regexp(r"[A-Z_][A-Z0-9_]*"))

    @validates_schema
    def _exactly_one(self, data: dict[str, Any], **_kw: Any) -> None:
        if len(data) != 1:
            raise ValidationError("exactly one of url, url_file and url_env")


class _ConfigSchema(_Strict):
    origin = fields.String(required=True)
    amqp_urls = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    management_url = fields.String(required=True, validate=validate.URL(
        schemes={"http", "https"}, require_tld=False))
    vhost = fields.String(required=True, validate=validate.Length(min=1, max=255))
    tls_ca = fields.String(required=True, allow_none=True)
    registry_url = fields.String(required=True, validate=validate.URL(
        schemes={"http", "https"}, require_tld=False))
    registry_key = fields.String(required=True)
    log_database = fields.Nested(_DatabaseSchema, required=True)


@dataclass(frozen=True)
class BrokerConfig:
    """The broker host's configuration; paths in it are absolute once loaded."""

    home: Path
    origin: str
    amqp_urls: tuple[str, ...]
    management_url: str
    vhost: str
    tls_ca: Path | None
    registry_url: str
    registry_key: Path
    log_database: dict[str, str] = field(default_factory=dict)

    @property
    def key_file(self) -> Path:
        return self.home / KEY_FILE

    @property
    def credentials_file(self) -> Path:
        return self.home / CREDENTIALS_FILE

    @property
    def token_file(self) -> Path:
        return self.home / TOKEN_FILE

    def log_database_url(self, override_file: Path | None = None) -> str:
        """The transfer log's URL: ``$INFOSHARE_DATABASE_URL``, else the file given,
        else what the configuration names.

        Raises:
            ConfigError: the file or variable named holds nothing.
        """
        if os.environ.get(DATABASE_URL_ENV):
            return os.environ[DATABASE_URL_ENV]
        if override_file is not None:
            return read_secret_file(override_file, "database URL file")
        db = self.log_database
        if "url" in db:
            return db["url"]
        if "url_file" in db:
            return read_secret_file(self._path(db["url_file"]), "database URL file")
        name = db["url_env"]
        value = os.environ.get(name, "")
        if not value:
            raise ConfigError(f"set {name} to the transfer log's database URL")
        return value

    def _path(self, value: str) -> Path:
        return (self.home / value).resolve()

    def document(self) -> dict[str, Any]:
        return {
            "origin": self.origin, "amqp_urls": list(self.amqp_urls),
            "management_url": self.management_url, "vhost": self.vhost,
            "tls_ca": None if self.tls_ca is None else str(self.tls_ca),
            "registry_url": self.registry_url, "registry_key": str(self.registry_key),
            "log_database": dict(self.log_database),
        }

    def save(self) -> Path:
        """Write ``HOME/broker.json`` atomically, mode 0600.

        Raises:
            ConfigError: it cannot be written.
        """
        problems = _ConfigSchema().validate(self.document())
        if problems:
            raise ConfigError(f"not a valid configuration: {_flat(problems)}")
        path = self.home / CONFIG_FILE
        write_private_file(path, json.dumps(self.document(), indent=2) + "\n")
        return path


def _flat(problems: Any, prefix: str = "") -> str:
    if isinstance(problems, dict):
        return "; ".join(_flat(v, f"{prefix}{k}.") for k, v in problems.items())
    if isinstance(problems, list):
        return f"{prefix.rstrip('.')}: " + " ".join(str(p) for p in problems)
    return f"{prefix.rstrip('.')}: {problems}"


def load(home: Path) -> BrokerConfig:
    """Read ``HOME/broker.json``; relative paths come back resolved against HOME.

    Raises:
        ConfigError: missing (run ``infoshare broker init``), unreadable, or not
            of the documented form.
    """
    home = Path(home).resolve()
    path = home / CONFIG_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path} not found: run `infoshare broker init --home {home}` "
                          f"first, or give the right --home (or {HOME_ENV})") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from e
    except ValueError as e:
        raise ConfigError(f"{path}: not JSON") from e
    try:
        data = _ConfigSchema().load(doc)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_flat(e.messages)}") from e
    try:
        urls = tuple(check_amqp_url(u) for u in data["amqp_urls"])
        origin = check_origin(data["origin"])
        if "url" in data["log_database"]:
            _no_password(data["log_database"]["url"])
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
    return BrokerConfig(
        home=home, origin=origin, amqp_urls=urls,
        management_url=data["management_url"].rstrip("/"), vhost=data["vhost"],
        tls_ca=None if data["tls_ca"] is None else (home / data["tls_ca"]).resolve(),
        registry_url=data["registry_url"].rstrip("/"),
        registry_key=(home / data["registry_key"]).resolve(),
        log_database=dict(data["log_database"]),
    )


def log_database_reference(home: Path, *, url: str | None, url_file: Path | None
                           ) -> dict[str, str]:
    """What ``broker.json`` keeps about the log database, from ``broker init``'s options.

    A URL given on the command line must hold no password; one in a file is
    referred to by the file's path; ``$INFOSHARE_DATABASE_URL`` set at init is
    referred to by its name; by default the log is a SQLite file in HOME.
    """
    if url is not None and url_file is not None:
        raise ConfigError("give one of --log-database-url and --database-url-file")
    if url is not None:
        return {"url": _no_password(url)}
    if url_file is not None:
        read_secret_file(url_file, "database URL file")
        return {"url_file": str(url_file.resolve())}
    if os.environ.get(DATABASE_URL_ENV):
        return {"url_env": DATABASE_URL_ENV}
    return {"url": f"sqlite:///{Path(home).resolve() / SQLITE_FILE}"}


# --- files at rest ---------------------------------------------------------------------


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing, and make it 0700.

    Raises:
        ConfigError: it cannot be created, or is not a directory.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
    except OSError as e:
        raise ConfigError(f"{path}: cannot make a private directory ({e.strerror})") from e
    return path


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically and durably (temporary file, fsync,
    rename, fsync of the directory): a crash leaves the old file or the new one,
    never half of one. The file is 0600 from its creation.

    Raises:
        ConfigError: it cannot be written.
    """
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise ConfigError(f"{path}: cannot write ({e.strerror})") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_secret_file(path: Path, what: str) -> str:
    """The first line of a file holding a secret (a token, a password, a URL).

    Raises:
        ConfigError: unreadable, empty, or readable by group or others.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{what} {path}: cannot read ({e.strerror})") from e
    if mode & 0o077:
        raise ConfigError(f"{what} {path}: mode {mode:04o} lets others read it; "
                          "chmod 600 it")
    value = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not value:
        raise ConfigError(f"{what} {path} is empty")
    return value
