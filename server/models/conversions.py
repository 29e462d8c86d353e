from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from server.models.base import time_index, utcnow
from server.models.links import MAX_CLICK_ID_LENGTH


def _money() -> Column[int]:
    return Column(BigInteger, nullable=False, default=0)


# Unique keys lead with the id and end with the workspace: a look-up by (id, workspace)
# then has exactly one index whose leading column it constrains, whatever the planner
# knows of the table (see models.base.time_index).


class Customer(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("external_id", "workspace_id"),
        UniqueConstraint("stripe_customer_id", "workspace_id"),
        time_index("ix_customer_ws_created", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id")
    external_id: str = Field(max_length=255)
    stripe_customer_id: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=255)
    link_id: int | None = Field(default=None, foreign_key="link.id")
    click_id: str | None = Field(default=None, max_length=MAX_CLICK_ID_LENGTH)
    livemode: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class Lead(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("customer_id", "event_name"),
        Index("ix_lead_ws_time", "workspace_id", "timestamp", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id")
    customer_id: int = Field(foreign_key="customer.id")
    click_id: str | None = Field(default=None, max_length=MAX_CLICK_ID_LENGTH)
    link_id: int | None = Field(default=None, foreign_key="link.id")
    event_name: str = Field(default="Sign up", max_length=255)
    livemode: bool = True
    timestamp: datetime = Field(default_factory=utcnow)


class Sale(SQLModel, table=True):
    """One payment. Any of its Stripe ids finds it; each is unique per workspace, so the
    same payment seen as a checkout session, an invoice or a trackSale call is one row."""

    __table_args__ = (
        UniqueConstraint("invoice_id", "workspace_id"),
        UniqueConstraint("checkout_session_id", "workspace_id"),
        UniqueConstraint("payment_intent_id", "workspace_id"),
        UniqueConstraint("charge_id", "workspace_id"),
        time_index("ix_sale_ws_time", "timestamp"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id")
    customer_id: int = Field(foreign_key="customer.id")
    click_id: str | None = Field(default=None, max_length=MAX_CLICK_ID_LENGTH)
    link_id: int | None = Field(default=None, foreign_key="link.id")
    event_name: str = Field(default="Purchase", max_length=255)
    original_amount: int = Field(sa_column=_money())
    original_currency: str = Field(max_length=3)
    # Amount in the workspace's reporting currency; None when no rate exists (flagged).
    amount: int | None = Field(default=None, sa_type=BigInteger)
    currency: str = Field(max_length=3)
    fx_rate: str | None = Field(default=None, max_length=40)
    fx_missing: bool = False
    refunded_amount: int = Field(sa_column=_money())
    invoice_id: str | None = Field(default=None, max_length=255)
    checkout_session_id: str | None = Field(default=None, max_length=255)
    payment_intent_id: str | None = Field(default=None, max_length=255)
    charge_id: str | None = Field(default=None, max_length=255)
    livemode: bool = True
    timestamp: datetime = Field(default_factory=utcnow)


class Commission(SQLModel, table=True):
    __table_args__ = (
        Index("ix_commission_ws_created", "workspace_id", "created_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id")
    partner_id: int = Field(foreign_key="partner.id")
    sale_id: int = Field(foreign_key="sale.id", unique=True)
    # Minor units of the sale's original currency. ``amount`` is the sale net of refunds,
    # ``earnings`` the partner's ``rate_bps`` share of it: refunds reduce both pro rata.
    earnings: int = Field(sa_column=_money())
    amount: int = Field(sa_column=_money())
    rate_bps: int = 0
    currency: str = Field(max_length=3)
    status: str = Field(default="pending", max_length=20)
    payout_id: int | None = Field(default=None, foreign_key="payout.id")
    livemode: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class Payout(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    partner_id: int = Field(foreign_key="partner.id")
    amount: int = Field(sa_column=_money())
    currency: str = Field(max_length=3)
    status: str = Field(default="pending", max_length=20)
    created_at: datetime = Field(default_factory=utcnow)


class RollupHourly(SQLModel, table=True):
    """Counters per workspace, hour and mode: the funnel and time series read these, so
    their cost grows with buckets, not events. ``sale_amount`` is in the reporting currency."""

    __table_args__ = (UniqueConstraint("workspace_id", "livemode", "bucket"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id")
    bucket: datetime
    livemode: bool = True
    clicks: int = Field(sa_column=_money())
    leads: int = Field(sa_column=_money())
    sales: int = Field(sa_column=_money())
    sale_amount: int = Field(sa_column=_money())
