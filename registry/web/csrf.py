"""A small CSRF guard for the web pages: one random token per session.

Every page form carries it in a hidden field ``csrf_token``; every POST to a
page must send it back, compared in constant time. Together with SameSite
cookies this keeps another site from making a signed-in browser change the
registry. The API needs none of this: it takes bearer tokens, not cookies.
"""

from __future__ import annotations

import hmac
import secrets

from flask import request, session
from werkzeug.exceptions import BadRequest

FIELD = "csrf_token"
_SESSION_KEY = "csrf"


def csrf_token() -> str:
    """This session's token, made on first use."""
    token = session.get(_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = token
    return token


class CsrfFailure(BadRequest):
    description = "the form was not sent from this registry's pages; reload the page and retry"


def check_csrf() -> None:
    """Refuse a POST whose form does not carry this session's token.

    Raises:
        CsrfFailure (400).
    """
    expected = session.get(_SESSION_KEY)
    sent = request.form.get(FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(),
                                                                sent.encode()):
        raise CsrfFailure()
