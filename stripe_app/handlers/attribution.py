"""What the handlers share: reading CodeQR's keys from Stripe objects, finding the
customer a payment belongs to, and the payment's amount.

The public convention (DESIGN.md): ``metadata.codeqrCustomerId`` + ``metadata.codeqrClickId``
on a Stripe customer or checkout session, or ``client_reference_id=codeqr_id_<clickId>``
on a Payment Link's checkout session."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from server import conversions
from server.log_config import get_logger
from server.models import Customer
from server.models.links import MAX_CLICK_ID_LENGTH
from stripe_app.registry import EventContext, RetryLater, SkipEvent
from stripe_app.stripe_api import get_stripe_api

logger = get_logger(__name__)

META_CUSTOMER_ID = "codeqrCustomerId"
META_CLICK_ID = "codeqrClickId"
CLIENT_REFERENCE_PREFIX = "codeqr_id_"
SIGN_UP_EVENT = "Sign up"  # the lead of a Stripe customer carrying CodeQR metadata
CHECKOUT_EVENT = "Checkout"  # the lead of a Payment Link purchase


def object_id(value: Any) -> str | None:
    """An id field that may be a string, an expanded object or null."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def metadata(obj: dict[str, Any]) -> dict[str, str]:
    raw = obj.get("metadata")
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items() if isinstance(v, str) and v}


# Stripe amounts have at most 12 digits (docs.stripe.com/currencies, "Minimum and
# maximum charge amounts"); anything larger is not a payment, and would overflow sums.
MAX_AMOUNT = 10**12 - 1
# Unix time of 2106-02-07: beyond any real Stripe timestamp, within every datetime.
_MAX_TIMESTAMP = 2**32 - 1
_CLICK_ID = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_CLICK_ID_LENGTH}}}$")


def timestamp(value: Any, default: datetime) -> datetime:
    """A Stripe unix timestamp as aware UTC, or ``default`` (also for one no real
    Stripe object carries)."""
    real = isinstance(value, int) and not isinstance(value, bool)
    if real and 0 < value <= _MAX_TIMESTAMP:
        return datetime.fromtimestamp(value, UTC)
    return default


def checked_amount(obj: dict[str, Any], field: str, amount: int) -> int:
    """``amount`` when it can be a Stripe amount; else the event is skipped."""
    if not 0 <= amount <= MAX_AMOUNT:
        raise SkipEvent(
            f"{obj.get('object')} {obj.get('id')} has {field} {amount}, outside "
            f"0..{MAX_AMOUNT}: not an amount Stripe sends"
        )
    return amount


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "…"


def payment_amount(obj: dict[str, Any], field: str) -> tuple[int, str]:
    """The amount in the merchant's currency: Adaptive Pricing's legacy
    ``currency_conversion`` when present (the object's own amount was then in the
    buyer's currency), else ``obj[field]`` in ``obj.currency``."""
    legacy = obj.get("currency_conversion")
    if isinstance(legacy, dict):
        amount, source = legacy.get("amount_total"), legacy.get("source_currency")
        if isinstance(amount, int) and isinstance(source, str):
            return checked_amount(
                obj, "currency_conversion.amount_total", amount
            ), source
    amount, currency = obj.get(field), obj.get("currency")
    if not isinstance(amount, int) or not isinstance(currency, str):
        raise SkipEvent(f"{obj.get('object')} {obj.get('id')} has no {field}/currency")
    return checked_amount(obj, field, amount), currency


def lead_from_stripe_customer(
    session: Session, ctx: EventContext, stripe_customer: dict[str, Any]
) -> Customer:
    """The customer named by a Stripe customer's CodeQR metadata (and its lead when the
    metadata names the click). Raises SkipEvent without metadata, RetryLater when the
    click or the customer is not recorded yet."""
    stripe_id = object_id(stripe_customer.get("id"))
    keys = metadata(stripe_customer)
    external_id = keys.get(META_CUSTOMER_ID)
    if not external_id:
        raise SkipEvent(
            f"Stripe customer {stripe_id} has no metadata.{META_CUSTOMER_ID}: "
            "not attributed to a CodeQR click"
        )
    details = {
        "stripe_customer_id": stripe_id,
        "email": text_or_none(stripe_customer.get("email")),
        "name": text_or_none(stripe_customer.get("name")),
    }
    moment = timestamp(stripe_customer.get("created"), ctx.created)
    return customer_from_keys(
        session, ctx, external_id, keys.get(META_CLICK_ID), details, moment
    )


def customer_from_keys(
    session: Session,
    ctx: EventContext,
    external_id: str,
    click_id: str | None,
    details: dict[str, str | None],
    moment: datetime,
    event_name: str = SIGN_UP_EVENT,
) -> Customer:
    """With a click id: record the lead (customer upserted, attributed to the click).
    Without: the customer must exist already (tracked through ``trackLead``)."""
    if click_id and not _CLICK_ID.match(click_id):
        raise SkipEvent(
            f"click id {_shown(click_id)!r} is not a CodeQR click id (1 to "
            f"{MAX_CLICK_ID_LENGTH} letters, digits, '-' or '_'): no click can have it"
        )
    if click_id:
        return conversions.record_customer_lead(
            session,
            ctx.workspace,
            click_id=click_id,
            customer_external_id=external_id,
            event_name=event_name,
            customer_name=details.get("name"),
            customer_email=details.get("email"),
            stripe_customer_id=details.get("stripe_customer_id"),
            livemode=ctx.livemode,
            timestamp=moment,
        )

    customer = conversions.find_customer(session, ctx.workspace, external_id)
    if customer is None:
        raise RetryLater(
            f"customer {external_id!r} is not tracked yet (no lead for it); "
            f"waiting for trackLead or an event with metadata.{META_CLICK_ID}"
        )
    return conversions.update_customer(
        session,
        customer,
        stripe_customer_id=details.get("stripe_customer_id"),
        email=details.get("email"),
        name=details.get("name"),
    )


def customer_for_payment(
    session: Session, ctx: EventContext, stripe_customer_id: str
) -> Customer:
    """The tracked customer behind a Stripe customer id: known already, or found by
    asking Stripe for the customer's metadata (events arrive in any order)."""
    known = conversions.find_customer_by_stripe_id(
        session, ctx.workspace, stripe_customer_id
    )
    if known is not None:
        return known

    assert ctx.account is not None
    stripe_customer = get_stripe_api().retrieve_customer(
        ctx.account, stripe_customer_id
    )
    if stripe_customer is None:
        raise SkipEvent(
            f"Stripe customer {stripe_customer_id} does not exist for {ctx.account}: "
            "not attributed to a CodeQR click"
        )
    logger.info(
        "stripe.customer_looked_up",
        event_id=ctx.event_id,
        stripe_customer_id=stripe_customer_id,
        tracked=bool(metadata(stripe_customer).get(META_CUSTOMER_ID)),
    )
    return lead_from_stripe_customer(session, ctx, stripe_customer)


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
