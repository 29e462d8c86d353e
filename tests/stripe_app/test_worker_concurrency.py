"""Several worker loops on PostgreSQL: purchases drained by four threads end exactly as
with one, with no retry (each customer's events stay in order), and a loop that finds
its customer's next event held back gets it as soon as the other loop is done."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from server import db
from server.benchmark_worker import preload_purchases
from server.models import (
    Customer,
    InboxStatus,
    Lead,
    RollupHourly,
    Sale,
    StripeEvent,
)
from server.settings import reset_settings
from stripe_app import inbox
from stripe_app.registry import EventContext
from stripe_app.worker import Worker, one_loop_per_process, process_batch
from tests.conftest import _truncate_postgres, reset_process_state
from tests.stripe_app.conftest import (
    ACCOUNT,
    RecordingHandler,
    inbox_row,
    make_workspace,
    wait_for_status,
)

ONLY_POSTGRES = pytest.mark.parametrize(
    "database_url",
    [pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)


def _pending() -> int:
    with db.get_engine().connect() as conn:
        count = conn.execute(
            sa.select(sa.func.count())
            .select_from(inbox.TABLE)
            .where(inbox.TABLE.c.status == InboxStatus.PENDING)
        ).scalar_one()
    return int(count)


def _drain(threads: int) -> Counter[str]:
    """The worker's batch loop in ``threads`` threads until nothing is pending."""
    totals: Counter[str] = Counter()
    lock = threading.Lock()

    def loop() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            report = process_batch()
            with lock:
                totals.update(
                    claimed=report.claimed,
                    done=report.done,
                    skipped=report.skipped,
                    retried=report.retried,
                    dead=report.dead,
                    lost=report.lost,
                )
            if not report.claimed:
                if not _pending():
                    return
                time.sleep(0.005)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=90)
    assert not any(worker.is_alive() for worker in workers)
    return totals


def _final_state() -> dict[str, Any]:
    """What the purchases left behind, without ids, times and random click ids."""
    with db.session_scope() as session:
        customers = {c.id: c for c in session.exec(select(Customer)).all()}
        by_id = {key: c.external_id for key, c in customers.items()}

        def same_click(row: Lead | Sale) -> bool:
            customer = customers[row.customer_id]
            return row.click_id is not None and row.click_id == customer.click_id

        leads = session.exec(select(Lead)).all()
        sales = session.exec(select(Sale)).all()
        rollups = session.exec(select(RollupHourly)).all()
        events = session.exec(select(StripeEvent)).all()
        return {
            "customers": sorted(
                (c.external_id, c.stripe_customer_id, c.email, c.name, bool(c.click_id))
                for c in customers.values()
            ),
            "leads": sorted(
                (by_id[lead.customer_id], lead.event_name, same_click(lead))
                for lead in leads
            ),
            "sales": sorted(
                (
                    by_id[sale.customer_id],
                    sale.event_name,
                    sale.original_amount,
                    sale.original_currency,
                    sale.amount,
                    sale.refunded_amount,
                    sale.invoice_id,
                    sale.checkout_session_id,
                    sale.payment_intent_id,
                    sale.charge_id,
                    same_click(sale),
                )
                for sale in sales
            ),
            "rollups": (
                sum(r.leads for r in rollups),
                sum(r.sales for r in rollups),
                sum(r.sale_amount for r in rollups),
            ),
            "inbox": sorted((e.id, e.status, e.attempts, e.reason) for e in events),
        }


@ONLY_POSTGRES
def test_four_threads_drain_purchases_in_order_and_end_as_one_thread_does(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches: one customer's three events are split over several claims.
    monkeypatch.setenv("CODEQR_WORKER_BATCH_SIZE", "2")
    reset_settings()
    purchases = 30

    assert preload_purchases(purchases) == 3 * purchases
    alone = _drain(threads=1)
    expected = _final_state()

    _truncate_postgres(settings_env["CODEQR_DATABASE_URL"])
    reset_process_state()
    assert preload_purchases(purchases) == 3 * purchases
    together = _drain(threads=4)

    for totals in (alone, together):
        assert totals["done"] == 3 * purchases
        assert totals["retried"] == 0
        assert totals["skipped"] == totals["dead"] == totals["lost"] == 0
    assert len(expected["customers"]) == len(expected["sales"]) == purchases
    assert all(row[-1] for row in expected["sales"])  # each sale kept its click
    assert expected["rollups"] == (purchases, purchases, purchases * 4900)
    assert _final_state() == expected


@ONLY_POSTGRES
def test_a_loop_takes_a_held_back_event_as_soon_as_its_customer_is_free(
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    register_handler: Callable[..., RecordingHandler],
) -> None:
    # Loops look at the inbox when woken, or every 30 s: the test waits far less.
    monkeypatch.setenv("CODEQR_WORKER_POLL_SECONDS", "30")
    monkeypatch.setenv("CODEQR_WORKER_BATCH_SIZE", "2")
    reset_settings()
    make_workspace()
    entered, release = threading.Event(), threading.Event()

    def first_waits(_session: Session, ctx: EventContext) -> None:
        if ctx.event_id == "evt_first":
            entered.set()
            assert release.wait(30)

    handler = register_handler("invoice.paid", first_waits)
    _store("evt_first", created=1)

    async def scenario() -> None:
        worker = Worker(concurrency=2)
        await worker.start()
        try:
            await asyncio.to_thread(entered.wait, 30)
            # The customer's next event arrives while one loop holds the first: the
            # receiver wakes the worker, the idle loop finds it held back.
            _store("evt_second", created=2)
            worker.wake()
            await asyncio.sleep(0.3)
            row = inbox_row("evt_second")
            assert row is not None
            assert (row.status, row.locked_until) == (InboxStatus.PENDING, None)
            release.set()
            await asyncio.to_thread(wait_for_status, "evt_second", "done", timeout=5)
        finally:
            release.set()
            await worker.stop()

    asyncio.run(scenario())

    assert [call.event_id for call in handler.calls] == ["evt_first", "evt_second"]


def _store(event_id: str, created: int) -> None:
    obj = {"id": f"in_{event_id}", "object": "invoice", "customer": "cus_one"}
    event = {
        "id": event_id,
        "object": "event",
        "type": "invoice.paid",
        "account": ACCOUNT,
        "created": created,
        "livemode": False,
        "data": {"object": obj},
    }
    inbox.store(
        db.get_engine(),
        inbox.IncomingEvent(
            event_id,
            "invoice.paid",
            ACCOUNT,
            False,
            created,
            json.dumps(event),
            inbox.ordering_key(event),
        ),
    )


# --- one loop per process when the server runs several --------------------------------


def test_several_server_processes_run_one_worker_loop_each_unless_told() -> None:
    single: dict[str, str] = {}
    one_loop_per_process(1, single)
    assert single == {}

    several: dict[str, str] = {}
    one_loop_per_process(4, several)
    assert several == {"CODEQR_WORKER_CONCURRENCY": "1"}

    chosen = {"CODEQR_WORKER_CONCURRENCY": "3"}
    one_loop_per_process(4, chosen)
    assert chosen == {"CODEQR_WORKER_CONCURRENCY": "3"}


def test_serve_with_several_workers_hands_one_loop_per_process_to_uvicorn(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from server.cli import main as cli_main

    seen: list[tuple[int, str | None]] = []

    def fake_run(app: str, **options: Any) -> None:
        seen.append((options["workers"], os.environ.get("CODEQR_WORKER_CONCURRENCY")))

    environ = dict(os.environ)
    environ.pop("CODEQR_WORKER_CONCURRENCY", None)
    monkeypatch.setattr(os, "environ", environ)  # the test's own copy, thrown away
    monkeypatch.setattr(uvicorn, "run", fake_run)
    assert cli_main(["serve", "--port", "8123"]) == 0
    assert cli_main(["serve", "--port", "8123", "--workers", "2"]) == 0
    assert seen == [(1, None), (2, "1")]
