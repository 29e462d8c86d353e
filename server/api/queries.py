"""The read side: workspace, customers, events, funnel, time series, partner program."""

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import strawberry

from server.api import objects, pagination, store, timeseries
from server.api.context import READ_SCOPE, ApiInfo, require
from server.api.errors import BadUserInput, NotFound
from server.api.fields import field
from server.api.objects import (
    BigInt,
    Connection,
    Customer,
    Event,
    EventKind,
    Funnel,
    Interval,
    Node,
    TimeseriesPoint,
    Workspace,
)
from server.models import Click as ClickRow
from server.models import Commission as CommissionRow
from server.models import Customer as CustomerRow
from server.models import Lead as LeadRow
from server.models import Link as LinkRow
from server.models import Payout as PayoutRow
from server.models import Sale as SaleRow
from server.models import Workspace as WorkspaceRow
from server.models import utcnow

MAX_SEARCH_LENGTH = 200

First = Annotated[
    int | None,
    strawberry.argument(
        description=f"Page size: 0 to {pagination.MAX_PAGE_SIZE}, default "
        f"{pagination.DEFAULT_PAGE_SIZE}. Out of range is a BAD_USER_INPUT error."
    ),
]
After = Annotated[
    str | None,
    strawberry.argument(
        description="Return the items after this cursor (an `endCursor` or edge "
        "`cursor` of the same connection)."
    ),
]
IncludeTestMode = Annotated[
    bool,
    strawberry.argument(
        description="Also count Stripe test-mode data (livemode false). Off by "
        "default: live figures exclude test data."
    ),
]
ListTestMode = Annotated[
    bool,
    strawberry.argument(
        description="List Stripe test-mode leads and sales too (each node says its "
        "`livemode`). On by default for this list; false keeps only live data."
    ),
]
Start = Annotated[
    datetime | None,
    strawberry.argument(
        description="Inclusive lower bound (ISO 8601; without an offset, UTC)."
    ),
]
End = Annotated[
    datetime | None,
    strawberry.argument(
        description="Exclusive upper bound (ISO 8601; without an offset, UTC)."
    ),
]


def _range(
    start: datetime | None, end: datetime | None
) -> tuple[datetime | None, datetime | None]:
    start = timeseries.as_utc(start) if start is not None else None
    end = timeseries.as_utc(end) if end is not None else None
    if start is not None and end is not None and start > end:
        raise BadUserInput(
            f"start ({start.isoformat()}) is after end ({end.isoformat()})."
        )
    return start, end


async def _workspace_row(workspace_id: int) -> WorkspaceRow:
    row = await store.read(store.workspace, workspace_id)
    if row is None:
        raise NotFound("The token's workspace no longer exists.")
    return row


@strawberry.type(
    description="""Reads of one workspace: the one the bearer token belongs to.

Authentication: every request needs `Authorization: Bearer <API key or OAuth access
token>` (on a WebSocket, in the connection_init payload). A missing, invalid, revoked
or expired token gets HTTP 401 with `WWW-Authenticate: Bearer` and a GraphQL error
body whose `extensions.code` is UNAUTHENTICATED; a WebSocket is closed with 4403.

Errors: every error carries `extensions.code`: UNAUTHENTICATED, FORBIDDEN (the token
lacks a scope: conversions:read for queries and subscriptions, conversions:write for
mutations), BAD_USER_INPUT, NOT_FOUND, PLAN_REQUIRED, GRAPHQL_PARSE_FAILED,
GRAPHQL_VALIDATION_FAILED, BAD_REQUEST, or INTERNAL_SERVER_ERROR (masked, logged);
and `extensions.classification`: BAD_REQUEST when the request was refused,
INTERNAL_ERROR when the server failed.

Test mode: rows from Stripe test mode (livemode false) are left out of the figures
(funnel, time series, commissions) unless `includeTestMode: true` is passed. The
events list and stream show them by default, each node saying its `livemode`;
`includeTestMode: false` keeps only live data there.

Amounts: sale amounts in figures are gross (as paid); refunds show on each sale as
`refundedAmount` and reduce its partner's commission."""
)
class Query:
    @field(description="The workspace the token belongs to.")
    async def workspace(self, info: ApiInfo) -> Workspace:
        principal = require(info, READ_SCOPE)
        return Workspace.from_row(await _workspace_row(principal.workspace_id))

    @field(
        description="Any object by its global id; null when it does not exist in "
        "this workspace."
    )
    async def node(
        self,
        info: ApiInfo,
        id: Annotated[strawberry.ID, strawberry.argument(description="A global id.")],
    ) -> Node | None:
        principal = require(info, READ_SCOPE)
        parsed = objects.parse_global_id(id)
        if parsed is None:
            return None
        row = await store.read(store.row_by_type, principal.workspace_id, *parsed)
        return _node_from_row(row) if row is not None else None

    @field(
        description="Customers, newest first, of live and test mode alike (see "
        "`livemode`)."
    )
    async def customers(
        self,
        info: ApiInfo,
        first: First = pagination.DEFAULT_PAGE_SIZE,
        after: After = None,
        search: Annotated[
            str | None,
            strawberry.argument(
                description="Case-insensitive substring of the external id, email "
                "or name."
            ),
        ] = None,
    ) -> Connection[Customer]:
        principal = require(info, READ_SCOPE)
        limit = pagination.page_size(first)
        cursor = pagination.decode_time_cursor(after, "customers")
        if search is not None and len(search) > MAX_SEARCH_LENGTH:
            raise BadUserInput(f"search is longer than {MAX_SEARCH_LENGTH} characters.")
        rows = await store.read(
            store.customers_page,
            principal.workspace_id,
            limit=limit + 1,
            after=cursor,
            search=search,
        )
        page = rows[:limit]
        return objects.make_connection(
            [Customer.from_row(row) for row in page],
            [_time_cursor("customers", row.created_at, row.id) for row in page],
            has_next_page=len(rows) > limit,
        )

    @field(description="The customer with this external id; null when there is none.")
    async def customer(
        self,
        info: ApiInfo,
        external_id: Annotated[
            str, strawberry.argument(description="The merchant's id for the customer.")
        ],
    ) -> Customer | None:
        principal = require(info, READ_SCOPE)
        row = await store.read(
            store.customer_by_external_id, principal.workspace_id, external_id
        )
        return Customer.from_row(row) if row is not None else None

    @field(
        description="Clicks, leads and sales merged, newest first (ties: sale, lead, "
        "click)."
    )
    async def events(
        self,
        info: ApiInfo,
        first: First = pagination.DEFAULT_PAGE_SIZE,
        after: After = None,
        kinds: Annotated[
            list[EventKind] | None,
            strawberry.argument(description="Only these kinds; null or empty: all."),
        ] = None,
        start: Start = None,
        end: End = None,
        include_test_mode: ListTestMode = True,
    ) -> Connection[Event]:
        principal = require(info, READ_SCOPE)
        limit = pagination.page_size(first)
        cursor = pagination.decode_event_cursor(after)
        start, end = _range(start, end)
        where = store.EventFilter(
            kinds=frozenset(kind.name for kind in kinds or EventKind),
            start=start,
            end=end,
            include_test_mode=include_test_mode,
        )
        rows = await store.read(
            store.events_page,
            principal.workspace_id,
            limit=limit + 1,
            after=cursor,
            where=where,
        )
        page = rows[:limit]
        return objects.make_connection(
            [objects.event_from_row(row) for row in page],
            [pagination.event_cursor(store.event_key(row)) for row in page],
            has_next_page=len(rows) > limit,
        )

    @field(
        description="Clicks, leads, sales and sale amount over a range (no range: all "
        "time). Rollups are hourly: the range is widened to whole UTC hours."
    )
    async def funnel(
        self,
        info: ApiInfo,
        start: Start = None,
        end: End = None,
        include_test_mode: IncludeTestMode = False,
    ) -> Funnel:
        principal = require(info, READ_SCOPE)
        start, end = _range(start, end)
        totals = await store.read(
            store.funnel_totals,
            principal.workspace_id,
            start=timeseries.floor_hour(start) if start else None,
            end=timeseries.ceil_hour(end) if end else None,
            include_test_mode=include_test_mode,
        )
        workspace = await _workspace_row(principal.workspace_id)
        return Funnel(
            clicks=totals.clicks,
            leads=totals.leads,
            sales=totals.sales,
            sale_amount=BigInt(totals.sale_amount),
            currency=workspace.reporting_currency.upper(),
        )

    @field(
        description="Counters per bucket, oldest first, every bucket present (zeros "
        f"included), at most {timeseries.MAX_BUCKETS} buckets. Buckets are whole "
        "hours, days or months in `timezone`; the first holds `start`, the last "
        "holds the instant before `end`. Rollups are hourly in UTC: in zones with a "
        "half-hour offset an hour counts in the bucket where it begins."
    )
    async def timeseries(
        self,
        info: ApiInfo,
        start: Annotated[
            datetime | None,
            strawberry.argument(
                description="Start of the range (default: 24 hours, 30 days or 12 "
                "months before `end`, by interval)."
            ),
        ] = None,
        end: Annotated[
            datetime | None,
            strawberry.argument(description="End of the range (default: now)."),
        ] = None,
        interval: Annotated[
            Interval, strawberry.argument(description="Bucket width.")
        ] = Interval.DAY,
        timezone: Annotated[
            str,
            strawberry.argument(
                description="IANA time zone the buckets follow, e.g. 'Asia/Kolkata'."
            ),
        ] = "UTC",
        include_test_mode: IncludeTestMode = False,
    ) -> list[TimeseriesPoint]:
        principal = require(info, READ_SCOPE)
        tz = timeseries.zone(timezone)
        end = timeseries.as_utc(end) if end is not None else utcnow()
        start = (
            timeseries.as_utc(start)
            if start is not None
            else timeseries.default_range(interval.name, end, tz)
        )
        if start >= end:
            raise BadUserInput(
                f"start ({start.isoformat()}) must be before end ({end.isoformat()})."
            )
        starts = timeseries.bucket_starts(interval.name, start, end, tz)
        return await _points(
            principal.workspace_id, interval.name, starts, tz, include_test_mode
        )

    @field(description="Partner commissions, newest first.")
    async def commissions(
        self,
        info: ApiInfo,
        first: First = pagination.DEFAULT_PAGE_SIZE,
        after: After = None,
        include_test_mode: IncludeTestMode = False,
    ) -> Connection[objects.Commission]:
        principal = require(info, READ_SCOPE)
        limit = pagination.page_size(first)
        cursor = pagination.decode_time_cursor(after, "commissions")
        rows = await store.read(
            store.commissions_page,
            principal.workspace_id,
            limit=limit + 1,
            after=cursor,
            include_test_mode=include_test_mode,
        )
        page = rows[:limit]
        return objects.make_connection(
            [objects.Commission.from_row(row) for row in page],
            [_time_cursor("commissions", row.created_at, row.id) for row in page],
            has_next_page=len(rows) > limit,
        )

    @field(description="Payouts to partners, newest first.")
    async def payouts(
        self,
        info: ApiInfo,
        first: First = pagination.DEFAULT_PAGE_SIZE,
        after: After = None,
    ) -> Connection[objects.Payout]:
        principal = require(info, READ_SCOPE)
        limit = pagination.page_size(first)
        cursor = pagination.decode_time_cursor(after, "payouts")
        rows = await store.read(
            store.payouts_page, principal.workspace_id, limit=limit + 1, after=cursor
        )
        page = rows[:limit]
        return objects.make_connection(
            [objects.Payout.from_row(row) for row in page],
            [_time_cursor("payouts", row.created_at, row.id) for row in page],
            has_next_page=len(rows) > limit,
        )


async def _points(
    workspace_id: int,
    interval: str,
    starts: list[datetime],
    tz: ZoneInfo,
    include_test_mode: bool,
) -> list[TimeseriesPoint]:
    span_start, span_end = timeseries.rollup_span(interval, starts, tz)
    hours = await store.read(
        store.hourly_counters,
        workspace_id,
        start=span_start,
        end=span_end,
        include_test_mode=include_test_mode,
    )
    return [
        TimeseriesPoint(
            start=bucket,
            clicks=counters.clicks,
            leads=counters.leads,
            sales=counters.sales,
            sale_amount=BigInt(counters.sale_amount),
        )
        for bucket, counters in timeseries.aggregate(interval, starts, hours, tz)
    ]


def _time_cursor(tag: str, moment: datetime, pk: int | None) -> str:
    assert pk is not None
    return pagination.time_cursor(tag, moment.astimezone(UTC), pk)


def _node_from_row(row: object) -> Node | None:
    if isinstance(row, CustomerRow):
        return Customer.from_row(row)
    if isinstance(row, LinkRow):
        return objects.Link.from_row(row)
    if isinstance(row, ClickRow | LeadRow | SaleRow):
        return objects.event_from_row(row)
    if isinstance(row, CommissionRow):
        return objects.Commission.from_row(row)
    if isinstance(row, PayoutRow):
        return objects.Payout.from_row(row)
    return None
