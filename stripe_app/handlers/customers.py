"""``customer.created`` and ``customer.updated``: a Stripe customer carrying CodeQR
metadata becomes the workspace's customer, with one lead attributed to the click."""

from __future__ import annotations

from sqlmodel import Session

from server import conversions
from server.log_config import get_logger
from stripe_app.handlers.attribution import (
    META_CUSTOMER_ID,
    lead_from_stripe_customer,
    metadata,
    object_id,
    text_or_none,
)
from stripe_app.registry import EventContext

logger = get_logger(__name__)


def handle_customer_created(session: Session, ctx: EventContext) -> None:
    _customer_changed(session, ctx)


def handle_customer_updated(session: Session, ctx: EventContext) -> None:
    _customer_changed(session, ctx)


def _customer_changed(session: Session, ctx: EventContext) -> None:
    obj = ctx.object
    stripe_id = object_id(obj.get("id"))
    if stripe_id and not metadata(obj).get(META_CUSTOMER_ID):
        known = conversions.find_customer_by_stripe_id(
            session, ctx.workspace, stripe_id
        )
        if known is not None:
            # A customer tracked another way (a Payment Link): keep its details current.
            conversions.update_customer(
                session,
                known,
                email=text_or_none(obj.get("email")),
                name=text_or_none(obj.get("name")),
            )
            return
    customer = lead_from_stripe_customer(session, ctx, obj)
    logger.debug(  # conversions logs the lead; worker.event.done the event
        "stripe.customer_tracked",
        event_id=ctx.event_id,
        customer_id=customer.id,
        stripe_customer_id=stripe_id,
    )
