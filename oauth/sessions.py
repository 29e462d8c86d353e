"""The browser session of the login and consent pages: a signed, timestamped cookie.

The cookie holds a random session id (which the CSRF token is derived from) and, once
logged in, the user id plus a fingerprint of the password hash, so changing a password
ends every session. It is HttpOnly, SameSite=Lax, and Secure outside development."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from server.security import secret_key, token_hash
from server.settings import get_settings

COOKIE_NAME = "codeqr_session"
MAX_AGE_SECONDS = 12 * 3600
_SALT = "codeqr.session.v1"


@dataclass(frozen=True)
class WebSession:
    sid: str
    user_id: int | None = None
    fingerprint: str | None = None

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key(), salt=_SALT)


def password_fingerprint(password_hash: str) -> str:
    return token_hash("session:" + password_hash)[:32]


def anonymous() -> WebSession:
    return WebSession(sid=secrets.token_urlsafe(24))


def logged_in(user_id: int, password_hash: str) -> WebSession:
    """A fresh session id on login, so a session planted before login is useless."""
    return WebSession(
        sid=secrets.token_urlsafe(24),
        user_id=user_id,
        fingerprint=password_fingerprint(password_hash),
    )


def read(request: Request) -> WebSession | None:
    """The session of a valid, unexpired cookie, or None."""
    raw = request.cookies.get(COOKIE_NAME)
    if not raw or len(raw) > 4096:
        return None
    try:
        data: Any = _serializer().loads(raw, max_age=MAX_AGE_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
        return None
    user_id = data.get("uid")
    fingerprint = data.get("fp")
    return WebSession(
        sid=data["sid"],
        user_id=user_id if isinstance(user_id, int) else None,
        fingerprint=fingerprint if isinstance(fingerprint, str) else None,
    )


def write(response: Response, session: WebSession) -> None:
    data: dict[str, Any] = {"sid": session.sid}
    if session.user_id is not None:
        data["uid"] = session.user_id
        data["fp"] = session.fingerprint
    response.set_cookie(
        COOKIE_NAME,
        _serializer().dumps(data),
        max_age=MAX_AGE_SECONDS,
        path="/",
        httponly=True,
        secure=not get_settings().is_development,
        samesite="lax",
    )


def clear(response: Response) -> None:
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        httponly=True,
        secure=not get_settings().is_development,
        samesite="lax",
    )
