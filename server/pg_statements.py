"""PostgreSQL statements that do in one round trip what takes several elsewhere.

On PostgreSQL a statement's cost is mostly its round trip (a few hundred microseconds of
waiting and of server work on a small machine), so the worker's common cases are single
statements chaining data-modifying CTEs: a new customer with its lead and the lead's
rollup bump; a new sale with its rollup bump and its link's partner, or the sale that
already holds one of the payment's ids. Each returns nothing when a concurrent writer
got in first, and the caller then takes the general path of :mod:`server.conversions`
(written once for SQLite and PostgreSQL), which sorts the conflict out. Nothing here
decides anything the general path does not: these are shortcuts for the cases where no
row exists yet."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Executable,
    Select,
    Table,
    exists,
    false,
    func,
    literal,
    null,
    true,
    union_all,
)
from sqlalchemy import select as sql_select
from sqlalchemy.dialects import postgresql
from sqlmodel import select

from server.models import Customer, Lead, Link, Partner, RollupHourly, Sale
from server.rollups import COLUMNS, add_on_conflict
from server.sql_parts import param, sales_holding, table_of


def _bump(source: CTE, *, leads: int, sales: int, amount: ColumnElement[Any]) -> CTE:
    """The hourly rollup upsert, once per row of ``source`` (none: nothing bumped)."""
    rollups = table_of(RollupHourly)
    row = sql_select(
        source.c.workspace_id,
        param(rollups.c.bucket),
        source.c.livemode,
        literal(0),
        literal(leads),
        literal(sales),
        amount,
    ).select_from(source)
    upsert = postgresql.insert(rollups).from_select(list(COLUMNS), row)
    bumped: CTE = add_on_conflict(upsert).cte("bumped")
    return bumped


@cache
def _insert_unless_conflict(table: Table, fields: tuple[str, ...], name: str) -> CTE:
    """A CTE inserting one row of ``table`` from parameters named like its ``fields``,
    returning the row, or nothing when a unique key conflicts."""
    return (
        postgresql.insert(table)
        .values({field: param(table.c[field]) for field in fields})
        .on_conflict_do_nothing()
        .returning(*table.c)
        .cte(name)
    )


def customer_with_lead(fields: tuple[str, ...]) -> Executable:
    """Insert a customer and its first lead (timestamped like the customer) and bump the
    hour's leads. Parameters: the customer's ``fields``, ``event_name`` and ``bucket``.
    Rows: (Customer, lead id); none when the customer conflicts with an existing row
    (same external id, or its Stripe customer id held by another customer)."""
    customers, leads = table_of(Customer), table_of(Lead)
    customer = _insert_unless_conflict(customers, fields, "new_customer")
    lead = (
        leads.insert()
        .from_select(
            [
                "workspace_id",
                "customer_id",
                "click_id",
                "link_id",
                "event_name",
                "livemode",
                "timestamp",
            ],
            sql_select(
                customer.c.workspace_id,
                customer.c.id,
                customer.c.click_id,
                customer.c.link_id,
                param(leads.c.event_name),
                customer.c.livemode,
                customer.c.created_at,
            ),
        )
        .returning(leads.c.id.label("lead_id"), leads.c.workspace_id, leads.c.livemode)
        .cte("new_lead")
    )
    bumped = _bump(lead, leads=1, sales=0, amount=literal(0))
    rows = (
        sql_select(customer, lead.c.lead_id)
        .select_from(customer.join(lead, true()))
        .add_cte(bumped)
    )
    return select(Customer, lead.c.lead_id).from_statement(rows)


@cache
def sale_once(fields: tuple[str, ...], id_fields: tuple[str, ...]) -> Executable:
    """Insert the sale unless one of its payment ids (``id_fields``) already names a sale
    of the workspace; a new sale bumps the hour's sales and amount. Parameters: the
    sale's ``fields`` and ``bucket``. One row: (Sale, created, partner id, partner rate):
    the new sale with its link's partner (if any), or the workspace's oldest sale holding
    one of the ids (created false). None when the insert conflicted with a sale committed
    after this statement began (a concurrent writer): look it up again."""
    if not id_fields:
        raise ValueError("sale_once needs at least one payment id field")
    sales, links, partners = table_of(Sale), table_of(Link), table_of(Partner)
    new_sale = _insert_unless_conflict(sales, fields, "new_sale")
    bumped = _bump(
        new_sale, leads=0, sales=1, amount=func.coalesce(new_sale.c.amount, 0)
    )
    created: Select[Any] = sql_select(
        *new_sale.c,
        true().label("created"),
        partners.c.id.label("partner_id"),
        partners.c.commission_rate_bps.label("partner_rate"),
    ).select_from(
        new_sale.outerjoin(links, links.c.id == new_sale.c.link_id).outerjoin(
            partners, partners.c.id == links.c.partner_id
        )
    )
    known = sales_holding(
        id_fields,
        false().label("created"),
        null().label("partner_id"),
        null().label("partner_rate"),
        also=(~exists(sql_select(literal(1)).select_from(new_sale)),),
    )
    combined = union_all(created, *known).subquery("found")
    rows = (
        sql_select(combined)
        .order_by(combined.c.created.desc(), combined.c.id)
        .limit(1)
        .add_cte(bumped)
    )
    return select(
        Sale, combined.c.created, combined.c.partner_id, combined.c.partner_rate
    ).from_statement(rows)
