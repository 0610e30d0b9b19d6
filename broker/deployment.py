"""The deployment file: where an agency's tools find RabbitMQ, the registry and the pinned keys.

``HOME/deployment.json`` is one JSON object with exactly these string fields:
``amqp_url`` (base URL, no credentials; the nodes of a cluster as several
URLs separated by commas, which clients try in turn), ``vhost``, ``registry_url``,
``registry_key`` (file of the registry's public key), ``broker_key`` (file of
the broker's public notice key), ``credentials`` (the AMQP credentials file)
and ``agency_token`` (a registry token with role ``agency``).

Invariants: the file holds a token, so it is written atomically with mode
0600; relative paths in it are relative to HOME, and :func:`load` returns them
resolved; a file with a missing, extra or non-string field is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from broker.errors import DeploymentError

__all__ = ["DEPLOYMENT_FILE", "HOME_ENV", "Deployment", "default_home", "load"]

DEPLOYMENT_FILE = "deployment.json"
HOME_ENV = "INFOSHARE_HOME"
_PATH_FIELDS = ("registry_key", "broker_key", "credentials")


@dataclass(frozen=True)
class Deployment:
    amqp_url: str
    vhost: str
    registry_url: str
    registry_key: str
    broker_key: str
    credentials: str
    agency_token: str

    def save(self, home: Path) -> Path:
        """Write ``home/deployment.json`` (mode 0600, atomically); returns its path.

        Raises:
            DeploymentError: the file cannot be written.
        """
        home = Path(home)
        path = home / DEPLOYMENT_FILE
        tmp = home / f".{DEPLOYMENT_FILE}.{secrets.token_hex(6)}.tmp"
        try:
            home.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(dataclasses.asdict(self), f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            raise DeploymentError(f"{path}: cannot write ({e.strerror})") from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return path

    def path(self, field: str) -> Path:
        """One of the file fields (``registry_key``, ``broker_key``, ``credentials``)."""
        if field not in _PATH_FIELDS:
            raise ValueError(f"{field} is not a file of the deployment")
        return Path(getattr(self, field))


def default_home() -> Path:
    """``$INFOSHARE_HOME``, else ``./var``."""
    return Path(os.environ.get(HOME_ENV) or "var")


def load(home: Path) -> Deployment:
    """Read ``home/deployment.json``; relative file paths are resolved against ``home``.

    Raises:
        DeploymentError: missing, unreadable, or not of the documented form.
    """
    home = Path(home)
    path = home / DEPLOYMENT_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DeploymentError(f"{path} not found: is {HOME_ENV} or --home right?") from e
    except OSError as e:
        raise DeploymentError(f"{path}: cannot read ({e.strerror})") from e
    except ValueError as e:
        raise DeploymentError(f"{path}: not JSON") from e
    names = [f.name for f in dataclasses.fields(Deployment)]
    if not isinstance(doc, dict):
        raise DeploymentError(f"{path}: not a JSON object")
    missing = [n for n in names if n not in doc]
    unknown = sorted(set(doc) - set(names))
    wrong = [n for n in names if n in doc and not isinstance(doc[n], str)]
    if missing or unknown or wrong:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else []) + (
            [f"not text: {', '.join(wrong)}"] if wrong else [])
        raise DeploymentError(f"{path}: {'; '.join(problems)}")
    for name in _PATH_FIELDS:
        doc[name] = str((home / doc[name]).resolve())
    return Deployment(**doc)
