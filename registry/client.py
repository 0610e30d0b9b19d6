"""A small HTTP client of the registry, for the broker and agency clients.

Trust comes from the pinned registry key, not from the connection: every
directory is verified with :func:`protocols.directory.verify_directory`
against ``pinned_key`` before it is returned, and the current directory may
never go back to a version lower than one this client has already seen (a
replayed old directory could bring back a revoked key). Over HTTPS the
server's certificate is verified against ``ca_file`` (default
``INFOSHARE_REGISTRY_CA_FILE``, else the system's CAs). Standard library only
(urllib, ssl).
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from protocols.directory import parse_time, verify_directory
from protocols.errors import DirectoryError
from protocols.model import Directory
from registry.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RegistryError,
    RegistryUnavailable,
    Throttled,
    Unauthenticated,
    UntrustedDirectory,
)

__all__ = ["PresentedToken", "RegistryClient", "RemoteVersion"]

#: A directory of a large deployment is well under this; more is an attack or a bug.
MAX_RESPONSE = 32 * 1024 * 1024
CA_FILE_ENV = "INFOSHARE_REGISTRY_CA_FILE"


@dataclass(frozen=True)
class RemoteVersion:
    version: int
    created_at: datetime
    actor: str
    change: str


@dataclass(frozen=True)
class PresentedToken:
    """What the registry says of this client's own token: never its secret."""

    id: str
    role: str
    label: str


class RegistryClient:
    """Fetch and verify signed directories from a registry over HTTP(S)."""

    def __init__(self, base_url: str, token: str, pinned_key: bytes, *,
                 timeout: float = 10.0, ca_file: Path | str | None = None) -> None:
        """Raises: RegistryUnavailable: ``ca_file`` cannot be read as PEM certificates."""
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._pinned = bytes(pinned_key)
        self._timeout = timeout
        ca = ca_file if ca_file is not None else os.environ.get(CA_FILE_ENV) or None
        try:
            context = ssl.create_default_context(cafile=None if ca is None else str(ca))
        except (OSError, ssl.SSLError) as e:
            raise RegistryUnavailable(f"the CA file {ca} cannot be read as PEM "
                                      "certificates") from e
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        self._highest_seen = -1
        self._lock = threading.Lock()
        # The current directory last verified, and its ETag: asked for again with
        # If-None-Match, an unchanged directory comes back as 304, without a body.
        self._current: tuple[str, Directory] | None = None

    @property
    def highest_seen(self) -> int:
        """The highest directory version verified so far (-1 before the first)."""
        return self._highest_seen

    def _get(self, path: str) -> bytes:
        body, _ = self._fetch(path)
        assert body is not None  # no ETag was offered, so the answer has a body
        return body

    def _fetch(self, path: str, etag: str | None = None) -> tuple[bytes | None, str | None]:
        """The body and ETag at ``path``; (None, etag) if it still has ``etag`` (HTTP 304)."""
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if etag is not None:
            headers["If-None-Match"] = etag
        request = urllib.request.Request(self.base_url + "/api/v1" + path, headers=headers)
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                body: bytes = response.read(MAX_RESPONSE + 1)
                new_etag = response.headers.get("ETag")
        except urllib.error.HTTPError as e:
            if e.code == 304 and etag is not None and e.headers.get("ETag") == etag:
                return None, etag
            raise _translate(e) from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            # ValueError: a malformed base URL. The reason names no secret.
            raise RegistryUnavailable(f"the registry at {self.base_url} cannot be reached: "
                                      f"{getattr(e, 'reason', type(e).__name__)}") from e
        if len(body) > MAX_RESPONSE:
            raise RegistryUnavailable("the registry's answer is too large")
        return body, new_etag

    def signed_directory(self, version: int | None = None) -> bytes:
        """The signed directory document as served (not yet verified)."""
        return self._get("/directory" if version is None else f"/directory/{int(version)}")

    def directory(self, version: int | None = None) -> Directory:
        """The verified directory, current or at ``version``.

        Raises:
            UntrustedDirectory: not signed by the pinned key, not the version asked
                for, or (for the current one) lower than a version seen before.
            RegistryUnavailable, Unauthenticated, Forbidden, NotFound, Throttled.
        """
        if version is None:
            kept = self._current
            document, etag = self._fetch("/directory", kept[0] if kept else None)
            if document is None and kept is not None:
                return kept[1]  # unchanged since it was verified
        else:
            document, etag = self._fetch(f"/directory/{int(version)}")
        assert document is not None
        try:
            d = verify_directory(document, self._pinned)
        except DirectoryError as e:
            raise UntrustedDirectory(f"the registry's directory is not trusted: {e}") from e
        if version is not None and d.version != version:
            raise UntrustedDirectory(f"asked for version {version}, got {d.version}")
        with self._lock:
            if version is None and d.version < self._highest_seen:
                raise UntrustedDirectory(
                    f"the registry served version {d.version} as current after "
                    f"{self._highest_seen}; refusing to go back")
            self._highest_seen = max(self._highest_seen, d.version)
            if version is None and etag is not None:
                self._current = (etag, d)
        return d

    def presented_token(self) -> PresentedToken:
        """The id, role and label of the token this client presents.

        Raises:
            Unauthenticated: the registry does not know the token (or it was revoked).
            Throttled, RegistryUnavailable.
        """
        try:
            doc: Any = json.loads(self._get("/token"))
            return PresentedToken(id=str(doc["id"]), role=str(doc["role"]),
                                  label=str(doc["label"]))
        except (ValueError, KeyError, TypeError) as e:
            raise RegistryUnavailable("the registry's answer about the token is "
                                      "malformed") from e

    def versions(self) -> list[RemoteVersion]:
        """Every registry version with who made it and what it was."""
        try:
            rows: Any = json.loads(self._get("/directory/versions"))
            return [RemoteVersion(version=int(r["version"]),
                                  created_at=parse_time(r["created_at"]),
                                  actor=str(r["actor"]), change=str(r["change"]))
                    for r in rows]
        except (ValueError, KeyError, TypeError) as e:
            raise RegistryUnavailable("the registry's version list is malformed") from e


_BY_STATUS: dict[int, type[RegistryError]] = {
    401: Unauthenticated, 403: Forbidden, 404: NotFound, 409: Conflict, 422: Invalid,
    400: Invalid,
}


def _translate(e: urllib.error.HTTPError) -> RegistryError:
    try:
        body = json.loads(e.read(64 * 1024))
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
    except (ValueError, OSError):
        message = ""
    message = message or f"the registry answered HTTP {e.code}"
    if e.code == 429:
        try:
            wait = int(e.headers.get("Retry-After", "60"))
        except ValueError:
            wait = 60
        return Throttled(message, wait)
    cls = _BY_STATUS.get(e.code)
    if cls is not None:
        return cls(message)
    return RegistryUnavailable(f"the registry answered HTTP {e.code}: {message}")
