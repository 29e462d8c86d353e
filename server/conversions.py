"""The attribution domain: customers, leads, sales, refunds and commissions.

Shared by the Stripe webhook handlers and the GraphQL ``trackLead``/``trackSale``
mutations. Every function works inside the caller's session (one transaction) and parks
bus notifications with :func:`server.bus.emit` for the caller to publish after the commit.

Uniqueness lives in the database. Inserts are ``INSERT … ON CONFLICT DO NOTHING`` followed
by a re-read, so a concurrent duplicate never aborts the caller's transaction (this also
works on SQLite, where the driver cannot roll back to a SAVEPOINT reliably when the
SAVEPOINT opens the transaction). Filling an id into an existing row is an ``UPDATE`` that
only applies when no other row holds that id; on PostgreSQL it runs in a SAVEPOINT
because a concurrent writer can still win the unique index between check and write."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from functools import cache
from typing import Any, TypedDict, TypeVar, Unpack

from sqlalchemy import (
    Executable,
    Table,
    and_,
    bindparam,
    exists,
    literal,
    union_all,
    update,
)
from sqlalchemy import select as sql_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.dml import Update
from sqlmodel import Session, col, select

from server import currency as money
from server import pg_statements
from server.bus import BusEvent, emit
from server.log_config import get_logger
from server.models import (
    Click,
    Commission,
    Customer,
    Lead,
    Link,
    Partner,
    Sale,
    Workspace,
    plan_allows_conversions,
    utcnow,
)
from server.models.links import MAX_CLICK_ID_LENGTH
from server.rollups import bump, hour_bucket
from server.sql_parts import param, sales_holding, table_of

logger = get_logger(__name__)

_Row = TypeVar("_Row", Customer, Lead, Sale)

MAX_ID_LENGTH = 255

# Set to True in ``session.info`` by callers that retry the whole transaction when any
# statement fails (the inbox worker), which lets a lost race abort it instead of paying
# for a SAVEPOINT around every write that could lose one.
RETRIED_WHOLE = "conversions.retried_whole"


class ConversionError(Exception):
    """Base of the domain's expected failures; ``code`` becomes the GraphQL error code."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ConversionError):
    """An amount, currency, id or name that cannot be recorded as given."""


class UnknownClick(ConversionError):
    """The click id does not exist in this workspace (other workspaces' clicks never match)."""

    code = "NOT_FOUND"


class UnknownCustomer(ConversionError):
    """The customer does not exist in this workspace (track it with a lead first)."""

    code = "NOT_FOUND"


class PlanRequired(ConversionError):
    code = "PLAN_REQUIRED"


# --- look-ups ------------------------------------------------------------------------


def find_customer(
    session: Session, workspace: Workspace, external_id: str
) -> Customer | None:
    """The workspace's customer with this external id (the merchant's own user id)."""
    found: Customer | None = session.scalars(
        _CUSTOMER_BY_EXTERNAL_ID,
        {"workspace_id": workspace.id, "external_id": external_id},
    ).first()
    return found


def find_customer_by_stripe_id(
    session: Session, workspace: Workspace, stripe_customer_id: str
) -> Customer | None:
    found: Customer | None = session.scalars(
        _CUSTOMER_BY_STRIPE_ID,
        {"workspace_id": workspace.id, "stripe_customer_id": stripe_customer_id},
    ).first()
    return found


def find_sale(
    session: Session,
    workspace: Workspace,
    *,
    invoice_id: str | None = None,
    checkout_session_id: str | None = None,
    payment_intent_id: str | None = None,
    charge_id: str | None = None,
) -> Sale | None:
    """The workspace's sale named by ANY of the given payment ids (oldest first)."""
    ids = _given(
        invoice_id=invoice_id,
        checkout_session_id=checkout_session_id,
        payment_intent_id=payment_intent_id,
        charge_id=charge_id,
    )
    if not ids:
        return None
    found: Sale | None = session.scalars(
        _sale_by_ids(tuple(ids)), {"workspace_id": workspace.id, **ids}
    ).first()
    return found


@dataclass(frozen=True, slots=True)
class _ClickRef:
    """What a lead needs of its click."""

    id: str
    link_id: int | None


# --- leads -----------------------------------------------------------------------------


class LeadDetails(TypedDict, total=False):
    """What a lead may say besides its click and customer (all optional)."""

    event_name: str  # default "Sign up"
    customer_name: str | None
    customer_email: str | None
    stripe_customer_id: str | None
    livemode: bool  # default True
    timestamp: datetime | None  # default now


def record_lead(
    session: Session,
    workspace: Workspace,
    *,
    click_id: str,
    customer_external_id: str,
    **details: Unpack[LeadDetails],
) -> Lead:
    """Upsert the customer (attributed to the click's link) and its one lead per event
    name. Raises UnknownClick when the click is not in this workspace.

    A customer keeps its first attribution; a later lead of the same customer with
    another click is attributed to that click. Replays return the existing lead."""
    lead, _customer = _lead_and_customer(
        session, workspace, click_id, customer_external_id, details, read_back=True
    )
    assert lead is not None
    return lead


def record_customer_lead(
    session: Session,
    workspace: Workspace,
    *,
    click_id: str,
    customer_external_id: str,
    **details: Unpack[LeadDetails],
) -> Customer:
    """:func:`record_lead` for callers that need only the customer: a lead recorded
    before is not read back (one query less when an event repeats the lead)."""
    _lead, customer = _lead_and_customer(
        session, workspace, click_id, customer_external_id, details, read_back=False
    )
    return customer


def _lead_and_customer(
    session: Session,
    workspace: Workspace,
    click_id: str,
    customer_external_id: str,
    given: LeadDetails,
    *,
    read_back: bool,
) -> tuple[Lead | None, Customer]:
    event_name = given.get("event_name", "Sign up")
    stripe_customer_id = given.get("stripe_customer_id")
    customer_email = given.get("customer_email")
    customer_name = given.get("customer_name")
    livemode = given.get("livemode", True)
    require_plan(workspace)
    _check_text("customerExternalId", customer_external_id)
    _check_text("eventName", event_name)
    if stripe_customer_id is not None:
        _check_text("stripeCustomerId", stripe_customer_id)
    probe = _probe_lead(session, workspace, click_id, customer_external_id, event_name)
    if probe.click is None:
        raise UnknownClick(
            f"click {click_id!r} does not exist in workspace {workspace.slug!r}; "
            "use the cq_id of a click on one of this workspace's links"
        )

    click = probe.click
    moment = given.get("timestamp") or utcnow()
    details = {
        "stripe_customer_id": stripe_customer_id,
        "email": customer_email[:320] if customer_email else None,
        "name": customer_name[:255] if customer_name else None,
    }
    if probe.customer is not None:
        customer = _known_customer(session, probe.customer, click, details)
        if probe.has_lead and not read_back:
            return None, customer  # the event repeats a lead recorded before
    else:
        new = _customer_values(
            workspace, customer_external_id, click, livemode, moment, details
        )
        if not read_back and _is_postgres(session):
            made = _new_customer_with_lead(session, workspace, new, event_name)
            if made is not None:
                return None, made
        customer = _upsert_customer(session, workspace, new, click, details)
    lead = _insert_lead(
        session, workspace, customer, click, event_name, livemode, moment, read_back
    )
    return lead, customer


@dataclass(frozen=True, slots=True)
class _LeadProbe:
    """What recording a lead needs to know first, read in one query."""

    click: _ClickRef | None  # None: no such click in the workspace
    customer: Customer | None
    has_lead: bool  # the customer has a lead of this event name already


def _probe_lead(
    session: Session,
    workspace: Workspace,
    click_id: str,
    external_id: str,
    event_name: str,
) -> _LeadProbe:
    if len(click_id) > MAX_CLICK_ID_LENGTH:  # no click has such an id
        return _LeadProbe(None, None, False)
    row = session.execute(
        _LEAD_PROBE,
        {
            "workspace_id": workspace.id,
            "external_id": external_id,
            "click_id": click_id,
            "event_name": event_name,
        },
    ).one()
    customer, click_found, link_id, has_lead = row
    click = _ClickRef(click_id, link_id) if click_found else None
    return _LeadProbe(click, customer, bool(has_lead))


def _new_customer_with_lead(
    session: Session,
    workspace: Workspace,
    values: dict[str, Any],
    event_name: str,
) -> Customer | None:
    """PostgreSQL, no customer yet: the customer, its lead and the rollup bump in one
    statement. None when the insert met a conflict (the general path resolves it)."""
    row = session.execute(
        pg_statements.customer_with_lead(tuple(values)),
        {
            **values,
            "event_name": event_name,
            "bucket": hour_bucket(values["created_at"]),
        },
    ).first()
    if row is None:
        return None
    customer, lead_id = row
    _announce_lead(
        session, workspace, lead_id, customer.id, event_name, customer.livemode
    )
    return customer  # type: ignore[no-any-return]


def _customer_values(
    workspace: Workspace,
    external_id: str,
    click: _ClickRef,
    livemode: bool,
    moment: datetime,
    details: dict[str, str | None],
) -> dict[str, Any]:
    """A new customer's row: attributed to the click's link, created at ``moment``."""
    return {
        "workspace_id": workspace.id,
        "external_id": external_id,
        "link_id": click.link_id,
        "click_id": click.id,
        "livemode": livemode,
        "created_at": moment,
        **details,
    }


def _announce_lead(
    session: Session,
    workspace: Workspace,
    lead_id: int,
    customer_id: int | None,
    event_name: str,
    livemode: bool,
) -> None:
    assert workspace.id is not None
    emit(session, BusEvent(workspace.id, "LEAD", str(lead_id), livemode))
    logger.info(
        "conversions.lead_recorded",
        workspace_id=workspace.id,
        lead_id=lead_id,
        customer_id=customer_id,
        event_name=event_name,
    )


def _upsert_customer(
    session: Session,
    workspace: Workspace,
    values: dict[str, Any],
    click: _ClickRef,
    details: dict[str, str | None],
) -> Customer:
    """Insert the customer of ``values`` (:func:`_customer_values`), or refresh the
    existing one of that external id (which keeps its attribution)."""
    external_id = values["external_id"]
    customer = _insert_new(session, Customer, values)
    if customer is None and details["stripe_customer_id"]:
        # Either the customer exists, or another one holds that Stripe customer id.
        existing = find_customer(session, workspace, external_id)
        if existing is not None:
            return _known_customer(session, existing, click, details)
        customer = _insert_new(
            session, Customer, {**values, "stripe_customer_id": None}
        )
    if customer is None:  # it exists (possibly inserted concurrently a moment ago)
        existing = find_customer(session, workspace, external_id)
        assert existing is not None, "the customer row exists after its upsert"
        return _known_customer(session, existing, click, details)

    logger.info(
        "conversions.customer_created",
        workspace_id=workspace.id,
        customer_id=customer.id,
        click_id=click.id,
    )
    return customer


def _known_customer(
    session: Session,
    customer: Customer,
    click: _ClickRef,
    details: dict[str, str | None],
) -> Customer:
    """A customer seen before keeps its first attribution; its details are refreshed."""
    if customer.link_id is None:
        customer.link_id, customer.click_id = click.link_id, click.id
    return update_customer(
        session,
        customer,
        stripe_customer_id=details["stripe_customer_id"],
        email=details["email"],
        name=details["name"],
    )


def update_customer(
    session: Session,
    customer: Customer,
    *,
    stripe_customer_id: str | None = None,
    email: str | None = None,
    name: str | None = None,
) -> Customer:
    """Refresh email and name when given; save the Stripe customer id unless the
    customer already has one or another customer of the workspace holds it."""
    if stripe_customer_id is not None:
        _check_text("stripeCustomerId", stripe_customer_id)
    if email and email != customer.email:
        customer.email = email[:320]
    if name and name != customer.name:
        customer.name = name[:255]
    if stripe_customer_id and customer.stripe_customer_id is None:
        _fill_unique(
            session,
            table_of(Customer),
            customer,
            "stripe_customer_id",
            stripe_customer_id,
        )
    return customer


def _insert_lead(
    session: Session,
    workspace: Workspace,
    customer: Customer,
    click: _ClickRef,
    event_name: str,
    livemode: bool,
    moment: datetime,
    read_back: bool = True,
) -> Lead | None:
    """The new lead, or the existing one of this customer and event name (None then
    unless ``read_back``)."""
    inserted = _insert_new(
        session,
        Lead,
        {
            "workspace_id": workspace.id,
            "customer_id": customer.id,
            "click_id": click.id,
            "link_id": click.link_id,
            "event_name": event_name,
            "livemode": livemode,
            "timestamp": moment,
        },
    )
    if inserted is None:
        if not read_back:
            return None
        existing: Lead = session.scalars(
            _LEAD_OF_CUSTOMER, {"customer_id": customer.id, "event_name": event_name}
        ).one()
        return existing

    assert workspace.id is not None
    assert inserted.id is not None
    bump(session, workspace_id=workspace.id, moment=moment, livemode=livemode, leads=1)
    _announce_lead(session, workspace, inserted.id, customer.id, event_name, livemode)
    return inserted


# --- sales -----------------------------------------------------------------------------


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
    require_plan(workspace)
    if customer.workspace_id != workspace.id:
        raise UnknownCustomer(
            f"customer {customer.external_id!r} does not belong to workspace "
            f"{workspace.slug!r}"
        )
    code = _check_money(amount, currency)
    _check_text("eventName", event_name)
    ids = _given(
        invoice_id=invoice_id,
        checkout_session_id=checkout_session_id,
        payment_intent_id=payment_intent_id,
        charge_id=charge_id,
    )
    for field, value in ids.items():
        _check_text(field, value)

    moment = timestamp or utcnow()
    converted = money.convert(amount, code, workspace.reporting_currency, moment.date())
    values = {
        "workspace_id": workspace.id,
        "customer_id": customer.id,
        "click_id": customer.click_id,
        "link_id": customer.link_id,
        "event_name": event_name,
        "original_amount": amount,
        "original_currency": code,
        "amount": converted.amount,
        "currency": converted.currency,
        "fx_rate": _rate_text(converted.rate),
        "fx_missing": converted.missing,
        "refunded_amount": 0,
        "livemode": livemode,
        "timestamp": moment,
        **ids,
    }
    if ids and _is_postgres(session):
        once = _record_sale_once(session, workspace, ids, values)
        if once is not None:
            return once
    existing = find_sale(session, workspace, **ids)
    if existing is not None:
        return _fill_sale_ids(session, existing, ids)

    sale = _insert_new(session, Sale, values)
    if sale is None:
        # A concurrent transaction recorded the same payment first.
        existing = find_sale(session, workspace, **ids)
        assert existing is not None, "a conflicting sale is visible after the conflict"
        return _fill_sale_ids(session, existing, ids)

    _credit_partner(session, workspace, sale)
    assert workspace.id is not None
    bump(
        session,
        workspace_id=workspace.id,
        moment=sale.timestamp,
        livemode=sale.livemode,
        sales=1,
        sale_amount=sale.amount or 0,
    )
    _announce_sale(session, workspace, sale)
    return sale


def _record_sale_once(
    session: Session,
    workspace: Workspace,
    ids: Mapping[str, str],
    values: Mapping[str, Any],
) -> Sale | None:
    """PostgreSQL: the new sale with its rollup bump, or the sale already holding one
    of ``ids``, in one statement; None when a concurrent writer got in between."""
    statement = pg_statements.sale_once(tuple(values), tuple(ids))
    bucket = hour_bucket(values["timestamp"])
    row = session.execute(statement, {**values, "bucket": bucket}).first()
    if row is None:
        return None
    sale, created, partner_id, partner_rate = row
    if not created:
        return _fill_sale_ids(session, sale, ids)
    if partner_id is not None:
        _add_commission(session, workspace, sale, partner_id, partner_rate)
    _announce_sale(session, workspace, sale)
    return sale  # type: ignore[no-any-return]


def _announce_sale(session: Session, workspace: Workspace, sale: Sale) -> None:
    assert workspace.id is not None and sale.id is not None
    emit(session, BusEvent(workspace.id, "SALE", str(sale.id), sale.livemode))
    logger.info(
        "conversions.sale_recorded",
        workspace_id=workspace.id,
        sale_id=sale.id,
        customer_id=sale.customer_id,
        original_amount=sale.original_amount,
        original_currency=sale.original_currency,
        amount=sale.amount,
        fx_missing=sale.fx_missing,
        livemode=sale.livemode,
    )


def add_payment_ids(
    session: Session,
    sale: Sale,
    *,
    invoice_id: str | None = None,
    checkout_session_id: str | None = None,
    payment_intent_id: str | None = None,
    charge_id: str | None = None,
) -> Sale:
    """Remember more ids of the same payment (a refund's charge, say), so later events
    find the sale without asking Stripe; ids another sale holds are left alone."""
    ids = _given(
        invoice_id=invoice_id,
        checkout_session_id=checkout_session_id,
        payment_intent_id=payment_intent_id,
        charge_id=charge_id,
    )
    return _fill_sale_ids(session, sale, ids)


def _fill_sale_ids(session: Session, sale: Sale, ids: Mapping[str, str]) -> Sale:
    """Add the ids this sale does not have yet; amounts and attribution never change."""
    for field, value in ids.items():
        if getattr(sale, field) is None:
            _fill_unique(session, table_of(Sale), sale, field, value)
    return sale


def _credit_partner(session: Session, workspace: Workspace, sale: Sale) -> None:
    if sale.link_id is None:
        return
    partner: Partner | None = session.scalars(
        _PARTNER_OF_LINK, {"link_id": sale.link_id}
    ).first()
    if partner is not None:
        assert partner.id is not None
        _add_commission(
            session, workspace, sale, partner.id, partner.commission_rate_bps
        )


def commission_rate(partner_rate_bps: int | None, workspace: Workspace) -> int:
    """The rate a partner's commissions are made at: their own, else the workspace's."""
    if partner_rate_bps is not None:
        return partner_rate_bps
    return workspace.commission_rate_bps


def _add_commission(
    session: Session,
    workspace: Workspace,
    sale: Sale,
    partner_id: int,
    partner_rate_bps: int | None,
) -> None:
    """The partner's commission on a new sale, at :func:`commission_rate`."""
    rate = commission_rate(partner_rate_bps, workspace)
    assert workspace.id is not None and sale.id is not None
    commission = Commission(
        workspace_id=workspace.id,
        partner_id=partner_id,
        sale_id=sale.id,
        rate_bps=rate,
        amount=sale.original_amount,
        earnings=commission_earnings(sale.original_amount, rate),
        currency=sale.original_currency,
        livemode=sale.livemode,
        created_at=sale.timestamp,
    )
    session.add(commission)  # written by the next flush (at the latest, the commit)


def commission_earnings(amount: int, rate_bps: int) -> int:
    """``rate_bps`` basis points of ``amount``, rounded half-even to the minor unit."""
    value = Decimal(amount) * Decimal(rate_bps) / Decimal(10_000)
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


# --- refunds ---------------------------------------------------------------------------


def apply_refund(
    session: Session,
    sale: Sale,
    *,
    amount_refunded: int,
    currency: str,
    payment_amount: int | None = None,
) -> int:
    """Bring the sale's refunded amount up to Stripe's cumulative ``amount_refunded``.

    Only a positive change applies, so replays and out-of-order partial refunds change
    nothing. When the charge is in another currency than the sale's original one
    (Adaptive Pricing), the refunded share of ``payment_amount`` is applied pro rata.
    The partner's commission follows. Returns the amount newly refunded."""
    target = _refunded_in_sale_currency(sale, amount_refunded, currency, payment_amount)
    table = table_of(Sale)
    result = session.execute(
        update(table)
        .where(table.c.id == sale.id, table.c.refunded_amount < target)
        .values(refunded_amount=target)
    )
    before = sale.refunded_amount
    session.refresh(sale)
    if not result.rowcount:  # type: ignore[attr-defined]
        return 0

    _follow_refund(session, sale)
    logger.info(
        "conversions.refund_applied",
        workspace_id=sale.workspace_id,
        sale_id=sale.id,
        refunded_amount=sale.refunded_amount,
        original_amount=sale.original_amount,
    )
    return sale.refunded_amount - before


def _refunded_in_sale_currency(
    sale: Sale, amount_refunded: int, currency: str, payment_amount: int | None
) -> int:
    code = _check_money(amount_refunded, currency, allow_zero=True)
    if code == sale.original_currency:
        return min(amount_refunded, sale.original_amount)
    if not payment_amount:
        raise InvalidInput(
            f"refund in {code} for a sale in {sale.original_currency} needs the payment "
            "amount to apply it pro rata"
        )
    share = Decimal(min(amount_refunded, payment_amount)) / Decimal(payment_amount)
    value = Decimal(sale.original_amount) * share
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _follow_refund(session: Session, sale: Sale) -> None:
    """Recompute the commission from the sale's net amount (never drifts). A pending
    commission whose sale is refunded in full is ``refunded``; one already processed or
    paid keeps its status (taking money back from a partner is not automatic)."""
    commission = session.exec(
        select(Commission).where(Commission.sale_id == sale.id)
    ).first()
    if commission is None:
        return
    net = sale.original_amount - sale.refunded_amount
    commission.amount = net
    commission.earnings = commission_earnings(net, commission.rate_bps)
    if net == 0 and commission.status == "pending":
        commission.status = "refunded"
    session.add(commission)
    session.flush()


# --- currency maintenance --------------------------------------------------------------


def convert_flagged_sales(session: Session, limit: int = 10_000) -> int:
    """Convert sales kept unconverted for lack of a rate, now that the table (refreshed
    with ``codeqr fx``) may have one; their hourly rollups gain the amount."""
    flagged = session.exec(
        select(Sale)
        .where(col(Sale.fx_missing).is_(True))
        .order_by(col(Sale.id))
        .limit(limit)
    ).all()
    converted = 0
    for sale in flagged:
        result = money.convert(
            sale.original_amount,
            sale.original_currency,
            sale.currency,
            sale.timestamp.date(),
        )
        if result.missing:
            continue
        sale.amount, sale.fx_rate, sale.fx_missing = (
            result.amount,
            _rate_text(result.rate),
            False,
        )
        session.add(sale)
        bump(
            session,
            workspace_id=sale.workspace_id,
            moment=sale.timestamp,
            livemode=sale.livemode,
            sale_amount=result.amount or 0,
        )
        converted += 1
    session.flush()
    return converted


# --- rules and helpers -----------------------------------------------------------------


def require_plan(workspace: Workspace) -> None:
    if not plan_allows_conversions(workspace.plan):
        raise PlanRequired(
            f"conversion tracking needs the Business plan or higher; workspace "
            f"{workspace.slug!r} is on {workspace.plan!r}"
        )


def _check_text(field: str, value: str) -> None:
    if not value or not value.strip() or len(value) > MAX_ID_LENGTH:
        raise InvalidInput(
            f"{field} must be a non-empty string of at most {MAX_ID_LENGTH} characters"
        )


def _check_money(amount: int, currency: str, *, allow_zero: bool = False) -> str:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidInput(f"amount must be an integer in minor units, got {amount!r}")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidInput(f"amount must be positive (minor units), got {amount}")
    try:
        return money.normalise_currency(currency)
    except money.CurrencyError as exc:
        raise InvalidInput(str(exc)) from exc


def _given(**ids: str | None) -> dict[str, str]:
    return {field: value for field, value in ids.items() if value}


def _rate_text(rate: Decimal | None) -> str | None:
    if rate is None:
        return None
    with localcontext() as context:
        context.prec = 15
        return str(+rate)


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _insert_new(
    session: Session, model: type[_Row], values: Mapping[str, Any]
) -> _Row | None:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING``: the new row (an object of the
    session), or None when a row with one of the same unique keys exists already."""
    dialect = session.get_bind().dialect.name
    statement = _insert_statement(model, dialect, tuple(values))
    row: _Row | None = session.scalars(statement, dict(values)).first()
    return row


def _fill_unique(
    session: Session, table: Table, row: Any, field: str, value: str
) -> bool:
    """Set ``row.field = value`` if it is empty and no other row of the workspace holds
    ``value``; True when it was set.

    On PostgreSQL a concurrent writer can still take ``value`` between the check and the
    write; the unique index then refuses it. Callers whose whole transaction is retried
    on any failure (the worker: see :data:`RETRIED_WHOLE`) let that error fail the
    transaction; others get a SAVEPOINT (two more round trips) so it costs only the id."""
    statement = _fill_statement(table, field)
    params = {"row_id": row.id, "in_workspace": row.workspace_id, "value": value}
    if _is_postgres(session) and not session.info.get(RETRIED_WHOLE):
        try:
            with session.begin_nested():
                result = session.execute(statement, params)
        except IntegrityError:
            result = None
    else:
        result = session.execute(statement, params)
    filled = bool(result is not None and result.rowcount)  # type: ignore[attr-defined]
    if filled:
        set_committed_value(row, field, value)
    else:
        logger.info(
            "conversions.id_not_filled",
            table=table.name,
            row_id=row.id,
            field=field,
            reason="held by another row",
        )
    return filled


# --- statements built once: building and hashing a statement on every call cost more
# --- than running it (each bound value is a named parameter)


_CLICKS = table_of(Click)
_LEADS = table_of(Lead)
_CLICK_IN_WORKSPACE = (
    _CLICKS.c.id == bindparam("click_id", type_=_CLICKS.c.id.type),
    _CLICKS.c.workspace_id == param(_CLICKS.c.workspace_id),
)
# One row whatever exists: the click (found, its link), the customer (outer-joined, so
# None when new) and whether that customer has a lead of this event name.
_LEAD_PROBE = (
    sql_select(
        Customer,
        exists().where(*_CLICK_IN_WORKSPACE).label("click_found"),
        sql_select(_CLICKS.c.link_id)
        .where(*_CLICK_IN_WORKSPACE)
        .scalar_subquery()
        .label("click_link_id"),
        exists()
        .where(
            _LEADS.c.customer_id == col(Customer.id),
            _LEADS.c.event_name == param(_LEADS.c.event_name),
        )
        .label("has_lead"),
    )
    .select_from(sql_select(literal(1).label("one")).subquery("one_row"))
    .outerjoin(
        Customer,
        and_(
            col(Customer.workspace_id) == param(col(Customer.workspace_id)),
            col(Customer.external_id) == param(col(Customer.external_id)),
        ),
    )
)

_CUSTOMER_BY_EXTERNAL_ID = select(Customer).where(
    col(Customer.workspace_id) == param(col(Customer.workspace_id)),
    col(Customer.external_id) == param(col(Customer.external_id)),
)

_CUSTOMER_BY_STRIPE_ID = select(Customer).where(
    col(Customer.workspace_id) == param(col(Customer.workspace_id)),
    col(Customer.stripe_customer_id) == param(col(Customer.stripe_customer_id)),
)

_LEAD_OF_CUSTOMER = select(Lead).where(
    col(Lead.customer_id) == param(col(Lead.customer_id)),
    col(Lead.event_name) == param(col(Lead.event_name)),
)

_PARTNER_OF_LINK = (
    select(Partner)
    .join(Link, col(Link.partner_id) == col(Partner.id))
    .where(col(Link.id) == bindparam("link_id", type_=table_of(Link).c.id.type))
)


@cache
def _sale_by_ids(fields: tuple[str, ...]) -> Executable:
    """The workspace's sale named by any of ``fields`` (oldest first)."""
    found = union_all(*sales_holding(fields)).subquery("found")
    return select(Sale).from_statement(sql_select(found).order_by(found.c.id))


@cache
def _insert_statement(model: Any, dialect: str, keys: tuple[str, ...]) -> Executable:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING *`` of these columns, loaded as
    ``model`` objects of the session."""
    table = table_of(model)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    core = (
        insert(table)
        .values({key: param(table.c[key]) for key in keys})
        .on_conflict_do_nothing()
        .returning(*table.c)
    )
    return select(model).from_statement(core)


@cache
def _fill_statement(table: Table, field: str) -> Update:
    other = table.alias("other")
    value = bindparam("value", type_=table.c[field].type)
    return (
        update(table)
        .where(
            table.c.id == bindparam("row_id", type_=table.c.id.type),
            table.c[field].is_(None),
            ~exists().where(
                other.c.workspace_id
                == bindparam("in_workspace", type_=table.c.workspace_id.type),
                other.c[field] == value,
            ),
        )
        .values({field: value})
    )
