"""Who is calling the API: a bearer token (API key or OAuth access token) resolved to one
workspace and its scopes. Tokens are looked up by their keyed hash, never stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from server.models import ApiKey, utcnow
from server.security import token_hash

ALL_SCOPES = ("conversions:read", "conversions:write")


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
    """Resolve a bearer token, or None when it is unknown, revoked or expired."""
    if not token or len(token) > 512:
        return None
    digest = token_hash(token)
    key = session.exec(select(ApiKey).where(ApiKey.token_hash == digest)).first()
    if key is not None and key.revoked_at is None:
        return Principal(
            workspace_id=key.workspace_id,
            scopes=frozenset(key.scope.split()),
            kind="api_key",
        )
    # OAuth access tokens: see oauth.tokens (TODO(#3) until the authorization server lands).
    return None


def parse_authorization(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
