"""PostgreSQL plans the worker's look-ups on their unique indexes even before the first
ANALYZE (a new deployment, or a table that grew faster than autovacuum looks): a
look-up planned on another index of the workspace reads every row of it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, Executable, insert

from server import conversions, pg_statements
from server.cli import create_link, create_workspace
from server.db import get_engine
from server.models import Click, Customer, Sale, utcnow

ROWS = 400


@pytest.fixture
def filled(settings_env: dict[str, str], database_url: str) -> dict[str, int]:
    if not database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL planner question")
    workspace = create_workspace("acme", plan="business", stripe_account="acct_acme")
    link = create_link("acme", "https://acme.example/", key="go")
    assert workspace.id is not None
    now = utcnow()
    with get_engine().begin() as conn:
        conn.execute(
            insert(Click),
            [
                {
                    "id": f"click_{n:016d}",
                    "workspace_id": workspace.id,
                    "link_id": link["id"],
                    "timestamp": now,
                }
                for n in range(ROWS)
            ],
        )
        conn.execute(
            insert(Customer),
            [
                {
                    "workspace_id": workspace.id,
                    "external_id": f"user_{n}",
                    "stripe_customer_id": f"cus_{n}",
                    "created_at": now,
                    "livemode": True,
                }
                for n in range(ROWS)
            ],
        )
        conn.execute(
            insert(Sale),
            [
                {
                    "workspace_id": workspace.id,
                    "customer_id": 1,
                    "original_amount": 100,
                    "original_currency": "USD",
                    "amount": 100,
                    "currency": "USD",
                    "refunded_amount": 0,
                    "fx_missing": False,
                    "livemode": True,
                    "timestamp": now,
                    "invoice_id": f"in_{n}",
                    "checkout_session_id": f"cs_{n}",
                    "payment_intent_id": f"pi_{n}",
                    "charge_id": f"ch_{n}",
                    "event_name": "Purchase",
                }
                for n in range(ROWS)
            ],
        )
    return {"workspace_id": workspace.id}


def _plan(conn: Connection, statement: Executable, params: dict[str, Any]) -> str:
    compiled = statement.compile(dialect=conn.dialect)
    rows = conn.exec_driver_sql(
        "EXPLAIN (ANALYZE, COSTS OFF) " + str(compiled), {**compiled.params, **params}
    ).all()
    return "\n".join(str(row[0]) for row in rows)


def _never_filters_the_workspace(plan: str) -> None:
    assert "Rows Removed by Filter" not in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "ws_time" not in plan and "ws_created" not in plan, plan


@pytest.mark.parametrize(
    "fields",
    [("invoice_id",), ("checkout_session_id", "payment_intent_id", "charge_id")],
)
def test_a_sale_is_found_by_payment_id_on_its_unique_index(
    filled: dict[str, int], fields: tuple[str, ...]
) -> None:
    params = {"workspace_id": filled["workspace_id"]}
    params.update({field: f"{field[:2]}_7" for field in fields})
    with get_engine().connect() as conn:
        plan = _plan(conn, conversions._sale_by_ids(fields), params)
    _never_filters_the_workspace(plan)
    for field in fields:
        assert f"sale_{field}_workspace_id_key" in plan, plan


def test_a_customer_is_found_by_external_and_stripe_id_on_their_unique_indexes(
    filled: dict[str, int],
) -> None:
    with get_engine().connect() as conn:
        by_external = _plan(
            conn,
            conversions._CUSTOMER_BY_EXTERNAL_ID,
            {"workspace_id": filled["workspace_id"], "external_id": "user_7"},
        )
        by_stripe = _plan(
            conn,
            conversions._CUSTOMER_BY_STRIPE_ID,
            {"workspace_id": filled["workspace_id"], "stripe_customer_id": "cus_7"},
        )
        probe = _plan(
            conn,
            conversions._LEAD_PROBE,
            {
                "workspace_id": filled["workspace_id"],
                "external_id": "user_7",
                "click_id": "click_0000000000000007",
                "event_name": "Sign up",
            },
        )
    for plan in (by_external, by_stripe, probe):
        _never_filters_the_workspace(plan)
    assert "customer_external_id_workspace_id_key" in by_external
    assert "customer_stripe_customer_id_workspace_id_key" in by_stripe
    assert "customer_external_id_workspace_id_key" in probe


def test_the_one_statement_sale_finds_a_known_payment_on_its_unique_indexes(
    filled: dict[str, int],
) -> None:
    ids = {"invoice_id": "in_7", "payment_intent_id": "pi_7", "charge_id": "ch_7"}
    values = {
        "workspace_id": filled["workspace_id"],
        "customer_id": 1,
        "event_name": "Purchase",
        "original_amount": 100,
        "original_currency": "USD",
        "amount": 100,
        "currency": "USD",
        "fx_missing": False,
        "refunded_amount": 0,
        "livemode": True,
        "timestamp": utcnow(),
        **ids,
    }
    statement = pg_statements.sale_once(tuple(values), tuple(ids))
    with get_engine().connect() as conn:  # rolled back: EXPLAIN ANALYZE runs it
        plan = _plan(conn, statement, {**values, "bucket": utcnow()})
    _never_filters_the_workspace(plan)
    for field in ids:
        assert f"sale_{field}_workspace_id_key" in plan, plan
