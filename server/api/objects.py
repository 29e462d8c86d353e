"""The GraphQL object types, built from storage rows. Related rows (link, customer,
partner) are resolved through the request's DataLoaders, scoped to the caller's workspace."""

import base64
import binascii
from datetime import datetime
from enum import Enum
from typing import Generic, NewType, TypeVar

import strawberry

from server.api.context import ApiInfo
from server.api.fields import field
from server.models import Click as ClickRow
from server.models import Commission as CommissionRow
from server.models import Customer as CustomerRow
from server.models import Lead as LeadRow
from server.models import Link as LinkRow
from server.models import Partner as PartnerRow
from server.models import Payout as PayoutRow
from server.models import Sale as SaleRow
from server.models import Workspace as WorkspaceRow
from server.models import plan_allows_conversions
from server.settings import get_settings

BigInt = NewType("BigInt", int)

NodeT = TypeVar("NodeT")


# --- global ids -------------------------------------------------------------------------


def global_id(type_name: str, pk: int | str | None) -> strawberry.ID:
    raw = f"{type_name}:{pk}".encode()
    return strawberry.ID(base64.urlsafe_b64encode(raw).decode().rstrip("="))


def parse_global_id(value: str) -> tuple[str, str] | None:
    """(type name, primary key) of an id made by :func:`global_id`, or None."""
    if len(value) > 200:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeError):
        return None
    type_name, sep, pk = raw.partition(":")
    return (type_name, pk) if sep and pk else None


# --- enums ------------------------------------------------------------------------------


@strawberry.enum(description="The kinds of conversion event, in funnel order.")
class EventKind(Enum):
    CLICK = strawberry.enum_value(
        "CLICK", description="A visit through a short link (one redirect)."
    )
    LEAD = strawberry.enum_value(
        "LEAD", description="A customer signed up after a click (trackLead or Stripe)."
    )
    SALE = strawberry.enum_value(
        "SALE", description="A payment by a customer (trackSale or Stripe)."
    )


@strawberry.enum(description="The width of a time series bucket.")
class Interval(Enum):
    HOUR = strawberry.enum_value("HOUR", description="One bucket per hour.")
    DAY = strawberry.enum_value(
        "DAY", description="One bucket per calendar day in the requested time zone."
    )
    MONTH = strawberry.enum_value(
        "MONTH", description="One bucket per calendar month in the requested time zone."
    )


# --- interfaces and plain objects --------------------------------------------------------


@strawberry.interface(
    description="An object with an opaque, workspace-scoped global id (see `node`)."
)
class Node:
    id: strawberry.ID = strawberry.field(
        description="Opaque global id; valid only with a token of the same workspace."
    )


@strawberry.type(description="The workspace the bearer token belongs to.")
class Workspace:
    slug: str = strawberry.field(description="Unique short name of the workspace.")
    name: str = strawberry.field(description="Display name.")
    plan: str = strawberry.field(
        description="Plan: free, pro, business, advanced or enterprise."
    )
    reporting_currency: str = strawberry.field(
        description="ISO 4217 code (upper case) that sale amounts are reported in."
    )
    conversions_enabled: bool = strawberry.field(
        description="Whether the plan includes conversion tracking (Business or higher)."
    )
    stripe_account_id: str | None = strawberry.field(
        description="The linked Stripe account (acct_...), if any."
    )
    created_at: datetime = strawberry.field(description="When it was created.")

    @classmethod
    def from_row(cls, row: WorkspaceRow) -> "Workspace":
        return cls(
            slug=row.slug,
            name=row.name,
            plan=row.plan,
            reporting_currency=row.reporting_currency.upper(),
            conversions_enabled=plan_allows_conversions(row.plan),
            stripe_account_id=row.stripe_account_id,
            created_at=row.created_at,
        )


@strawberry.type(description="A short link of the workspace.")
class Link(Node):
    key: str = strawberry.field(description="The path of the short link (`/{key}`).")
    domain: str = strawberry.field(description="The host the short link is served on.")
    url: str = strawberry.field(description="The destination URL.")
    short_link: str = strawberry.field(description="The full short URL.")
    track_conversion: bool = strawberry.field(
        description="Whether clicks carry a click id to the destination (cq_id)."
    )
    created_at: datetime = strawberry.field(description="When it was created.")

    @classmethod
    def from_row(cls, row: LinkRow) -> "Link":
        base = get_settings().public_url.rstrip("/")
        return cls(
            id=global_id("Link", row.id),
            key=row.key,
            domain=row.domain,
            url=row.url,
            short_link=f"{base}/{row.key}",
            track_conversion=row.track_conversion,
            created_at=row.created_at,
        )


async def _load_link(info: ApiInfo, link_pk: int | None) -> Link | None:
    if link_pk is None:
        return None
    row = await info.context.loaders.links.load(link_pk)
    return Link.from_row(row) if row is not None else None


@strawberry.type(description="A partner (affiliate) who earns commissions on sales.")
class Partner:
    email: str = strawberry.field(description="The partner's email address.")
    name: str | None = strawberry.field(description="The partner's name, if known.")

    @classmethod
    def from_row(cls, row: PartnerRow) -> "Partner":
        return cls(email=row.email, name=row.name)


async def _load_partner(info: ApiInfo, partner_pk: int) -> Partner | None:
    row = await info.context.loaders.partners.load(partner_pk)
    return Partner.from_row(row) if row is not None else None


@strawberry.type(description="A customer of the merchant, attributed to a click.")
class Customer(Node):
    external_id: str = strawberry.field(
        description="The merchant's own id for the customer (unique in the workspace)."
    )
    stripe_customer_id: str | None = strawberry.field(
        description="The Stripe customer (cus_...), once known."
    )
    email: str | None = strawberry.field(description="Email address, if given.")
    name: str | None = strawberry.field(description="Name, if given.")
    click_id: str | None = strawberry.field(
        description="The click the customer was attributed to, if any."
    )
    livemode: bool = strawberry.field(
        description="False when the customer came from Stripe test mode."
    )
    created_at: datetime = strawberry.field(description="When it was first recorded.")
    link_pk: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: CustomerRow) -> "Customer":
        return cls(
            id=global_id("Customer", row.id),
            external_id=row.external_id,
            stripe_customer_id=row.stripe_customer_id,
            email=row.email,
            name=row.name,
            click_id=row.click_id,
            livemode=row.livemode,
            created_at=row.created_at,
            link_pk=row.link_id,
        )

    @field(description="The short link the customer came through, if any.")
    async def link(self, info: ApiInfo) -> Link | None:
        return await _load_link(info, self.link_pk)


async def _load_customer(info: ApiInfo, customer_pk: int) -> Customer | None:
    row = await info.context.loaders.customers.load(customer_pk)
    return Customer.from_row(row) if row is not None else None


# --- events -----------------------------------------------------------------------------


@strawberry.interface(
    description="A conversion event: a Click, a Lead or a Sale. Select the fields of "
    "each kind with `... on Lead { ... }`."
)
class Event(Node):
    kind: EventKind = strawberry.field(description="Which kind of event this is.")
    timestamp: datetime = strawberry.field(description="When it happened (UTC).")
    click_id: str | None = strawberry.field(
        description="The click this event is attributed to (for a Click, its own id)."
    )
    link_pk: strawberry.Private[int | None]

    @field(description="The short link the event is attributed to, if any.")
    async def link(self, info: ApiInfo) -> Link | None:
        return await _load_link(info, self.link_pk)


@strawberry.type(description="A visit through a short link.")
class Click(Event):
    referrer_host: str | None = strawberry.field(
        description="Host of the referring page, if the browser sent one."
    )
    device: str | None = strawberry.field(description="Device class, e.g. desktop.")
    browser: str | None = strawberry.field(description="Browser family.")
    country: str | None = strawberry.field(
        description="ISO 3166 country code, when a proxy header carried it."
    )

    @classmethod
    def from_row(cls, row: ClickRow) -> "Click":
        return cls(
            id=global_id("Click", row.id),
            kind=EventKind.CLICK,
            timestamp=row.timestamp,
            click_id=row.id,
            link_pk=row.link_id,
            referrer_host=row.referrer_host,
            device=row.device,
            browser=row.browser,
            country=row.country,
        )


@strawberry.type(description="A sign-up (or other named lead event) by a customer.")
class Lead(Event):
    event_name: str = strawberry.field(description="The name of the lead event.")
    livemode: bool = strawberry.field(description="False for Stripe test-mode data.")
    customer_pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: LeadRow) -> "Lead":
        return cls(
            id=global_id("Lead", row.id),
            kind=EventKind.LEAD,
            timestamp=row.timestamp,
            click_id=row.click_id,
            link_pk=row.link_id,
            event_name=row.event_name,
            livemode=row.livemode,
            customer_pk=row.customer_id,
        )

    @field(description="The customer who converted.")
    async def customer(self, info: ApiInfo) -> Customer | None:
        return await _load_customer(info, self.customer_pk)


@strawberry.type(
    description="A payment. Amounts are integers in the minor unit of their currency "
    "(Stripe's exponents: JPY has none, KWD has three)."
)
class Sale(Event):
    event_name: str = strawberry.field(description="The name of the sale event.")
    amount: BigInt | None = strawberry.field(
        description="Amount in minor units of the workspace's reporting currency; "
        "null when no exchange rate exists for the sale's date."
    )
    currency: str = strawberry.field(
        description="The reporting currency `amount` is in (ISO 4217, upper case)."
    )
    original_amount: BigInt = strawberry.field(
        description="Amount paid, in minor units of `originalCurrency`."
    )
    original_currency: str = strawberry.field(
        description="Currency the customer paid in (ISO 4217, upper case)."
    )
    refunded_amount: BigInt = strawberry.field(
        description="Amount refunded so far, in minor units of `originalCurrency`."
    )
    invoice_id: str | None = strawberry.field(description="Stripe invoice (in_...).")
    checkout_session_id: str | None = strawberry.field(
        description="Stripe Checkout session (cs_...)."
    )
    payment_intent_id: str | None = strawberry.field(
        description="Stripe PaymentIntent (pi_...)."
    )
    livemode: bool = strawberry.field(description="False for Stripe test-mode data.")
    customer_pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: SaleRow) -> "Sale":
        return cls(
            id=global_id("Sale", row.id),
            kind=EventKind.SALE,
            timestamp=row.timestamp,
            click_id=row.click_id,
            link_pk=row.link_id,
            event_name=row.event_name,
            amount=BigInt(row.amount) if row.amount is not None else None,
            currency=row.currency.upper(),
            original_amount=BigInt(row.original_amount),
            original_currency=row.original_currency.upper(),
            refunded_amount=BigInt(row.refunded_amount),
            invoice_id=row.invoice_id,
            checkout_session_id=row.checkout_session_id,
            payment_intent_id=row.payment_intent_id,
            livemode=row.livemode,
            customer_pk=row.customer_id,
        )

    @field(description="The customer who paid.")
    async def customer(self, info: ApiInfo) -> Customer | None:
        return await _load_customer(info, self.customer_pk)


def event_from_row(row: ClickRow | LeadRow | SaleRow) -> Event:
    if isinstance(row, ClickRow):
        return Click.from_row(row)
    if isinstance(row, LeadRow):
        return Lead.from_row(row)
    return Sale.from_row(row)


# --- partner program ---------------------------------------------------------------------


@strawberry.type(description="A partner's commission on one sale.")
class Commission(Node):
    amount: BigInt = strawberry.field(
        description="The sale amount net of refunds, in minor units of `currency` "
        "(the sale's original currency)."
    )
    earnings: BigInt = strawberry.field(
        description="The partner's share of `amount` (`rateBps` of it), in minor "
        "units of `currency`."
    )
    rate_bps: int = strawberry.field(
        description="The commission rate in basis points (1000 = 10%)."
    )
    currency: str = strawberry.field(description="ISO 4217 code, upper case.")
    status: str = strawberry.field(
        description="pending, processed, paid, refunded or canceled."
    )
    livemode: bool = strawberry.field(description="False for Stripe test-mode data.")
    created_at: datetime = strawberry.field(description="When it was earned.")
    partner_pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: CommissionRow) -> "Commission":
        return cls(
            id=global_id("Commission", row.id),
            amount=BigInt(row.amount),
            earnings=BigInt(row.earnings),
            rate_bps=row.rate_bps,
            currency=row.currency.upper(),
            status=row.status,
            livemode=row.livemode,
            created_at=row.created_at,
            partner_pk=row.partner_id,
        )

    @field(description="The partner who earns it.")
    async def partner(self, info: ApiInfo) -> Partner | None:
        return await _load_partner(info, self.partner_pk)


@strawberry.type(description="A payment of commissions to a partner.")
class Payout(Node):
    amount: BigInt = strawberry.field(description="Minor units of `currency`.")
    currency: str = strawberry.field(description="ISO 4217 code, upper case.")
    status: str = strawberry.field(description="pending, processing, paid or failed.")
    created_at: datetime = strawberry.field(description="When it was created.")
    partner_pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: PayoutRow) -> "Payout":
        return cls(
            id=global_id("Payout", row.id),
            amount=BigInt(row.amount),
            currency=row.currency.upper(),
            status=row.status,
            created_at=row.created_at,
            partner_pk=row.partner_id,
        )

    @field(description="The partner paid.")
    async def partner(self, info: ApiInfo) -> Partner | None:
        return await _load_partner(info, self.partner_pk)


# --- figures ----------------------------------------------------------------------------


@strawberry.type(description="Totals over a time range, read from hourly rollups.")
class Funnel:
    clicks: int = strawberry.field(description="Number of clicks.")
    leads: int = strawberry.field(description="Number of leads.")
    sales: int = strawberry.field(description="Number of sales.")
    sale_amount: BigInt = strawberry.field(
        description="Sum of sale amounts as paid (refunds not deducted), in minor "
        "units of `currency` (sales without an exchange rate are not included)."
    )
    currency: str = strawberry.field(description="The workspace's reporting currency.")


@strawberry.type(description="The counters of one time series bucket.")
class TimeseriesPoint:
    start: datetime = strawberry.field(
        description="Start of the bucket, with the requested time zone's UTC offset."
    )
    clicks: int = strawberry.field(description="Number of clicks.")
    leads: int = strawberry.field(description="Number of leads.")
    sales: int = strawberry.field(description="Number of sales.")
    sale_amount: BigInt = strawberry.field(
        description="Sum of sale amounts as paid (refunds not deducted), in minor "
        "units of the reporting currency."
    )


# --- connections ------------------------------------------------------------------------


@strawberry.type(description="Where a page of a connection stands.")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="Whether more items follow `endCursor`."
    )
    has_previous_page: bool = strawberry.field(
        description="Always false: connections page forward only, with `after`."
    )
    start_cursor: str | None = strawberry.field(
        description="Cursor of the first edge, null on an empty page."
    )
    end_cursor: str | None = strawberry.field(
        description="Cursor of the last edge: pass it as `after` for the next page."
    )


@strawberry.type(description="An item of a connection, with its cursor.")
class Edge(Generic[NodeT]):
    cursor: str = strawberry.field(
        description="Opaque cursor: pass it as `after` to continue after this item."
    )
    node: NodeT = strawberry.field(description="The item.")


@strawberry.type(
    description="A page of items, newest first. Cursors are keyset cursors: stable "
    "when new items arrive between pages."
)
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]] = strawberry.field(description="The items with cursors.")
    page_info: PageInfo = strawberry.field(description="Paging information.")

    @field(description="The items without cursors (same order as edges).")
    def nodes(self) -> list[NodeT]:
        return [edge.node for edge in self.edges]


def make_connection(
    items: list[NodeT], cursors: list[str], *, has_next_page: bool
) -> Connection[NodeT]:
    edges = [Edge(cursor=c, node=n) for c, n in zip(cursors, items, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next_page,
            has_previous_page=False,
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        ),
    )
