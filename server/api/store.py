"""The read queries behind the GraphQL API. Synchronous: resolvers call them through
:func:`read`, which runs them in the thread pool with a session of their own.

Every function takes the caller's workspace id and filters by it: a row of another
workspace is never returned, so to the client it does not exist."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from sqlalchemy import ColumnElement, and_, false, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar
from starlette.concurrency import run_in_threadpool

from server.db import session_scope
from server.models import (
    Click,
    Commission,
    Customer,
    Lead,
    Link,
    Partner,
    Payout,
    RollupHourly,
    Sale,
    Workspace,
)

P = ParamSpec("P")
T = TypeVar("T")
RowT = TypeVar("RowT", Customer, Commission, Payout)

EventRow = Click | Lead | Sale

# Rank of each kind among events of the same instant: a sale sorts above its lead,
# a lead above its click, matching the order in which they happen.
KIND_RANK = {"CLICK": 0, "LEAD": 1, "SALE": 2}
_KIND_TABLE: dict[str, type[EventRow]] = {"CLICK": Click, "LEAD": Lead, "SALE": Sale}


async def read(
    fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run ``fn(session, ...)`` in the thread pool, in a transaction of its own."""

    def call() -> T:
        return _in_session(fn, *args, **kwargs)

    return await run_in_threadpool(call)


def _in_session(
    fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
) -> T:
    with session_scope() as session:
        return fn(session, *args, **kwargs)


# --- single rows and batches (the DataLoaders) ----------------------------------------


def workspace(session: Session, workspace_id: int) -> Workspace | None:
    return session.get(Workspace, workspace_id)


def links_by_id(
    session: Session, workspace_id: int, ids: Sequence[int]
) -> dict[int, Link]:
    statement = select(Link).where(
        Link.workspace_id == workspace_id, col(Link.id).in_(ids)
    )
    return {row.id: row for row in session.exec(statement) if row.id is not None}


def customers_by_id(
    session: Session, workspace_id: int, ids: Sequence[int]
) -> dict[int, Customer]:
    statement = select(Customer).where(
        Customer.workspace_id == workspace_id, col(Customer.id).in_(ids)
    )
    return {row.id: row for row in session.exec(statement) if row.id is not None}


def partners_by_id(
    session: Session, workspace_id: int, ids: Sequence[int]
) -> dict[int, Partner]:
    statement = select(Partner).where(
        Partner.workspace_id == workspace_id, col(Partner.id).in_(ids)
    )
    return {row.id: row for row in session.exec(statement) if row.id is not None}


def customer_by_external_id(
    session: Session, workspace_id: int, external_id: str
) -> Customer | None:
    statement = select(Customer).where(
        Customer.workspace_id == workspace_id, Customer.external_id == external_id
    )
    return session.exec(statement).first()


_NODE_TABLES: dict[str, type[Any]] = {
    "Customer": Customer,
    "Link": Link,
    "Click": Click,
    "Lead": Lead,
    "Sale": Sale,
    "Commission": Commission,
    "Payout": Payout,
}


def row_by_type(
    session: Session, workspace_id: int, type_name: str, pk: str
) -> Any | None:
    """The row of a global id, or None when it is unknown or of another workspace."""
    table = _NODE_TABLES.get(type_name)
    if table is None:
        return None
    key: str | int = pk if table is Click else _as_int(pk)
    if key == -1:
        return None
    row = session.get(table, key)
    if row is None or row.workspace_id != workspace_id:
        return None
    return row


def _as_int(text: str) -> int:
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else -1


# --- keyset pages ----------------------------------------------------------------------


def _newest_first(
    statement: SelectOfScalar[RowT],
    time_column: Any,
    id_column: Any,
    after: tuple[datetime, int] | None,
    limit: int,
) -> SelectOfScalar[RowT]:
    if after is not None:
        moment, pk = after
        statement = statement.where(
            or_(time_column < moment, and_(time_column == moment, id_column < pk))
        )
    # Always true, and the condition of the partial listing index (see models.base.time_index).
    statement = statement.where(time_column.is_not(None))
    return statement.order_by(time_column.desc(), id_column.desc()).limit(limit)


def customers_page(
    session: Session,
    workspace_id: int,
    *,
    limit: int,
    after: tuple[datetime, int] | None,
    search: str | None,
) -> list[Customer]:
    statement = select(Customer).where(Customer.workspace_id == workspace_id)
    if search:
        needle = search.lower()
        statement = statement.where(
            or_(
                func.lower(col(Customer.external_id)).contains(needle, autoescape=True),
                func.lower(col(Customer.email)).contains(needle, autoescape=True),
                func.lower(col(Customer.name)).contains(needle, autoescape=True),
            )
        )
    statement = _newest_first(
        statement, col(Customer.created_at), col(Customer.id), after, limit
    )
    return list(session.exec(statement))


def commissions_page(
    session: Session,
    workspace_id: int,
    *,
    limit: int,
    after: tuple[datetime, int] | None,
    include_test_mode: bool,
) -> list[Commission]:
    statement = select(Commission).where(Commission.workspace_id == workspace_id)
    if not include_test_mode:
        statement = statement.where(col(Commission.livemode).is_(True))
    statement = _newest_first(
        statement, col(Commission.created_at), col(Commission.id), after, limit
    )
    return list(session.exec(statement))


def payouts_page(
    session: Session,
    workspace_id: int,
    *,
    limit: int,
    after: tuple[datetime, int] | None,
) -> list[Payout]:
    statement = select(Payout).where(Payout.workspace_id == workspace_id)
    statement = _newest_first(
        statement, col(Payout.created_at), col(Payout.id), after, limit
    )
    return list(session.exec(statement))


# --- events: three tables merged newest first ------------------------------------------


@dataclass(frozen=True)
class EventKey:
    """Where an event sorts: newest first, then by kind rank, then by id."""

    timestamp: datetime
    rank: int
    id: str | int


def event_key(row: EventRow) -> EventKey:
    rank = KIND_RANK[kind_of(row)]
    assert row.id is not None
    return EventKey(row.timestamp, rank, row.id)


def kind_of(row: EventRow) -> str:
    if isinstance(row, Click):
        return "CLICK"
    return "LEAD" if isinstance(row, Lead) else "SALE"


@dataclass(frozen=True)
class EventFilter:
    kinds: frozenset[str]
    start: datetime | None
    end: datetime | None
    include_test_mode: bool


def events_page(
    session: Session,
    workspace_id: int,
    *,
    limit: int,
    after: EventKey | None,
    where: EventFilter,
) -> list[EventRow]:
    """Up to ``limit`` events strictly after the cursor, newest first."""
    rows: list[EventRow] = []
    for kind in sorted(where.kinds):
        rows.extend(_kind_page(session, workspace_id, kind, limit, after, where))
    rows.sort(key=_sort_key, reverse=True)
    return rows[:limit]


def _sort_key(row: EventRow) -> tuple[datetime, int, str | int]:
    key = event_key(row)
    return (key.timestamp, key.rank, key.id)


def _kind_page(
    session: Session,
    workspace_id: int,
    kind: str,
    limit: int,
    after: EventKey | None,
    where: EventFilter,
) -> Sequence[EventRow]:
    table = _KIND_TABLE[kind]
    time_column: Any = col(table.timestamp)
    id_column: Any = col(table.id)
    statement: Any = select(table).where(
        table.workspace_id == workspace_id,
        time_column.is_not(None),  # the partial listing index's condition
    )
    for condition in _event_conditions(table, time_column, where):
        statement = statement.where(condition)
    if after is not None:
        statement = statement.where(
            _after_condition(KIND_RANK[kind], time_column, id_column, after)
        )
    statement = statement.order_by(time_column.desc(), id_column.desc()).limit(limit)
    rows: Sequence[EventRow] = session.exec(statement).all()
    return rows


def _event_conditions(
    table: type[EventRow], time_column: Any, where: EventFilter
) -> Iterable[ColumnElement[bool]]:
    if where.start is not None:
        yield time_column >= where.start
    if where.end is not None:
        yield time_column < where.end
    if table is not Click and not where.include_test_mode:
        yield col(table.livemode).is_(True)  # type: ignore[union-attr]


def _after_condition(
    rank: int, time_column: Any, id_column: Any, after: EventKey
) -> ColumnElement[bool]:
    """Rows of one table that sort after the cursor in (time, rank, id) descending."""
    if rank < after.rank:
        return time_column <= after.timestamp  # type: ignore[no-any-return]
    if rank > after.rank:
        return time_column < after.timestamp  # type: ignore[no-any-return]
    if isinstance(after.id, str) != (rank == KIND_RANK["CLICK"]):
        return false()
    return or_(
        time_column < after.timestamp,
        and_(time_column == after.timestamp, id_column < after.id),
    )


def event_by_id(
    session: Session, workspace_id: int, kind: str, event_id: str
) -> EventRow | None:
    table = _KIND_TABLE.get(kind)
    if table is None:
        return None
    key: str | int = event_id if table is Click else _as_int(event_id)
    row = cast(EventRow | None, session.get(table, key))
    if row is None or row.workspace_id != workspace_id:
        return None
    return row


# --- rollups ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Counters:
    clicks: int = 0
    leads: int = 0
    sales: int = 0
    sale_amount: int = 0

    def __add__(self, other: Counters) -> Counters:
        return Counters(
            self.clicks + other.clicks,
            self.leads + other.leads,
            self.sales + other.sales,
            self.sale_amount + other.sale_amount,
        )


def _rollup_filter(
    workspace_id: int,
    start: datetime | None,
    end: datetime | None,
    include_test_mode: bool,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        col(RollupHourly.workspace_id) == workspace_id
    ]
    if start is not None:
        conditions.append(col(RollupHourly.bucket) >= start)
    if end is not None:
        conditions.append(col(RollupHourly.bucket) < end)
    if not include_test_mode:
        conditions.append(col(RollupHourly.livemode).is_(True))
    return conditions


def funnel_totals(
    session: Session,
    workspace_id: int,
    *,
    start: datetime | None,
    end: datetime | None,
    include_test_mode: bool,
) -> Counters:
    statement = select(
        func.coalesce(func.sum(RollupHourly.clicks), 0),
        func.coalesce(func.sum(RollupHourly.leads), 0),
        func.coalesce(func.sum(RollupHourly.sales), 0),
        func.coalesce(func.sum(RollupHourly.sale_amount), 0),
    ).where(*_rollup_filter(workspace_id, start, end, include_test_mode))
    clicks, leads, sales, amount = session.exec(statement).one()
    return Counters(int(clicks), int(leads), int(sales), int(amount))


def hourly_counters(
    session: Session,
    workspace_id: int,
    *,
    start: datetime,
    end: datetime,
    include_test_mode: bool,
) -> list[tuple[datetime, Counters]]:
    """Counters per UTC hour in [start, end), live and test mode added together."""
    bucket = col(RollupHourly.bucket)
    statement = (
        sa_select(
            bucket,
            func.sum(RollupHourly.clicks),
            func.sum(RollupHourly.leads),
            func.sum(RollupHourly.sales),
            func.sum(RollupHourly.sale_amount),
        )
        .where(*_rollup_filter(workspace_id, start, end, include_test_mode))
        .group_by(bucket)
        .order_by(bucket)
    )
    return [
        (hour, Counters(int(c), int(ld), int(s), int(a)))
        for hour, c, ld, s, a in session.execute(statement)
    ]
