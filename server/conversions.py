"""The attribution domain: customers, leads, sales, refunds and commissions.

Shared by the Stripe webhook handlers and the GraphQL ``trackLead``/``trackSale`` mutations.
Every function works inside the caller's session (one transaction), relies on unique
indexes rather than check-then-insert, and parks bus notifications with
``server.bus.emit`` for the caller to publish after the commit.

TODO(#2): interface fixed, bodies land with the webhook handlers."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from server.models import Customer, Lead, Sale, Workspace


class ConversionError(Exception):
    """Base of the domain's expected failures; ``code`` becomes the GraphQL error code."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownClick(ConversionError):
    """The click id does not exist in this workspace (other workspaces' clicks never match)."""

    code = "NOT_FOUND"


class UnknownCustomer(ConversionError):
    code = "NOT_FOUND"


class PlanRequired(ConversionError):
    code = "PLAN_REQUIRED"


def record_lead(
    session: Session,
    workspace: Workspace,
    *,
    click_id: str,
    customer_external_id: str,
    event_name: str = "Sign up",
    customer_name: str | None = None,
    customer_email: str | None = None,
    stripe_customer_id: str | None = None,
    livemode: bool = True,
    timestamp: datetime | None = None,
) -> Lead:
    """Upsert the customer (attributed to the click's link) and its one lead per event
    name. Raises UnknownClick when the click is not in this workspace."""
    raise NotImplementedError


def record_sale(
    session: Session,
    workspace: Workspace,
    *,
    customer: Customer,
    amount: int,
    currency: str,
    event_name: str = "Purchase",
    invoice_id: str | None = None,
    checkout_session_id: str | None = None,
    payment_intent_id: str | None = None,
    charge_id: str | None = None,
    livemode: bool = True,
    timestamp: datetime | None = None,
) -> Sale:
    """One payment is one sale: if any of the given ids already names a sale of this
    workspace, fill in the missing ids and return it; otherwise insert it (converted to
    the reporting currency), credit the link's partner, bump the rollups."""
    raise NotImplementedError


def find_customer(
    session: Session, workspace: Workspace, external_id: str
) -> Customer | None:
    raise NotImplementedError
