"""Users, memberships, API keys and the OAuth tables.

The OAuth tables declare their columns as SQLModel fields and implement the methods
Authlib calls on clients, codes and tokens; Authlib's own SQLAlchemy column mixins do not
work on SQLModel tables. Every secret (client secret, code, access and refresh token) is
stored as its keyed hash (``server.security.token_hash``), never in clear."""

from __future__ import annotations

import json
from datetime import datetime

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from server.models.base import utcnow
from server.security import constant_time_equal, token_hash

ROLES = ("owner", "member")
GRANT_TYPES = ("authorization_code", "refresh_token")


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    password_hash: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow)


class Membership(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("user_id", "workspace_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    role: str = Field(default="member", max_length=16)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    # HMAC-SHA-256 of the token under SECRET_KEY: fast, keyed, never the token itself.
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)
    scope: str = Field(default="conversions:read conversions:write", max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class OAuthClient(SQLModel, ClientMixin, table=True):  # type: ignore[misc]
    """A registered client. Public clients (the Stripe App) authenticate with ``none``
    and have no secret; confidential ones use Basic or ``client_secret_post``."""

    __tablename__ = "oauth_client"

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(max_length=64, unique=True, index=True)
    client_secret_hash: str | None = Field(default=None, max_length=64)
    name: str = Field(max_length=200)
    redirect_uris: str = Field(sa_column=Column(Text, nullable=False))  # JSON list
    scope: str = Field(default="", max_length=500)
    is_public: bool = False
    requires_business_plan: bool = False
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def redirect_uri_list(self) -> list[str]:
        uris: list[str] = json.loads(self.redirect_uris)
        return uris

    @property
    def scope_list(self) -> list[str]:
        return self.scope.split()

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        """Only a client with exactly one registered URI may omit ``redirect_uri``."""
        uris = self.redirect_uri_list
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scope when every part is allowed (None: ``invalid_scope``);
        an omitted scope means every scope the client was registered with."""
        if not scope:
            return self.scope
        requested = list(dict.fromkeys(scope.split()))
        if not set(requested) <= set(self.scope_list):
            return None
        return " ".join(requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string comparison with one of the registered URIs (RFC 9700 §2.1)."""
        matches = [constant_time_equal(redirect_uri, u) for u in self.redirect_uri_list]
        return any(matches)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.is_public or not self.client_secret_hash:
            return False
        return constant_time_equal(token_hash(client_secret), self.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.is_public:
            return method == "none"
        return method in {"client_secret_basic", "client_secret_post"}

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES


class OAuthCode(SQLModel, AuthorizationCodeMixin, table=True):  # type: ignore[misc]
    """An authorization code: single use (``used_at``), short-lived, bound to client,
    redirect URI, PKCE challenge, user and workspace. ``redirect_uri`` is empty when the
    authorization request omitted it."""

    __tablename__ = "oauth_code"

    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(max_length=64, unique=True)
    client_id: str = Field(max_length=64)
    redirect_uri: str = Field(max_length=2000)
    scope: str = Field(default="", max_length=500)
    user_id: int = Field(foreign_key="user.id")
    workspace_id: int = Field(foreign_key="workspace.id")
    code_challenge: str = Field(max_length=128)
    code_challenge_method: str = Field(default="S256", max_length=10)
    expires_at: datetime
    used_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) >= self.expires_at


class OAuthToken(SQLModel, TokenMixin, table=True):  # type: ignore[misc]
    """One issued pair. ``family_id`` groups every pair descended from one code, so a
    replayed code or a reused refresh token revokes the whole family. ``revoked_at``
    ends the pair; ``access_revoked_at`` ends only its access token (RFC 7009 revocation
    of an access token); ``rotated_at`` marks a refresh token that was exchanged."""

    __tablename__ = "oauth_token"

    id: int | None = Field(default=None, primary_key=True)
    family_id: str = Field(max_length=64, index=True)
    code_id: int | None = Field(default=None, foreign_key="oauth_code.id")
    client_id: str = Field(max_length=64, index=True)
    user_id: int = Field(foreign_key="user.id")
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    scope: str = Field(default="", max_length=500)
    access_token_hash: str = Field(max_length=64, unique=True)
    refresh_token_hash: str | None = Field(default=None, max_length=64, unique=True)
    issued_at: datetime = Field(default_factory=utcnow)
    access_expires_at: datetime
    refresh_expires_at: datetime | None = None
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None
    access_revoked_at: datetime | None = None

    def check_client(self, client: OAuthClient) -> bool:
        return constant_time_equal(self.client_id, client.get_client_id())

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int((self.access_expires_at - self.issued_at).total_seconds())

    def is_expired(self) -> bool:
        return utcnow() >= self.access_expires_at

    def is_revoked(self) -> bool:
        return self.revoked_at is not None or self.access_revoked_at is not None

    def refresh_is_usable(self, now: datetime | None = None) -> bool:
        """The refresh token may be exchanged: not revoked, rotated or expired."""
        now = now or utcnow()
        expires = self.refresh_expires_at
        return (
            self.revoked_at is None
            and self.rotated_at is None
            and (expires is None or now < expires)
        )
