"""What every page needs: the directory it shows and form helpers."""

from __future__ import annotations

from datetime import datetime

from flask import request

from protocols.directory import parse_time
from protocols.model import Directory
from registry.errors import Invalid
from registry.extension import current_store
from registry.routing import ascii_version


def page_directory() -> tuple[Directory, int]:
    """The directory at ``?version=N`` (default the latest) and the latest version."""
    store = current_store()
    latest = store.latest_version()
    raw = request.args.get("version", "")
    if not raw:
        return store.directory(latest), latest
    number = ascii_version(raw)
    if number is None:
        raise Invalid("version is not a registry version", {"version": [
            "a whole number in the ASCII digits 0 to 9, such as 3"]})
    return store.directory(number), latest


def form_time(name: str) -> datetime | None:
    """An optional time field of a form, as on the wire (2024-05-01T09:00:00Z)."""
    text = request.form.get(name, "").strip()
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError as e:
        raise Invalid(f"{name} is not a time", {name: [
            "an RFC 3339 UTC time with whole seconds, such as 2024-05-01T09:00:00Z"]}) from e
