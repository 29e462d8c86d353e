"""Signed events carrying values no real Stripe object has (amounts past 12 digits,
timestamps past 2106, click ids no click can have) are skipped at once with a reason,
on SQLite and PostgreSQL alike, never retried until dead on an overflow; nothing of
them reaches the figures."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select

from server.models import Sale
from stripe_app.handlers.attribution import MAX_AMOUNT
from stripe_app.worker import drain
from tests.conftest import LiveServer
from tests.stripe_app.attribution_fixtures import make_shop
from tests.stripe_app.stripe_events import (
    charge_refunded,
    checkout_completed,
    customer_event,
    inbox_rows,
    invoice_paid,
    post_event,
    stripe_customer,
)

ACCOUNT = "acct_1Hostile00000000x"


def _outcome(rx: LiveServer, engine: Any, event: dict[str, Any]) -> tuple[str, str]:
    with rx.client() as client:
        assert post_event(client, event).status_code == 200
    for _ in range(5):
        drain()
    row = inbox_rows(engine, [event["id"]])[event["id"]]
    assert row.attempts == 0, (row.status, row.reason)
    return row.status, str(row.reason)


@pytest.mark.parametrize("amount", [MAX_AMOUNT + 1, 2**63, 10**30])
def test_payment_amounts_beyond_twelve_digits_are_skipped(
    quick_giving_up_receiver: LiveServer, amount: int
) -> None:
    shop = make_shop("hostile", ACCOUNT)
    click = shop.click("click_hostile_00001")
    customer = stripe_customer("cus_Hostile0001", external_id="h1", click_id=click)
    lead = customer_event(customer, event_id="evt_lead", account=ACCOUNT)
    assert _outcome(quick_giving_up_receiver, shop.engine, lead)[0] == "done"

    session_event = checkout_completed(
        event_id="evt_checkout",
        session_id="cs_Hostile0001",
        amount=amount,
        customer_id="cus_Hostile0001",
        account=ACCOUNT,
    )
    invoice_event = invoice_paid(
        event_id="evt_invoice",
        invoice_id="in_Hostile0001",
        customer_id="cus_Hostile0001",
        amount_paid=amount,
        account=ACCOUNT,
    )
    for event, field in (
        (session_event, "amount_total"),
        (invoice_event, "amount_paid"),
    ):
        status, reason = _outcome(quick_giving_up_receiver, shop.engine, event)
        assert status == "skipped"
        assert f"has {field} {amount}, outside 0..{MAX_AMOUNT}" in reason

    with Session(shop.engine) as session:
        assert session.exec(select(Sale)).all() == []


def test_a_refund_beyond_twelve_digits_is_skipped(
    quick_giving_up_receiver: LiveServer,
) -> None:
    shop = make_shop("hostile", ACCOUNT)
    refund = charge_refunded(
        event_id="evt_refund",
        charge_id="ch_Hostile0001",
        payment_intent_id="pi_Hostile0001",
        amount_refunded=10**13,
        amount=10**13,
        account=ACCOUNT,
    )
    status, reason = _outcome(quick_giving_up_receiver, shop.engine, refund)
    assert status == "skipped"
    assert "amount_refunded 10000000000000" in reason


def test_a_customer_created_far_in_the_future_is_dated_by_its_event(
    quick_giving_up_receiver: LiveServer,
) -> None:
    shop = make_shop("hostile", ACCOUNT)
    click = shop.click("click_hostile_00002")
    customer = stripe_customer(
        "cus_Hostile0002", external_id="h2", click_id=click, created=10**12
    )
    event = customer_event(customer, event_id="evt_future", account=ACCOUNT)
    assert _outcome(quick_giving_up_receiver, shop.engine, event) == ("done", "None")


@pytest.mark.parametrize("click_id", ["c" * 5000, "c" * 65, "no spaces allowed"])
def test_a_click_id_no_click_can_have_is_skipped_not_retried(
    quick_giving_up_receiver: LiveServer, click_id: str
) -> None:
    shop = make_shop("hostile", ACCOUNT)
    customer = stripe_customer("cus_Hostile0003", external_id="h3", click_id=click_id)
    event = customer_event(customer, event_id="evt_click", account=ACCOUNT)
    status, reason = _outcome(quick_giving_up_receiver, shop.engine, event)
    assert status == "skipped"
    assert "is not a CodeQR click id" in reason
    assert len(reason) < 200  # the id is shortened, not echoed whole
