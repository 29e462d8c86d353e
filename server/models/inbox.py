from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from server.models.base import utcnow


class InboxStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"
    DEAD = "dead"


class StripeEvent(SQLModel, table=True):
    """The durable webhook inbox, keyed by Stripe's event id so a redelivery is a no-op."""

    __tablename__ = "stripe_event"
    __table_args__ = (
        Index("ix_stripe_event_due", "status", "next_attempt_at"),
        # The claim's look-up of the keys leased right now: live leases are the few
        # rows with a future locked_until (finished rows have none).
        Index("ix_stripe_event_leased", "locked_until", "ordering_key"),
    )

    id: str = Field(primary_key=True, max_length=255)
    type: str = Field(max_length=255)
    account: str | None = Field(default=None, max_length=255)
    # The account and the Stripe customer (or object) the event is about: a worker never
    # takes an event while another holds one of the same key (NULL: no constraint).
    ordering_key: str | None = Field(default=None, max_length=255)
    livemode: bool = False
    created: int = 0
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=InboxStatus.PENDING, max_length=16)
    reason: str | None = Field(default=None, max_length=500)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    locked_until: datetime | None = None
    workspace_id: int | None = None
    received_at: datetime = Field(default_factory=utcnow)
    processed_at: datetime | None = None
