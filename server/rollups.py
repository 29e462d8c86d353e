"""Hourly counters, incremented in the transaction that records the event."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Insert, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from server.models import RollupHourly


def hour_bucket(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def bump(
    session: Session,
    *,
    workspace_id: int,
    moment: datetime,
    livemode: bool,
    clicks: int = 0,
    leads: int = 0,
    sales: int = 0,
    sale_amount: int = 0,
) -> None:
    """Add to the counters of the hour holding ``moment`` (an atomic upsert)."""
    dialect = session.get_bind().dialect.name
    session.execute(
        _upsert_statement(dialect),
        {
            "workspace_id": workspace_id,
            "bucket": hour_bucket(moment),
            "livemode": livemode,
            "clicks": clicks,
            "leads": leads,
            "sales": sales,
            "sale_amount": sale_amount,
        },
    )


@lru_cache(maxsize=4)
def _upsert_statement(dialect: str) -> Insert:
    """Built once per dialect: constructing the ON CONFLICT statement (its ``excluded``
    columns) cost milliseconds per call, more than running it."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = RollupHourly.__table__  # type: ignore[attr-defined]
    statement = insert(table).values(
        {name: bindparam(name, type_=table.c[name].type) for name in COLUMNS}
    )
    upsert: Insert = add_on_conflict(statement)
    return upsert


def add_on_conflict(statement: Any) -> Any:
    """``statement`` (a dialect INSERT into the rollups) adding its counters to the
    hour's row when it exists already."""
    table = RollupHourly.__table__  # type: ignore[attr-defined]
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["workspace_id", "livemode", "bucket"],
        set_={
            "clicks": table.c.clicks + excluded.clicks,
            "leads": table.c.leads + excluded.leads,
            "sales": table.c.sales + excluded.sales,
            "sale_amount": table.c.sale_amount + excluded.sale_amount,
        },
    )


COLUMNS = (
    "workspace_id",
    "bucket",
    "livemode",
    "clicks",
    "leads",
    "sales",
    "sale_amount",
)
