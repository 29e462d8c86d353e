"""``invoice.paid``: a sale for the customer behind the invoice's Stripe customer.

A $0 invoice (a trial) is no sale; the first paid one after it is, attributed like every
sale of that customer to the customer's original click. Since API 2025-03-31 invoices no
longer carry ``payment_intent``/``charge``; older payloads do, and those ids are kept."""

from __future__ import annotations

from sqlmodel import Session

from server import conversions
from server.log_config import get_logger
from stripe_app.handlers.attribution import (
    customer_for_payment,
    object_id,
    payment_amount,
    timestamp,
)
from stripe_app.registry import EventContext, SkipEvent

logger = get_logger(__name__)


def handle_invoice_paid(session: Session, ctx: EventContext) -> None:
    obj = ctx.object
    invoice_id = object_id(obj.get("id"))
    amount, currency = payment_amount(obj, "amount_paid")
    if amount <= 0:
        raise SkipEvent(
            f"invoice {invoice_id} paid 0 {currency} (trial or free): no sale"
        )

    stripe_customer_id = object_id(obj.get("customer"))
    if stripe_customer_id is None:
        raise SkipEvent(f"invoice {invoice_id} has no customer: not attributable")
    customer = customer_for_payment(session, ctx, stripe_customer_id)

    transitions = obj.get("status_transitions")
    paid_at = transitions.get("paid_at") if isinstance(transitions, dict) else None
    sale = conversions.record_sale(
        session,
        ctx.workspace,
        customer=customer,
        amount=amount,
        currency=currency,
        invoice_id=invoice_id,
        payment_intent_id=object_id(obj.get("payment_intent")),
        charge_id=object_id(obj.get("charge")),
        livemode=ctx.livemode,
        timestamp=timestamp(paid_at, ctx.created),
    )
    logger.debug("stripe.invoice_sale", event_id=ctx.event_id, sale_id=sale.id)
