"""Stripe event handlers, one module per Stripe object family, and the map the worker
dispatches through (:data:`HANDLERS`, merged into :mod:`stripe_app.registry`).

Domain failures become the worker's outcomes in one place (:func:`_outcomes`): a click
not recorded yet and an unreachable Stripe API mean "retry later" (the click may still be
in the redirect's write buffer; a click of another workspace never appears, so such an
event ends dead, never attributed); any other refusal of the domain skips the event with
its message as the reason."""

from __future__ import annotations

import functools

from sqlmodel import Session

from server.conversions import RETRIED_WHOLE, ConversionError, UnknownClick
from stripe_app.handlers.accounts import handle_account_application_deauthorized
from stripe_app.handlers.charges import handle_charge_refunded
from stripe_app.handlers.checkout import (
    handle_checkout_session_async_payment_succeeded,
    handle_checkout_session_completed,
)
from stripe_app.handlers.customers import (
    handle_customer_created,
    handle_customer_updated,
)
from stripe_app.handlers.invoices import handle_invoice_paid
from stripe_app.registry import EventContext, Handler, RetryLater, SkipEvent
from stripe_app.stripe_api import StripeApiError, StripeApiUnavailable


def _outcomes(handler: Handler) -> Handler:
    @functools.wraps(handler)
    def run(session: Session, ctx: EventContext) -> None:
        # Any failure rolls the event's transaction back and the worker retries it.
        session.info[RETRIED_WHOLE] = True
        try:
            handler(session, ctx)
        except UnknownClick as exc:
            raise RetryLater(exc.message) from exc
        except ConversionError as exc:
            raise SkipEvent(exc.message) from exc
        except StripeApiUnavailable as exc:
            raise RetryLater(f"Stripe API look-up failed: {exc.message}") from exc
        except StripeApiError as exc:
            raise SkipEvent(exc.message) from exc

    return run


HANDLERS: dict[str, Handler] = {
    "customer.created": _outcomes(handle_customer_created),
    "customer.updated": _outcomes(handle_customer_updated),
    "checkout.session.completed": _outcomes(handle_checkout_session_completed),
    "checkout.session.async_payment_succeeded": _outcomes(
        handle_checkout_session_async_payment_succeeded
    ),
    "invoice.paid": _outcomes(handle_invoice_paid),
    "charge.refunded": _outcomes(handle_charge_refunded),
    "account.application.deauthorized": _outcomes(
        handle_account_application_deauthorized
    ),
}

__all__ = ["HANDLERS"]
