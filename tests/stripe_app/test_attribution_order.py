"""Order and duplicates: Stripe delivers events in any order and more than once. Every
permutation of one purchase's five events, and a burst of concurrent duplicates handled
by several workers at once, must end in the same single customer, lead and sale."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from stripe_app.worker import process_batch
from tests.conftest import LiveServer, start_server
from tests.stripe_app.attribution_fixtures import Shop, make_shop, state
from tests.stripe_app.fake_stripe import FakeStripe
from tests.stripe_app.stripe_events import (
    CREATED,
    FINISHED,
    charge_refunded,
    checkout_completed,
    customer_event,
    inbox_rows,
    invoice_paid,
    post_event,
    stripe_customer,
    wait_finished,
)

DAY = datetime.fromtimestamp(CREATED, UTC).isoformat()
CLICK = "<click>"


def _purchase(tag: str, account: str, click_id: str) -> dict[str, dict[str, Any]]:
    """One subscription purchase: sign-up, checkout, its first invoice, two refunds."""
    customer = stripe_customer(
        "cus_Purchase0001", external_id="user_p", click_id=click_id
    )
    return {
        "customer": customer_event(
            customer, event_id=f"evt_{tag}_customer", account=account
        ),
        "checkout": checkout_completed(
            event_id=f"evt_{tag}_checkout",
            session_id="cs_test_Purchase0001",
            customer_id="cus_Purchase0001",
            invoice_id="in_Purchase0001",
            account=account,
        ),
        "invoice": invoice_paid(
            event_id=f"evt_{tag}_invoice",
            invoice_id="in_Purchase0001",
            customer_id="cus_Purchase0001",
            account=account,
        ),
        "partial": charge_refunded(
            event_id=f"evt_{tag}_partial",
            charge_id="ch_Purchase0001",
            payment_intent_id="pi_Purchase0001",
            amount_refunded=500,
            account=account,
        ),
        "full": charge_refunded(
            event_id=f"evt_{tag}_full",
            charge_id="ch_Purchase0001",
            payment_intent_id="pi_Purchase0001",
            amount_refunded=2000,
            account=account,
        ),
    }


def _expected(refunded: int, commission: tuple[int, int]) -> dict[str, Any]:
    return {
        "customers": [
            ("user_p", "cus_Purchase0001", "jenny.rosen@example.com", CLICK, False, DAY)
        ],
        "leads": [("user_p", "Sign up", CLICK, False, DAY)],
        "sales": [
            {
                "customer": "user_p",
                "click_id": CLICK,
                "original": (2000, "USD"),
                "amount": (2000, "USD", False),
                "refunded": refunded,
                "ids": (
                    "in_Purchase0001",
                    "cs_test_Purchase0001",
                    "pi_Purchase0001",
                    "ch_Purchase0001",
                ),
                "livemode": False,
                "timestamp": DAY,
            }
        ],
        # Refunded in full: the pending commission is refunded with it.
        "commissions": [
            (
                *commission,
                1000,
                "USD",
                "refunded" if refunded == 2000 else "pending",
                False,
            )
        ],
        "rollups": [(DAY, False, 1, 1, 2000)],
    }


def _normalised(shop: Shop, click_id: str) -> dict[str, Any]:
    """The workspace's state with its own click id replaced by a placeholder."""

    def swap(value: Any) -> Any:
        if value == click_id:
            return CLICK
        if isinstance(value, dict):
            return {key: swap(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(swap(item) for item in value)
        return value

    result: dict[str, Any] = swap(state(shop.engine, shop.workspace_id))
    return result


def _shop_with_purchase(fake: FakeStripe, index: int) -> tuple[Shop, str]:
    account = f"acct_1TestOrder{index:05d}"
    shop = make_shop(f"order{index}", account)
    click_id = shop.click(f"click_order_{index:08d}")
    fake.add_customer(
        account,
        stripe_customer("cus_Purchase0001", external_id="user_p", click_id=click_id),
    )
    fake.add_invoice_payment(
        account,
        invoice_id="in_Purchase0001",
        payment_intent_id="pi_Purchase0001",
        amount=2000,
    )
    return shop, click_id


@pytest.fixture
def receiver_only(
    fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveServer]:
    """The app with its worker off: the test runs the worker itself, to choose the order
    in which the handlers see the events (and to run several workers at once)."""
    monkeypatch.setenv("CODEQR_WORKER_ENABLED", "false")
    server = start_server()
    yield server
    server.stop()


# 600 deliveries, each handled before the next is sent: allow for a busy machine.
@pytest.mark.timeout(600)
def test_every_order_of_the_purchase_events_ends_in_the_same_state(
    receiver_only: LiveServer, fake_stripe: FakeStripe
) -> None:
    names = ("customer", "checkout", "invoice", "partial", "full")
    orders = list(itertools.permutations(names))
    assert len(orders) == 120
    shops = [_shop_with_purchase(fake_stripe, index) for index in range(len(orders))]

    event_ids: list[str] = []
    with receiver_only.client() as client:
        for index, order in enumerate(orders):
            shop, click_id = shops[index]
            events = _purchase(f"o{index}", shop.account, click_id)
            for name in order:
                post_event(client, events[name])
                _handle_now(shop, events[name]["id"])
            event_ids += [event["id"] for event in events.values()]
    outcomes = _run_workers(shops[0][0], event_ids, threads=1)

    assert {status for status, _ in outcomes.values()} == {"done"}
    expected = _expected(refunded=2000, commission=(0, 0))
    for index, (shop, click_id) in enumerate(shops):
        assert _normalised(shop, click_id) == expected, f"order {orders[index]}"


def test_concurrent_duplicates_handled_by_several_workers_make_one_lead_and_one_sale(
    receiver_only: LiveServer, fake_stripe: FakeStripe
) -> None:
    shop, click_id = _shop_with_purchase(fake_stripe, 0)
    events = _purchase("dup", shop.account, click_id)
    burst = [
        events["customer"],
        events["checkout"],
        events["invoice"],
        events["partial"],
    ]
    # Stripe may also create two Event objects for one change: same object, new id.
    burst += [dict(event, id=event["id"] + "_twin") for event in burst]
    deliveries = burst * 3  # and deliver each of them three times

    def post(event: dict[str, Any]) -> int:
        with receiver_only.client() as client:
            return post_event(client, event).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        assert set(pool.map(post, deliveries)) == {200}
    outcomes = _run_workers(shop, [e["id"] for e in burst], threads=4)

    assert {status for status, _ in outcomes.values()} == {"done"}, outcomes
    assert _normalised(shop, click_id) == _expected(
        refunded=500, commission=(1500, 150)
    )


def _handle_now(shop: Shop, event_id: str) -> None:
    """Run the worker until it has tried this event once, so the handlers see the
    events in the order they were sent (one that has to wait comes back after its
    backoff; due retries of earlier events are handled on the way)."""
    while True:
        process_batch(limit=1)
        row = inbox_rows(shop.engine, [event_id])[event_id]
        if row.status in FINISHED or row.attempts > 0:
            return


def _run_workers(
    shop: Shop, event_ids: list[str], threads: int
) -> dict[str, tuple[str, str | None]]:
    """Several workers draining the inbox at once (each claims its own events) until
    every event is finished; retries come back after their backoff."""
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            if not process_batch(limit=1).claimed:
                time.sleep(0.01)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        running = [pool.submit(work) for _ in range(threads)]
        try:
            return wait_finished(shop.engine, event_ids, timeout=60)
        finally:
            stop.set()
            for future in running:
                future.result(timeout=60)
