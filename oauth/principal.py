"""Who is calling the API: a bearer token (API key or OAuth access token) resolved to one
workspace and its scopes. Tokens are looked up by their keyed hash, never stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, select
from sqlmodel import Session

from oauth.tokens import ACCESS_TOKEN_PREFIX, active_access_token
from server.models import ApiKey, utcnow
from server.security import token_hash

ALL_SCOPES = ("conversions:read", "conversions:write")
_MAX_TOKEN_LENGTH = 512

_API_KEYS: Table = ApiKey.__table__  # type: ignore[attr-defined]
# Built once, three columns, no ORM object: on every API call the check costs one
# indexed round trip and little else.
_API_KEY_BY_HASH = select(
    _API_KEYS.c.workspace_id, _API_KEYS.c.scope, _API_KEYS.c.revoked_at
).where(_API_KEYS.c.token_hash == bindparam("hash", type_=_API_KEYS.c.token_hash.type))


@dataclass(frozen=True)
class Principal:
    workspace_id: int
    scopes: frozenset[str]
    kind: str  # "api_key" | "oauth"
    expires_at: datetime | None = None
    user_id: int | None = None
    client_id: str | None = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or utcnow()) >= self.expires_at


def authenticate_bearer(session: Session, token: str) -> Principal | None:
    """Resolve a bearer token, or None when it is unknown, revoked or expired.

    One indexed query either way: OAuth access tokens carry their own prefix, so an API
    key is never looked up among OAuth tokens or the other way round."""
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        return None
    if token.startswith(ACCESS_TOKEN_PREFIX):
        return _oauth_principal(session, token)
    key = (
        session.connection()
        .execute(_API_KEY_BY_HASH, {"hash": token_hash(token)})
        .first()
    )
    if key is None or key.revoked_at is not None:
        return None
    return Principal(
        workspace_id=key.workspace_id,
        scopes=frozenset(key.scope.split()),
        kind="api_key",
    )


def _oauth_principal(session: Session, token: str) -> Principal | None:
    row = active_access_token(session, token)
    if row is None:
        return None
    return Principal(
        workspace_id=row.workspace_id,
        scopes=frozenset(row.scope.split()),
        kind="oauth",
        expires_at=row.access_expires_at,
        user_id=row.user_id,
        client_id=row.client_id,
    )


def parse_authorization(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
