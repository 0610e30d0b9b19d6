"""What a registry app holds beside Flask: its store."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from registry.store import Store

_KEY = "infoshare.registry"


@dataclass(frozen=True)
class Registry:
    store: Store


def init_app(app: Flask, registry: Registry) -> None:
    app.extensions[_KEY] = registry


def current_registry() -> Registry:
    registry: Registry = current_app.extensions[_KEY]
    return registry


def current_store() -> Store:
    return current_registry().store
