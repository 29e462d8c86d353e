from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from server.models.base import utcnow


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


class OAuthClient(SQLModel, table=True):
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


class OAuthCode(SQLModel, table=True):
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


class OAuthToken(SQLModel, table=True):
    """One issued pair. ``family_id`` groups every pair descended from one code, so a
    replayed code or a reused refresh token revokes the whole family."""

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
