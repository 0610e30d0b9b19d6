"""The registry API over real HTTP: roles, errors, the whole admin flow, throttling, logs."""

from __future__ import annotations

import logging

import pytest
from registry_http import call
from registry_testing import wy_text

from keys import new_keys
from protocols.directory import verify_directory

pytestmark = pytest.mark.integration

API = "/api/v1"


@pytest.fixture
def tokens(served):  # type: ignore[no-untyped-def]
    """The served registry with the protocol loaded and one token of each role."""
    a = call(served.url, "POST", f"{API}/protocols", token=served.admin,
             body={"yaml": wy_text()})
    assert a.status == 201, a.body
    out = {"admin": served.admin}
    for role in ("auditor", "agency"):
        r = call(served.url, "POST", f"{API}/tokens", token=served.admin,
                 body={"role": role, "label": f"{role} for tests"})
        assert r.status == 201
        out[role] = r.json["secret"]
    return out


def _error(answer, status: int, code: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    assert answer.status == status, answer.body
    assert answer.headers["content-type"] == "application/json"
    body = answer.json
    assert body["error"] == code and isinstance(body["message"], str)
    assert isinstance(body["fields"], dict)
    return body  # type: ignore[no-any-return]


def test_load_protocol_answers_with_the_versions(served) -> None:  # type: ignore[no-untyped-def]
    a = call(served.url, "POST", f"{API}/protocols", token=served.admin,
             body={"yaml": wy_text()})
    assert (a.status, a.json) == (201, {"version": 1, "protocol": "wy-iisp-2016",
                                        "protocol_version": 1})


def test_the_directory_is_served_as_signed(served, tokens) -> None:  # type: ignore[no-untyped-def]
    for role in ("admin", "auditor", "agency"):
        a = call(served.url, "GET", f"{API}/directory", token=tokens[role])
        assert a.status == 200
        assert a.body == served.store.signed_directory()
        assert a.headers["x-registry-version"] == "1"
        assert verify_directory(a.body, served.key.public).version == 1
    old = call(served.url, "GET", f"{API}/directory/0", token=tokens["agency"])
    assert old.body == served.store.signed_directory(0)
    listed = call(served.url, "GET", f"{API}/directory/versions", token=tokens["agency"]).json
    assert [(v["version"], v["change"]) for v in listed] == [(0, "init"), (1, "load_protocol")]


@pytest.mark.parametrize(("role", "method", "path", "body", "status"), [
    ("agency", "GET", "/history", None, 403),
    ("agency", "GET", "/tokens", None, 403),
    ("agency", "POST", "/managers", {"id": "m-1", "org": "leeds-cc", "title": "Head"}, 403),
    ("auditor", "GET", "/history", None, 200),
    ("auditor", "GET", "/tokens", None, 403),
    ("auditor", "POST", "/managers", {"id": "m-1", "org": "leeds-cc", "title": "Head"}, 403),
    ("auditor", "PUT", "/protocols/wy-iisp-2016/status", {"status": "suspended"}, 403),
    ("admin", "GET", "/history", None, 200),
    ("admin", "GET", "/tokens", None, 200),
    ("admin", "POST", "/managers", {"id": "m-1", "org": "leeds-cc", "title": "Head"}, 201),
])
def test_roles(served, tokens, role, method, path, body, status) -> None:  # type: ignore[no-untyped-def]
    a = call(served.url, method, API + path, token=tokens[role], body=body)
    assert a.status == status, a.body
    if status == 403:
        _error(a, 403, "forbidden")


def test_a_token_names_its_own_role_and_label(served, tokens) -> None:  # type: ignore[no-untyped-def]
    listed = {t["role"]: t for t in call(served.url, "GET", f"{API}/tokens",
                                          token=tokens["admin"]).json}
    for role in ("admin", "auditor", "agency"):
        a = call(served.url, "GET", f"{API}/token", token=tokens[role])
        assert a.status == 200, a.body
        assert a.json == {"id": listed[role]["id"], "role": role, "label": listed[role]["label"]}
        assert tokens[role] not in a.body.decode()
    _error(call(served.url, "GET", f"{API}/token"), 401, "unauthenticated")
    _error(call(served.url, "GET", f"{API}/token", token="isr_wrong"), 401, "unauthenticated")


def test_no_token_or_a_wrong_one_is_401(served, tokens) -> None:  # type: ignore[no-untyped-def]
    a = call(served.url, "GET", f"{API}/directory")
    _error(a, 401, "unauthenticated")
    assert a.headers["www-authenticate"].startswith("Bearer")
    _error(call(served.url, "GET", f"{API}/directory", token="isr_wrong"), 401,
           "unauthenticated")
    revoke = call(served.url, "GET", f"{API}/tokens", token=tokens["admin"]).json
    agency_id = next(t["id"] for t in revoke if t["role"] == "agency")
    assert call(served.url, "POST", f"{API}/tokens/{agency_id}/revoke",
                token=tokens["admin"]).status == 200
    _error(call(served.url, "GET", f"{API}/directory", token=tokens["agency"]), 401,
           "unauthenticated")


def test_not_found_and_method_not_allowed_are_json(served, tokens) -> None:  # type: ignore[no-untyped-def]
    _error(call(served.url, "GET", f"{API}/no-such-thing", token=tokens["admin"]), 404,
           "not_found")
    _error(call(served.url, "GET", f"{API}/directory/99", token=tokens["admin"]), 404,
           "not_found")
    _error(call(served.url, "POST", f"{API}/organisations/no-such-org/units",
                token=tokens["admin"], body={"id": "x", "name": "X", "roles": ["r"]}),
           404, "not_found")
    a = call(served.url, "DELETE", f"{API}/broker/keys", token=tokens["admin"])
    _error(a, 405, "method_not_allowed")
    assert "POST" in a.headers["allow"]


def test_bad_bodies(served, tokens) -> None:  # type: ignore[no-untyped-def]
    admin = tokens["admin"]
    _error(call(served.url, "POST", f"{API}/managers", token=admin, raw=b"{not json"), 400,
           "bad_request")
    _error(call(served.url, "POST", f"{API}/managers", token=admin, raw=b"id=m",
                content_type="application/x-www-form-urlencoded"), 415,
           "unsupported_media_type")
    body = _error(call(served.url, "POST", f"{API}/managers", token=admin,
                       body={"id": "Not A Name", "org": "leeds-cc", "title": "Head",
                             "extra": 1}), 422, "invalid")
    assert set(body["fields"]) == {"id", "extra"}
    body = _error(call(served.url, "POST", f"{API}/protocols", token=admin,
                       body={"yaml": "id: x\n"}), 422, "invalid")
    assert body["fields"]
    _error(call(served.url, "POST", f"{API}/managers", token=admin, body=[1, 2]), 422,
           "invalid")
    deep = b"[" * 100_000 + b"]" * 100_000
    _error(call(served.url, "POST", f"{API}/managers", token=admin, raw=deep), 400,
           "bad_request")


def test_conflicts(served, tokens) -> None:  # type: ignore[no-untyped-def]
    admin = tokens["admin"]
    body = {"id": "m-1", "org": "leeds-cc", "title": "Head"}
    assert call(served.url, "POST", f"{API}/managers", token=admin, body=body).status == 201
    _error(call(served.url, "POST", f"{API}/managers", token=admin, body=body), 409,
           "conflict")
    _error(call(served.url, "POST", f"{API}/protocols", token=admin, body={"yaml": wy_text()}),
           409, "conflict")


def test_the_admin_flow_is_recorded_with_the_token(served, tokens) -> None:  # type: ignore[no-untyped-def]
    admin = tokens["admin"]
    steps = [
        ("POST", "/organisations/leeds-cc/units",
         {"id": "youth-justice", "name": "Youth Justice Service", "roles": ["youth-justice"]},
         201),
        ("PUT", "/organisations/leeds-cc/units/youth-justice",
         {"roles": ["youth-justice", "marac"]}, 200),
        ("PUT", "/protocols/wy-iisp-2016/status",
         {"status": "in_force", "ends_at": "2030-01-01T00:00:00Z"}, 200),
        ("POST", "/managers", {"id": "lcc-hos-01", "org": "leeds-cc", "title": "Head"}, 201),
    ]
    for method, path, body, status in steps:
        a = call(served.url, method, API + path, token=admin, body=body)
        assert a.status == status, a.body
    made = new_keys("unit", "leeds-cc/youth-justice")
    sig, enc = made.files["signing"], made.files["encryption"]
    a = call(served.url, "POST", f"{API}/organisations/leeds-cc/units/youth-justice/keys",
             token=admin, body={"signing": sig.to_json(), "encryption": enc.to_json(),
                                "valid_from": "2024-01-01T00:00:00Z"})
    assert (a.status, a.json["keys"]) == (201, [{"key_id": sig.key_id, "use": "signing"},
                                                {"key_id": enc.key_id, "use": "encryption"}])
    _error(call(served.url, "DELETE", f"{API}/organisations/leeds-cc/units/youth-justice",
                token=admin), 409, "conflict")
    for f in (sig, enc):
        a = call(served.url, "POST", f"{API}/keys/{f.key_id}/revoke", token=admin,
                 body={"reason": "team merged"})
        assert a.status == 200
    a = call(served.url, "DELETE", f"{API}/organisations/leeds-cc/units/youth-justice",
             token=admin)
    assert a.status == 200
    history = call(served.url, "GET", f"{API}/history", token=tokens["auditor"]).json
    admin_id = next(t.id for t in served.store.list_tokens() if t.label == "test admin")
    changes = [h for h in history if h["version"] is not None]
    assert [h["action"] for h in changes[2:]] == [
        "add_unit", "set_unit_roles", "set_protocol_status", "register_manager",
        "register_keys", "revoke_key", "revoke_key", "remove_unit"]
    assert {h["actor"] for h in changes[1:]} == {f"token:{admin_id}"}
    assert {h["actor_label"] for h in changes[1:]} == {"test admin"}
    assert changes[-2]["detail"]["reason"] == "team merged"
    assert changes[2]["summary"] == \
        "Added unit leeds-cc/youth-justice with roles youth-justice"
    grants = [h for h in history if h["action"] == "grant_token"]
    assert {g["detail"]["role"] for g in grants} == {"admin", "auditor", "agency"}


def test_key_files_for_another_unit_or_use_are_refused_with_a_reason(served, tokens) -> None:  # type: ignore[no-untyped-def]
    admin = tokens["admin"]
    path = f"{API}/organisations/leeds-cc/units/front-door/keys"
    other = new_keys("unit", "leeds-cc/early-help").files
    mine = new_keys("unit", "leeds-cc/front-door").files
    body = _error(call(served.url, "POST", path, token=admin,
                       body={"signing": other["signing"].to_json()}), 422, "wrong_owner")
    assert "infoshare keys generate --unit leeds-cc/front-door" in body["fields"]["signing"][0]
    _error(call(served.url, "POST", path, token=admin,
                body={"signing": mine["encryption"].to_json(),
                      "encryption": mine["signing"].to_json()}), 422, "wrong_use")
    forged = {**mine["signing"].to_json(), "owner": "leeds-cc/front-door"}
    forged["proof"] = other["signing"].to_json()["proof"]
    body = _error(call(served.url, "POST", path, token=admin, body={"signing": forged}), 422,
                  "invalid")
    assert "signing" in body["fields"]
    assert served.store.directory().keys_of("leeds-cc/front-door", "signing") == []
    manager = new_keys("manager", "leeds-cc", "m-1").files
    _error(call(served.url, "POST", f"{API}/managers/m-1/keys", token=admin,
                body={"signing": manager["signing"].to_json()}), 404, "not_found")
    _error(call(served.url, "POST", f"{API}/broker/keys", token=admin,
                body={"signing": manager["signing"].to_json()}), 422, "wrong_owner")
    broker = new_keys("broker", "broker").files
    a = call(served.url, "POST", f"{API}/broker/keys", token=admin,
             body={"signing": broker["signing"].to_json()})
    assert a.status == 201
    kid = broker["signing"].key_id
    _error(call(served.url, "POST", f"{API}/keys/{kid}/revoke", token=admin,
                body={"reason": "stopping"}), 409, "last_broker_key")
    assert call(served.url, "POST", f"{API}/keys/{kid}/revoke", token=admin,
                body={"reason": "stopping", "last_broker_key": True}).status == 200


def test_repeated_failures_from_one_address_are_throttled(served, tokens) -> None:  # type: ignore[no-untyped-def]
    limit = served.app.config["REGISTRY_AUTH_FAILURE_LIMIT"]
    for _ in range(limit):
        _error(call(served.url, "GET", f"{API}/directory", token="isr_guess"), 401,
               "unauthenticated")
    a = call(served.url, "GET", f"{API}/directory", token="isr_guess")
    _error(a, 429, "throttled")
    window = served.app.config["REGISTRY_AUTH_FAILURE_WINDOW"]
    assert 1 <= int(a.headers["retry-after"]) <= window
    # Judged by what is presented: a valid token from the same address still works.
    assert call(served.url, "GET", f"{API}/directory", token=tokens["admin"]).status == 200
    # Requests without credentials are not guesses and are not counted.
    _error(call(served.url, "GET", f"{API}/directory"), 401, "unauthenticated")


def test_every_request_is_logged_without_secrets(served, tokens, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="registry.requests")
    call(served.url, "GET", f"{API}/directory", token=tokens["agency"])
    call(served.url, "GET", f"{API}/history", token="isr_not-a-token")
    lines = [r.getMessage() for r in caplog.records if r.name == "registry.requests"]
    agency_id = served.store.authenticate(tokens["agency"]).id
    assert f"GET /api/v1/directory 200 token={agency_id}" in lines
    assert "GET /api/v1/history 401 token=-" in lines
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in tokens.values():
        assert secret not in text
    assert "isr_not-a-token" not in text


def test_openapi_document_is_served_without_a_token(served) -> None:  # type: ignore[no-untyped-def]
    a = call(served.url, "GET", "/openapi.json")
    assert a.status == 200 and a.json["openapi"].startswith("3.")
    assert "/api/v1/keys/{key_id}/revoke" in a.json["paths"]
