"""The worker figure of the benchmark: purchases preloaded into the inbox, then drained
by the worker's own batch function (one transaction per event, as in production).

A purchase is three Stripe events shaped like Stripe's documented objects: the customer
created by the merchant's backend with the CodeQR keys in its metadata, the completed
checkout session (paid, subscription mode) and the first paid invoice of the same
payment. Each purchase comes from its own click, so each makes a customer, a lead and one
sale (the checkout and the invoice are the same payment)."""

from __future__ import annotations

import json
import time
from typing import Any

from server.clicks import PendingClick, store_clicks
from server.models import utcnow
from server.redirects import new_click_id

ACCOUNT = "acct_benchworker01"


def preload_purchases(purchases: int) -> int:
    """Create the workspace, a link, one click per purchase and the purchases' events in
    the inbox; returns how many events were stored."""
    from server.cli import create_link, create_workspace
    from server.db import get_engine
    from stripe_app import inbox

    workspace = create_workspace(
        "worker-bench", plan="business", stripe_account=ACCOUNT
    )
    assert workspace.id is not None
    link = create_link("worker-bench", "https://shop.example/", key="wb")
    clicks = [
        PendingClick(new_click_id(), workspace.id, int(link["id"]), utcnow())
        for _ in range(purchases)
    ]
    for start in range(0, len(clicks), 500):
        store_clicks(clicks[start : start + 500])

    engine = get_engine()
    stored = 0
    for number, click in enumerate(clicks):
        for event in purchase_events(number, click.id):
            stored += inbox.store(engine, _incoming(event))
    return stored


def purchase_events(number: int, click_id: str) -> list[dict[str, Any]]:
    created = int(time.time())
    customer, invoice = f"cus_bench{number:07d}", f"in_bench{number:07d}"
    intent, charge = f"pi_bench{number:07d}", f"ch_bench{number:07d}"
    keys = {"codeqrCustomerId": f"user_{number}", "codeqrClickId": click_id}
    return [
        _event(
            f"evt_wbc{number:07d}",
            "customer.created",
            created,
            {
                "id": customer,
                "object": "customer",
                "email": f"buyer{number}@example.com",
                "name": f"Buyer {number}",
                "metadata": keys,
            },
        ),
        _event(
            f"evt_wbs{number:07d}",
            "checkout.session.completed",
            created + 1,
            {
                "id": f"cs_bench{number:07d}",
                "object": "checkout.session",
                "mode": "subscription",
                "payment_status": "paid",
                "status": "complete",
                "amount_total": 4900,
                "currency": "usd",
                "customer": customer,
                "customer_details": {"email": f"buyer{number}@example.com"},
                "invoice": invoice,
                "payment_intent": intent,
                "metadata": keys,
            },
        ),
        _event(
            f"evt_wbi{number:07d}",
            "invoice.paid",
            created + 2,
            {
                "id": invoice,
                "object": "invoice",
                "amount_paid": 4900,
                "currency": "usd",
                "customer": customer,
                "payment_intent": intent,
                "charge": charge,
                "status": "paid",
                "status_transitions": {"paid_at": created + 2},
            },
        ),
    ]


def _event(
    event_id: str, kind: str, created: int, obj: dict[str, Any]
) -> dict[str, Any]:
    obj.setdefault("livemode", False)
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "account": ACCOUNT,
        "created": created,
        "livemode": False,
        "type": kind,
        "data": {"object": obj},
    }


def _incoming(event: dict[str, Any]) -> Any:
    from stripe_app.inbox import IncomingEvent

    return IncomingEvent(
        id=event["id"],
        type=event["type"],
        account=event["account"],
        livemode=event["livemode"],
        created=event["created"],
        payload=json.dumps(event),
    )


def drain_inbox(deadline_seconds: float = 600.0) -> tuple[int, str]:
    """Run worker batches until no event is pending (events retried after a backoff
    included), as the app's worker does: ``worker_concurrency`` batches side by side
    on PostgreSQL, one on SQLite. Returns (events handled, a summary)."""
    from concurrent.futures import ThreadPoolExecutor

    from stripe_app.worker import BatchReport, worker_concurrency

    totals = {"done": 0, "skipped": 0, "retried": 0, "dead": 0}
    deadline = time.monotonic() + deadline_seconds

    def loop() -> list[BatchReport]:
        from stripe_app.worker import process_batch

        reports: list[BatchReport] = []
        while True:
            report = process_batch()
            if report.claimed == 0:
                return reports
            reports.append(report)

    threads = worker_concurrency()
    with ThreadPoolExecutor(threads, thread_name_prefix="bench-worker") as pool:
        while True:
            for future in [pool.submit(loop) for _ in range(threads)]:
                for report in future.result():
                    for name in totals:
                        totals[name] += getattr(report, name)
            if not _pending() or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # retried events come back after their backoff
    handled = totals["done"] + totals["skipped"] + totals["dead"]
    summary = ", ".join(f"{name} {count:,}" for name, count in totals.items())
    return handled, f"{summary}; {threads} worker thread(s)"


def _pending() -> int:
    from sqlalchemy import func, select

    from server.db import get_engine
    from server.models import InboxStatus
    from stripe_app.inbox import TABLE

    with get_engine().connect() as conn:
        count = conn.execute(
            select(func.count())
            .select_from(TABLE)
            .where(TABLE.c.status == InboxStatus.PENDING)
        ).scalar_one()
    return int(count)
