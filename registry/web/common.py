"""What every page needs: the directory it shows and form helpers."""

from __future__ import annotations

from datetime import datetime

from flask import request
from werkzeug.exceptions import NotFound as HttpNotFound

from protocols.directory import parse_time
from protocols.model import Directory
from registry.extension import current_store


def page_directory() -> tuple[Directory, int]:
    """The directory at ``?version=N`` (default the latest) and the latest version."""
    store = current_store()
    latest = store.latest_version()
    raw = request.args.get("version", "")
    if not raw:
        return store.directory(latest), latest
    if not raw.isdigit() or len(raw) > 10:
        raise HttpNotFound("no such registry version")
    return store.directory(int(raw)), latest


def form_time(name: str) -> datetime | None:
    """An optional time field of a form, as on the wire (2024-05-01T09:00:00Z)."""
    from registry.errors import Invalid

    text = request.form.get(name, "").strip()
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError as e:
        raise Invalid(f"{name} is not a time", {name: [
            "an RFC 3339 UTC time with whole seconds, such as 2024-05-01T09:00:00Z"]}) from e
