"""``checkout.session.completed`` and ``checkout.session.async_payment_succeeded``.

Who bought, in order of precedence: a Payment Link's ``client_reference_id`` of
``codeqr_id_<clickId>``; ``metadata.codeqrCustomerId`` of a custom checkout; a Stripe
customer we know, or that Stripe tells us carries CodeQR metadata. Revenue counts only
once the session is paid; delayed payment methods complete with ``unpaid`` and are paid
by ``checkout.session.async_payment_succeeded``."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from server import conversions
from server.log_config import get_logger
from server.models import Customer
from stripe_app.handlers.attribution import (
    CHECKOUT_EVENT,
    CLIENT_REFERENCE_PREFIX,
    META_CLICK_ID,
    META_CUSTOMER_ID,
    customer_for_payment,
    customer_from_keys,
    metadata,
    object_id,
    payment_amount,
)
from stripe_app.registry import EventContext, SkipEvent

logger = get_logger(__name__)


def handle_checkout_session_completed(session: Session, ctx: EventContext) -> None:
    _checkout(session, ctx, paid=ctx.object.get("payment_status") == "paid")


def handle_checkout_session_async_payment_succeeded(
    session: Session, ctx: EventContext
) -> None:
    _checkout(session, ctx, paid=True)


def _checkout(session: Session, ctx: EventContext, *, paid: bool) -> None:
    obj = ctx.object
    if obj.get("mode") == "setup":
        raise SkipEvent(
            f"checkout session {obj.get('id')} is in setup mode: no payment"
        )

    customer = _checkout_customer(session, ctx, obj)
    amount, currency = payment_amount(obj, "amount_total")
    if not paid or amount <= 0:
        # The customer and its lead are kept; async_payment_succeeded brings the sale.
        logger.info(
            "stripe.checkout_without_revenue",
            event_id=ctx.event_id,
            customer_id=customer.id,
            payment_status=obj.get("payment_status"),
            amount=amount,
        )
        return

    sale = conversions.record_sale(
        session,
        ctx.workspace,
        customer=customer,
        amount=amount,
        currency=currency,
        invoice_id=object_id(obj.get("invoice")),
        checkout_session_id=object_id(obj.get("id")),
        payment_intent_id=object_id(obj.get("payment_intent")),
        livemode=ctx.livemode,
        timestamp=ctx.created,
    )
    logger.debug("stripe.checkout_sale", event_id=ctx.event_id, sale_id=sale.id)


def _checkout_customer(
    session: Session, ctx: EventContext, obj: dict[str, Any]
) -> Customer:
    stripe_customer_id = object_id(obj.get("customer"))
    details = _customer_details(obj, stripe_customer_id)

    reference = obj.get("client_reference_id")
    if isinstance(reference, str) and reference.startswith(CLIENT_REFERENCE_PREFIX):
        return _payment_link_customer(session, ctx, obj, reference, details)

    keys = metadata(obj)
    if keys.get(META_CUSTOMER_ID):
        return customer_from_keys(
            session,
            ctx,
            keys[META_CUSTOMER_ID],
            keys.get(META_CLICK_ID),
            details,
            ctx.created,
        )

    if stripe_customer_id:
        return customer_for_payment(session, ctx, stripe_customer_id)
    raise SkipEvent(
        f"checkout session {obj.get('id')} is not attributed to a CodeQR click "
        f"(no {CLIENT_REFERENCE_PREFIX}… client_reference_id, no metadata.{META_CUSTOMER_ID}, "
        "no customer)"
    )


def _payment_link_customer(
    session: Session,
    ctx: EventContext,
    obj: dict[str, Any],
    reference: str,
    details: dict[str, str | None],
) -> Customer:
    """A Payment Link purchase: the customer's external id is the Stripe customer id
    (else the buyer's email, else the session id), attributed to the click."""
    stripe_customer_id = details["stripe_customer_id"]
    if stripe_customer_id:
        known = conversions.find_customer_by_stripe_id(
            session, ctx.workspace, stripe_customer_id
        )
        if known is not None:
            return known
    external_id = stripe_customer_id or details["email"] or str(obj.get("id"))
    click_id = reference.removeprefix(CLIENT_REFERENCE_PREFIX)
    return customer_from_keys(
        session, ctx, external_id, click_id, details, ctx.created, CHECKOUT_EVENT
    )


def _customer_details(
    obj: dict[str, Any], stripe_customer_id: str | None
) -> dict[str, str | None]:
    details = obj.get("customer_details")
    details = details if isinstance(details, dict) else {}
    email = details.get("email") or obj.get("customer_email")
    name = details.get("name")
    return {
        "stripe_customer_id": stripe_customer_id,
        "email": email if isinstance(email, str) and email else None,
        "name": name if isinstance(name, str) and name else None,
    }
