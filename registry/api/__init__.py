"""The REST API under ``/api/v1``: one blueprint per resource."""

from __future__ import annotations

from flask import Blueprint

from registry.api import directory, history, keys, managers, protocols, tokens, units

PREFIX = "/api/v1"


def blueprints() -> list[Blueprint]:
    return [directory.bp, history.bp, protocols.bp, units.bp, keys.bp, managers.bp, tokens.bp,
            tokens.presented_bp]


__all__ = ["PREFIX", "blueprints"]
