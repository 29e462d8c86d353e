from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from server.models.base import utcnow

PLANS = ("free", "pro", "business", "advanced", "enterprise")
_CONVERSION_PLANS = frozenset({"business", "advanced", "enterprise"})


def plan_allows_conversions(plan: str) -> bool:
    """Conversion tracking needs the Business plan or higher."""
    return plan in _CONVERSION_PLANS


class Workspace(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    plan: str = Field(default="free", max_length=20)
    reporting_currency: str = Field(default="USD", max_length=3)
    # One Stripe account links to one workspace: unique, nullable.
    stripe_account_id: str | None = Field(default=None, max_length=64, unique=True)
    stripe_connected_at: datetime | None = None
    commission_rate_bps: int = Field(default=1000)
    created_at: datetime = Field(default_factory=utcnow)
