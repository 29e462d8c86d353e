from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from server.models.base import time_index, utcnow


class Partner(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    email: str = Field(max_length=320)
    name: str | None = Field(default=None, max_length=200)
    commission_rate_bps: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Link(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("domain", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    domain: str = Field(max_length=253)
    key: str = Field(max_length=190)
    url: str = Field(max_length=4000)
    track_conversion: bool = False
    partner_id: int | None = Field(default=None, foreign_key="partner.id")
    created_at: datetime = Field(default_factory=utcnow)


# The longest click id any column holds: what is longer can never name a click.
MAX_CLICK_ID_LENGTH = 64


class Click(SQLModel, table=True):
    __table_args__ = (time_index("ix_click_ws_time", "timestamp"),)

    # The click id itself: random, URL-safe, handed to the browser as cq_id.
    id: str = Field(primary_key=True, max_length=MAX_CLICK_ID_LENGTH)
    workspace_id: int = Field(foreign_key="workspace.id")
    link_id: int = Field(foreign_key="link.id", index=True)
    timestamp: datetime = Field(default_factory=utcnow)
    referrer_host: str | None = Field(default=None, max_length=253)
    device: str | None = Field(default=None, max_length=32)
    browser: str | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, max_length=2)
