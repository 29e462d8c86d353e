"""Pieces of SQL that :mod:`server.conversions` and :mod:`server.pg_statements` both
build statements from (both databases; no session, no I/O)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Select, Table, bindparam
from sqlalchemy import select as sql_select

from server.models import Sale


def table_of(model: Any) -> Table:
    table: Table = model.__table__
    return table


def param(column: Any) -> BindParameter[Any]:
    """A bound parameter named and typed like ``column``."""
    return bindparam(column.key, type_=column.type)


def sales_holding(
    id_fields: tuple[str, ...],
    *extra_columns: ColumnElement[Any],
    also: tuple[ColumnElement[bool], ...] = (),
) -> list[Select[Any]]:
    """The workspace's sales holding one of the payment ids ``id_fields`` (parameters
    named like the columns): one SELECT per id, each an exact match on its (id,
    workspace_id) unique index, to be put together with UNION ALL. An OR of them lets
    the planner scan every sale of the workspace instead."""
    sales = table_of(Sale)
    return [
        sql_select(*sales.c, *extra_columns).where(
            sales.c[name] == param(sales.c[name]),
            sales.c.workspace_id == param(sales.c.workspace_id),
            *also,
        )
        for name in id_fields
    ]
