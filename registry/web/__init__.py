"""The web pages for administrators and auditors: server-rendered, no JavaScript."""

from __future__ import annotations

from flask import Blueprint

from registry.web import history, keys, managers, organisations, overview, protocols, signin, tokens


def blueprints() -> list[Blueprint]:
    return [signin.bp, overview.bp, protocols.bp, organisations.bp, keys.bp, managers.bp,
            history.bp, tokens.bp]


__all__ = ["blueprints"]
