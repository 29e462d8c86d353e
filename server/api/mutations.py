"""The write side: trackLead and trackSale, the server-side SDK path of a merchant.

Each mutation is one transaction in the thread pool (server.conversions does the work);
bus notifications go out after the commit, so live subscribers never hear of a row that
was rolled back."""

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, TypeVar

import strawberry
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from server import conversions
from server.api.context import WRITE_SCOPE, ApiInfo, require
from server.api.errors import ApiError, BadUserInput, NotFound, from_conversion_error
from server.api.fields import mutation
from server.api.objects import Customer, Lead, Sale
from server.bus import BusEvent, get_bus, take_pending
from server.clicks import get_click_writer
from server.currency import is_iso_currency
from server.db import session_scope
from server.log_config import get_logger
from server.models import Customer as CustomerRow
from server.models import Lead as LeadRow
from server.models import Sale as SaleRow
from server.models import Workspace
from server.models.links import MAX_CLICK_ID_LENGTH
from server.settings import get_settings

logger = get_logger(__name__)

T = TypeVar("T")

MAX_TEXT = 255
MAX_EMAIL = 320


@strawberry.input(description="A conversion from a click to a customer (a sign-up).")
class TrackLeadInput:
    click_id: str = strawberry.field(
        description="The click id the short link appended to the landing page as "
        "`cq_id` (kept by analytics.js in the cq_id cookie)."
    )
    event_name: str = strawberry.field(
        default="Sign up",
        description="Name of the lead event; one lead per customer and name.",
    )
    customer_external_id: str = strawberry.field(
        description="Your own id for the customer (unique in the workspace)."
    )
    customer_name: str | None = strawberry.field(
        default=None, description="The customer's name."
    )
    customer_email: str | None = strawberry.field(
        default=None, description="The customer's email address."
    )


@strawberry.input(description="A payment by a customer already tracked as a lead.")
class TrackSaleInput:
    customer_external_id: str = strawberry.field(
        description="The id given as customerExternalId to trackLead."
    )
    amount: int = strawberry.field(
        description="Amount paid in minor units of `currency` (e.g. cents); 0 to "
        "2147483647 (a GraphQL Int)."
    )
    currency: str = strawberry.field(
        default="USD",
        description="ISO 4217 code of `amount`, e.g. USD or jpy; a code not on "
        "today's ISO 4217 list is BAD_USER_INPUT.",
    )
    invoice_id: str | None = strawberry.field(
        default=None,
        description="Your invoice or Stripe invoice id: a second call, or a Stripe "
        "event, with the same id records no second sale.",
    )
    event_name: str = strawberry.field(
        default="Purchase", description="Name of the sale event."
    )


@strawberry.type(description="The result of trackLead.")
class TrackLeadPayload:
    lead: Lead = strawberry.field(description="The lead (the existing one on replay).")
    customer: Customer = strawberry.field(description="The customer, as now stored.")


@strawberry.type(description="The result of trackSale.")
class TrackSalePayload:
    sale: Sale = strawberry.field(description="The sale (the existing one on replay).")
    customer: Customer = strawberry.field(description="The customer who paid.")


def _check_text(name: str, value: str | None, limit: int, *, required: bool) -> None:
    if value is None and not required:
        return
    if value is None or not value.strip() or len(value) > limit:
        raise BadUserInput(f"{name} must be 1 to {limit} characters, not blank.")


def _check_lead(data: TrackLeadInput) -> None:
    _check_text("clickId", data.click_id, MAX_CLICK_ID_LENGTH, required=True)
    _check_text(
        "customerExternalId", data.customer_external_id, MAX_TEXT, required=True
    )
    _check_text("eventName", data.event_name, MAX_TEXT, required=True)
    _check_text("customerName", data.customer_name, MAX_TEXT, required=False)
    _check_text("customerEmail", data.customer_email, MAX_EMAIL, required=False)


def _check_sale(data: TrackSaleInput) -> None:
    _check_text(
        "customerExternalId", data.customer_external_id, MAX_TEXT, required=True
    )
    _check_text("eventName", data.event_name, MAX_TEXT, required=True)
    _check_text("invoiceId", data.invoice_id, MAX_TEXT, required=False)
    if data.amount < 0:
        raise BadUserInput(f"amount must be >= 0 (minor units), got {data.amount}.")
    code = data.currency
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise BadUserInput(
            f"currency must be a 3-letter ISO 4217 code such as USD, got {code!r}."
        )
    if not is_iso_currency(code):
        raise BadUserInput(
            f"currency {code!r} is not an ISO 4217 currency; use a code such as USD."
        )


def _in_transaction(
    workspace_id: int, work: Callable[[Session, Workspace], T]
) -> tuple[T, list[BusEvent]]:
    """Run ``work`` in one transaction; return its result and the events to publish."""
    with session_scope() as session:
        workspace = session.get(Workspace, workspace_id)
        if workspace is None:
            raise NotFound("The token's workspace no longer exists.")
        result = work(session, workspace)
        events = take_pending(session)
    return result, events


async def _run(workspace_id: int, work: Callable[[Session, Workspace], T]) -> T:
    try:
        result, events = await run_in_threadpool(_in_transaction, workspace_id, work)
    except conversions.ConversionError as exc:
        raise from_conversion_error(exc) from exc
    await _publish(events)
    return result


async def _publish(events: list[BusEvent]) -> None:
    if not events:
        return
    try:
        await get_bus().publish(events)
    except Exception:
        # The rows are committed and stay queryable; only the live notice is lost.
        logger.exception("api.publish_failed", events=len(events))


def _record_lead(
    data: TrackLeadInput,
) -> Callable[[Session, Workspace], tuple[LeadRow, CustomerRow]]:
    def work(session: Session, workspace: Workspace) -> tuple[LeadRow, CustomerRow]:
        lead = conversions.record_lead(
            session,
            workspace,
            click_id=data.click_id,
            customer_external_id=data.customer_external_id,
            event_name=data.event_name,
            customer_name=data.customer_name,
            customer_email=data.customer_email,
        )
        customer = session.get(CustomerRow, lead.customer_id)
        assert customer is not None
        return lead, customer

    return work


def _record_sale(
    data: TrackSaleInput,
) -> Callable[[Session, Workspace], tuple[SaleRow, CustomerRow]]:
    def work(session: Session, workspace: Workspace) -> tuple[SaleRow, CustomerRow]:
        conversions.require_plan(workspace)
        customer = conversions.find_customer(
            session, workspace, data.customer_external_id
        )
        if customer is None:
            raise NotFound(
                f"customer {data.customer_external_id!r} does not exist in this "
                "workspace; track it with trackLead first."
            )
        sale = conversions.record_sale(
            session,
            workspace,
            customer=customer,
            amount=data.amount,
            currency=data.currency,
            event_name=data.event_name,
            invoice_id=data.invoice_id,
            livemode=customer.livemode,  # a test-mode customer pays in test mode
        )
        return sale, customer

    return work


async def _flush_clicks() -> None:
    """Clicks are written in batches: a click made a moment ago may still be queued."""
    await get_click_writer().flush()


def _pauses_for_a_click() -> list[Callable[[], Awaitable[None]]]:
    """What to do, in turn, before trying again a lead whose click is unknown: write
    this process's batch, then wait for another process of this server (``serve
    --workers N``, another host) to write its own, a few of its flush intervals, at most
    about a second in all."""
    interval = max(get_settings().click_flush_interval_seconds, 0.01)
    waits = [min(interval * factor, 0.5) for factor in (2, 4, 8)]
    return [_flush_clicks, *(partial(asyncio.sleep, wait) for wait in waits)]


async def _run_waiting_for_click(
    workspace_id: int, work: Callable[[Session, Workspace], T]
) -> T:
    """Run ``work``; while its click is unknown, pause as above and try again. The last
    NOT_FOUND stands."""
    for pause in _pauses_for_a_click():
        try:
            return await _run(workspace_id, work)
        except ApiError as exc:
            if not isinstance(exc.__cause__, conversions.UnknownClick):
                raise
        await pause()
    return await _run(workspace_id, work)


@strawberry.type(
    description="Conversion tracking (needs the conversions:write scope and the "
    "Business plan or higher)."
)
class Mutation:
    @mutation(
        description="Record that the visitor of a click became a customer. The "
        "customer is created or updated and attributed to the click's link. A click "
        "redirected a moment ago is waited for (up to about a second) while the "
        "server writes it. Errors: NOT_FOUND (no such click in this workspace), "
        "PLAN_REQUIRED, BAD_USER_INPUT."
    )
    async def track_lead(
        self,
        info: ApiInfo,
        input: Annotated[
            TrackLeadInput, strawberry.argument(description="The lead to record.")
        ],
    ) -> TrackLeadPayload:
        principal = require(info, WRITE_SCOPE)
        _check_lead(input)
        lead, customer = await _run_waiting_for_click(
            principal.workspace_id, _record_lead(input)
        )
        logger.info(
            "api.lead_tracked", workspace_id=principal.workspace_id, lead_id=lead.id
        )
        return TrackLeadPayload(
            lead=Lead.from_row(lead), customer=Customer.from_row(customer)
        )

    @mutation(
        description="Record a payment by a customer tracked with trackLead; it is "
        "attributed to that customer's click and link, in the customer's mode (live or "
        "Stripe test mode). The same invoiceId twice is one sale. Errors: NOT_FOUND (unknown customer), PLAN_REQUIRED, BAD_USER_INPUT."
    )
    async def track_sale(
        self,
        info: ApiInfo,
        input: Annotated[
            TrackSaleInput, strawberry.argument(description="The sale to record.")
        ],
    ) -> TrackSalePayload:
        principal = require(info, WRITE_SCOPE)
        _check_sale(input)
        sale, customer = await _run(principal.workspace_id, _record_sale(input))
        logger.info(
            "api.sale_tracked", workspace_id=principal.workspace_id, sale_id=sale.id
        )
        return TrackSalePayload(
            sale=Sale.from_row(sale), customer=Customer.from_row(customer)
        )
