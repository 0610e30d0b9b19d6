"""A served registry for the browser tests: the West Yorkshire protocol, two keys, tokens."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from registry_site import Site
from werkzeug.serving import make_server

from keys import SigningKeyPair, new_keys
from registry.app import create_app
from registry.changes import KeyOwner
from registry.store import Store

WY_FILE = Path(__file__).resolve().parents[3] / "protocols" / "definitions" / \
    "west-yorkshire-iisp-2016.yaml"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    store = Store(f"sqlite:///{tmp_path / 'registry.sqlite3'}",
                  signing_key=SigningKeyPair.generate())
    # Set up by the administrator the tests sign in as, so the history names them.
    store.create_tables()
    admin_id, admin = store.create_token("admin", "IG officer, Leeds City Council",
                                         actor="setup")
    actor = f"token:{admin_id}"
    store.initialise(actor=actor)
    store.load_protocol(WY_FILE.read_text("utf-8"), actor=actor)
    key_ids = []
    for unit in ("leeds-cc/front-door", "wy-police/safeguarding-hub"):
        made = new_keys("unit", unit)
        store.register_keys(KeyOwner("unit", unit), {"signing": made.files["signing"]},
                            datetime(2024, 1, 1, tzinfo=UTC), actor=actor)
        key_ids.append(made.files["signing"].key_id)
    _, auditor = store.create_token("auditor", "Data Protection Officer, audit 2026",
                                    actor=actor)
    app = create_app({"REGISTRY_STORE": store, "SECRET_KEY": "browser-test"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_port}", store, admin, auditor, key_ids)
    finally:
        server.shutdown()
        thread.join()
        store.close()
