"""``charge.refunded``: the sale's refunded amount follows Stripe's cumulative
``amount_refunded``, and the partner's commission follows the sale.

The sale is found by payment intent or charge id; a charge of API 2025-03-31 or later
no longer names its invoice, so Stripe's invoice payments tell which invoice the payment
intent paid. A refund seen before its sale waits for it (RetryLater)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from server import conversions
from server.log_config import get_logger
from server.models import Sale
from stripe_app.handlers.attribution import checked_amount, object_id
from stripe_app.registry import EventContext, RetryLater, SkipEvent
from stripe_app.stripe_api import StripeApiUnavailable, get_stripe_api

logger = get_logger(__name__)


def handle_charge_refunded(session: Session, ctx: EventContext) -> None:
    obj = ctx.object
    charge_id = object_id(obj.get("id"))
    payment_intent_id = object_id(obj.get("payment_intent"))
    amount_refunded, currency = obj.get("amount_refunded"), obj.get("currency")
    if not isinstance(amount_refunded, int) or not isinstance(currency, str):
        raise SkipEvent(f"charge {charge_id} has no amount_refunded/currency")
    checked_amount(obj, "amount_refunded", amount_refunded)
    payment_amount = obj.get("amount")
    if isinstance(payment_amount, int):
        checked_amount(obj, "amount", payment_amount)

    sale = _sale_of_charge(session, ctx, obj, charge_id, payment_intent_id)
    conversions.add_payment_ids(
        session, sale, payment_intent_id=payment_intent_id, charge_id=charge_id
    )
    applied = conversions.apply_refund(
        session,
        sale,
        amount_refunded=amount_refunded,
        currency=currency,
        payment_amount=payment_amount if isinstance(payment_amount, int) else None,
    )
    logger.info(
        "stripe.charge_refunded",
        event_id=ctx.event_id,
        sale_id=sale.id,
        applied=applied,
        refunded_amount=sale.refunded_amount,
    )


def _sale_of_charge(
    session: Session,
    ctx: EventContext,
    obj: dict[str, Any],
    charge_id: str | None,
    payment_intent_id: str | None,
) -> Sale:
    sale = conversions.find_sale(
        session,
        ctx.workspace,
        payment_intent_id=payment_intent_id,
        charge_id=charge_id,
        invoice_id=object_id(obj.get("invoice")),  # API versions before 2025-03-31
    )
    looked_up = ""
    if sale is None and payment_intent_id and ctx.account:
        try:
            invoices = get_stripe_api().invoice_ids_for_payment_intent(
                ctx.account, payment_intent_id
            )
        except StripeApiUnavailable as exc:
            # Most often the sale's own event is still on its way: say that first.
            invoices, looked_up = [], f"; Stripe look-up of its invoice: {exc.message}"
        for invoice_id in invoices:
            sale = conversions.find_sale(session, ctx.workspace, invoice_id=invoice_id)
            if sale is not None:
                break
    if sale is None:
        raise RetryLater(
            f"no sale yet for charge {charge_id} (payment intent {payment_intent_id}); "
            "its checkout session or invoice may still be on the way" + looked_up
        )
    return sale
