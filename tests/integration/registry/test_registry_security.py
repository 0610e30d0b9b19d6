"""Regression tests of the registry's security review, over real HTTP.

Each test names the finding it holds shut: the sign-in redirect, sign-out,
caching of secrets, invisible format characters, deep or huge protocol
files, the throttle's lockout of valid tokens, duplicate JSON keys and
non-ASCII digits.
"""

from __future__ import annotations

import logging
import re
import urllib.parse

import pytest
from registry_http import WebSession, call
from registry_testing import with_version, wy_text

pytestmark = pytest.mark.integration

API = "/api/v1"


def browser_target(base: str, location: str) -> urllib.parse.SplitResult:
    """Where a browser goes for ``location``, after the WHATWG URL parser's clean-up.

    The parser strips leading and trailing C0 controls and spaces, removes every
    tab and newline, and reads a backslash as a slash in http(s) URLs.
    """
    cleaned = location.strip("".join(chr(c) for c in range(0x21)))
    cleaned = re.sub(r"[\t\n\r]", "", cleaned).replace("\\", "/")
    return urllib.parse.urlsplit(urllib.parse.urljoin(base + "/", cleaned))


@pytest.mark.parametrize("target", [
    "/\t/evil.example/x", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example",
    "/\\evil.example", "\\\\evil.example", " /\t/evil.example", "/\x00/evil.example",
    "https://evil.example/", "//evil.example", "/%09/x\t/",
])
def test_the_sign_in_redirect_stays_on_this_site(served, target: str) -> None:  # type: ignore[no-untyped-def]
    web = WebSession(served.url)
    answer = web.sign_in(served.admin, target)
    assert answer.status in (302, 303), answer.body
    where = browser_target(served.url, answer.headers["location"])
    here = urllib.parse.urlsplit(served.url)
    assert (where.scheme, where.netloc) == (here.scheme, here.netloc), where
    assert where.path.startswith("/") and not where.path.startswith("//")


def test_an_ordinary_next_path_is_kept(served) -> None:  # type: ignore[no-untyped-def]
    web = WebSession(served.url)
    answer = web.sign_in(served.admin, "/keys?version=0")
    assert browser_target(served.url, answer.headers["location"]).geturl() == \
        served.url + "/keys?version=0"


def test_signing_out_ends_the_session_for_a_copied_cookie(served) -> None:  # type: ignore[no-untyped-def]
    web = WebSession(served.url)
    assert web.sign_in(served.admin).status in (302, 303)
    thief = WebSession(served.url)
    for cookie in web.jar:
        thief.jar.set_cookie(cookie)
    assert thief.request("GET", "/keys").status == 200
    signed_out = web.request("POST", "/sign-out", {"csrf_token": web.csrf("/keys")})
    assert signed_out.status in (302, 303)
    again = thief.request("GET", "/keys")
    assert again.status == 302 and "/sign-in" in again.headers["location"]


def test_api_answers_are_never_cached_and_pages_send_their_policies(served) -> None:  # type: ignore[no-untyped-def]
    created = call(served.url, "POST", f"{API}/tokens", token=served.admin,
                   body={"role": "agency", "label": "cache test"})
    assert created.status == 201
    assert "no-store" in created.headers["cache-control"]
    for answer in (call(served.url, "GET", f"{API}/directory", token=served.admin),
                   call(served.url, "GET", f"{API}/directory"),
                   call(served.url, "GET", f"{API}/no-such-thing", token=served.admin)):
        assert "no-store" in answer.headers["cache-control"], answer.status
    page = WebSession(served.url).request("GET", "/sign-in")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "camera=()" in page.headers["permissions-policy"]
    assert "no-store" in page.headers["cache-control"]


FORMAT_CHARACTERS = ["\u202e", "\u200b", "\u2066", "\ufeff", "\u00ad", "\U000e0041"]


@pytest.mark.parametrize("char", FORMAT_CHARACTERS)
def test_format_characters_are_refused_in_api_bodies(served, char: str) -> None:  # type: ignore[no-untyped-def]
    a = call(served.url, "POST", f"{API}/tokens", token=served.admin,
             body={"role": "agency", "label": f"ops{char}txt.exe"})
    assert a.status == 422, a.body
    assert "label" in a.json["fields"]
    assert call(served.url, "POST", f"{API}/protocols", token=served.admin,
                body={"yaml": wy_text()}).status == 201
    a = call(served.url, "POST", f"{API}/organisations/leeds-cc/units", token=served.admin,
             body={"id": "x-unit", "name": f"Early{char} Help", "roles": ["early-help"]})
    assert a.status == 422 and "name" in a.json["fields"], a.body


@pytest.mark.parametrize("char", FORMAT_CHARACTERS)
def test_format_characters_are_refused_in_protocol_files(served, char: str) -> None:  # type: ignore[no-untyped-def]
    text = wy_text().replace("title: West Yorkshire", f"title: West{char} Yorkshire", 1)
    assert text != wy_text()
    a = call(served.url, "POST", f"{API}/protocols", token=served.admin, body={"yaml": text})
    assert a.status == 422 and "title" in a.json["fields"], a.body


@pytest.mark.parametrize("escaped", ["\\x01", "\\e", "\\u202e"])
def test_control_and_format_characters_written_as_yaml_escapes_are_refused(
        served, escaped: str) -> None:  # type: ignore[no-untyped-def]
    text = re.sub(r"(?m)^approved_by: .*$", lambda _: f'approved_by: "Board{escaped}"',
                  wy_text(), count=1)
    a = call(served.url, "POST", f"{API}/protocols", token=served.admin, body={"yaml": text})
    assert a.status == 422 and "approved_by" in a.json["fields"], a.body


def test_format_characters_are_refused_in_forms(served) -> None:  # type: ignore[no-untyped-def]
    web = WebSession(served.url)
    web.sign_in(served.admin)
    answer = web.request("POST", "/tokens", {"csrf_token": web.csrf("/tokens"),
                                             "role": "agency", "label": "ops\u202etxt"})
    assert answer.status == 422
    assert not [t for t in served.store.list_tokens() if "\u202e" in t.label]


def _deep(depth: int) -> str:
    return wy_text() + "\nsecurity: " + "[" * depth + "]" * depth + "\n"


@pytest.mark.parametrize(("text", "field"), [
    (_deep(5000), "(document)"),
    (wy_text() + "\nretention:\n" + "".join("  " * i + "- \n" for i in range(1, 600)),
     "(document)"),
    (with_version(wy_text(), 1).replace("version: 1", "version: " + "9" * 5000), "(document)"),
    (with_version(wy_text(), 1).replace("version: 1", "version: 99999999999"), "version"),
], ids=["deep-flow", "deep-block", "version-5000-digits", "version-beyond-32-bits"])
def test_deep_or_huge_protocol_files_are_a_422_with_a_reason(served, caplog, text: str,
                                                            field: str) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    a = call(served.url, "POST", f"{API}/protocols", token=served.admin, body={"yaml": text})
    assert a.status == 422, a.body
    assert a.json["error"] == "invalid" and field in a.json["fields"], a.json
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


def test_a_valid_token_still_works_after_many_bad_ones_from_its_address(served) -> None:  # type: ignore[no-untyped-def]
    for _ in range(12):
        bad = call(served.url, "GET", f"{API}/directory", token="isr_guess")
        assert bad.status in (401, 429)
    assert call(served.url, "GET", f"{API}/directory", token="isr_guess").status == 429
    assert call(served.url, "GET", f"{API}/directory", token=served.admin).status == 200
    # Guessing stays slow: every further wrong token is refused until the window passes.
    again = call(served.url, "GET", f"{API}/directory", token="isr_guess-again")
    assert again.status == 429 and int(again.headers["retry-after"]) >= 1


def test_a_valid_token_still_signs_in_after_many_bad_ones(served) -> None:  # type: ignore[no-untyped-def]
    web = WebSession(served.url)
    for _ in range(12):
        web.sign_in("isr_guess")
    assert web.sign_in("isr_guess").status == 429
    assert web.sign_in(served.admin).status in (302, 303)


def test_duplicate_keys_in_a_json_body_are_refused(served) -> None:  # type: ignore[no-untyped-def]
    raw = b'{"role": "admin", "role": "agency", "label": "duplicate"}'
    a = call(served.url, "POST", f"{API}/tokens", token=served.admin, raw=raw)
    assert a.status == 422, a.body
    assert a.json["error"] == "duplicate_key" and "role" in a.json["fields"]
    assert not [t for t in served.store.list_tokens() if t.label == "duplicate"]


@pytest.mark.parametrize("digits", ["\u0661", "\u0967", "\uff11", "1\u0660"])
def test_non_ascii_digits_are_not_version_numbers(served, digits: str) -> None:  # type: ignore[no-untyped-def]
    quoted = urllib.parse.quote(digits)
    a = call(served.url, "GET", f"{API}/directory/{quoted}", token=served.admin)
    assert a.status == 422, a.body
    assert a.json["error"] == "invalid" and "version" in a.json["fields"]
    web = WebSession(served.url)
    web.sign_in(served.admin)
    assert web.request("GET", f"/keys?version={quoted}").status == 422
