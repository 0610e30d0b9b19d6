"""A served registry for the browser tests: the West Yorkshire protocol, two keys, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from registry_site import Site
from registry_testing import served_in_thread, west_yorkshire

from keys import SigningKeyPair, new_keys
from registry.app import create_app
from registry.changes import KeyOwner
from registry.store import Store


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    store = Store(f"sqlite:///{tmp_path / 'registry.sqlite3'}",
                  signing_key=SigningKeyPair.generate())
    # Set up by the administrator the tests sign in as, so the history names them.
    actor, admin = west_yorkshire(store, "IG officer, Leeds City Council")
    key_ids = []
    for unit in ("leeds-cc/front-door", "wy-police/safeguarding-hub"):
        made = new_keys("unit", unit)
        store.register_keys(KeyOwner("unit", unit), {"signing": made.files["signing"]},
                            datetime(2024, 1, 1, tzinfo=UTC), actor=actor)
        key_ids.append(made.files["signing"].key_id)
    _, auditor = store.create_token("auditor", "Data Protection Officer, audit 2026",
                                    actor=actor)
    app = create_app({"REGISTRY_STORE": store, "SECRET_KEY": "browser-test"})
    try:
        with served_in_thread(app) as url:
            yield Site(url, store, admin, auditor, key_ids)
    finally:
        store.close()
