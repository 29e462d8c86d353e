"""CSRF tokens for the login, logout and consent forms.

The token is a keyed hash of the browser session's id: a form posted without the
session it was rendered for, or with another session's token, is refused."""

from __future__ import annotations

from server.security import constant_time_equal, token_hash

FIELD = "csrf_token"


def token_for(sid: str) -> str:
    return token_hash("csrf:" + sid)


def is_valid(sid: str | None, submitted: object) -> bool:
    if not sid or not isinstance(submitted, str) or len(submitted) != 64:
        return False
    return constant_time_equal(token_for(sid), submitted)
