"""A few lines of urllib for talking to a served registry in tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def call(base: str, method: str, path: str, *, token: str | None = None,
         body: Any = None, raw: bytes | None = None,
         content_type: str = "application/json") -> Answer:
    headers = {"Accept": "application/json"}
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = content_type
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebSession:
    """A browser's view of the pages over real HTTP: cookies kept, redirects not followed."""

    def __init__(self, base: str) -> None:
        import http.cookiejar

        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect())

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Answer:
        import urllib.parse

        data = None if form is None else urllib.parse.urlencode(form).encode()
        headers = {"Accept": "text/html"}
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=headers)
        try:
            with self.opener.open(req, timeout=30) as r:
                return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            return Answer(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def csrf(self, path: str = "/sign-in") -> str:
        import re

        page = self.request("GET", path).body.decode()
        found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
        assert found, page
        return found.group(1)

    def sign_in(self, token: str, next_path: str = "") -> Answer:
        return self.request("POST", "/sign-in", {"csrf_token": self.csrf(), "token": token,
                                                 "next": next_path})

    def cookies(self) -> dict[str, str]:
        return {c.name: c.value or "" for c in self.jar}
