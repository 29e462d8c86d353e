"""Stripe events for the attribution tests, built from the envelopes and objects of
../shared/fixtures/stripe with ids, amounts and metadata edited in Python, then sent to
the webhook as the exact bytes signed by the real ``stripe`` SDK."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable
from functools import cache
from typing import Any

import httpx
import stripe
from sqlalchemy import Engine, select
from sqlmodel import Session

from server.models import Click, StripeEvent
from tests.conftest import WEBHOOK_SECRET, fixture_path

ACCOUNT = "acct_1TestConnected000"
CREATED = 1785412800  # 2026-07-30 12:00 UTC, as in the fixtures


@cache
def _fixture(name: str) -> str:
    return fixture_path(name).read_text()


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(_fixture(name))
    return loaded


def _envelope(
    name: str, *, event_id: str, account: str, created: int, livemode: bool
) -> dict[str, Any]:
    event = fixture(name)
    event.update(id=event_id, account=account, created=created, livemode=livemode)
    event["data"]["object"]["livemode"] = livemode
    return event


def stripe_customer(
    customer_id: str,
    *,
    external_id: str | None = None,
    click_id: str | None = None,
    email: str = "jenny.rosen@example.com",
    created: int = CREATED,
    livemode: bool = False,
) -> dict[str, Any]:
    """The customer object: as in ``customer.created`` and as the fake API returns it."""
    customer: dict[str, Any] = fixture("event_customer_created.json")["data"]["object"]
    metadata = {}
    if external_id:
        metadata["codeqrCustomerId"] = external_id
    if click_id:
        metadata["codeqrClickId"] = click_id
    customer.update(
        id=customer_id,
        email=email,
        metadata=metadata,
        created=created,
        livemode=livemode,
    )
    return customer


def customer_event(
    customer: dict[str, Any],
    *,
    event_id: str,
    account: str = ACCOUNT,
    event_type: str = "customer.created",
    created: int = CREATED,
) -> dict[str, Any]:
    name = (
        "event_customer_created.json"
        if event_type == "customer.created"
        else "event_customer_updated.json"
    )
    event = _envelope(
        name,
        event_id=event_id,
        account=account,
        created=created,
        livemode=customer["livemode"],
    )
    event["data"]["object"] = copy.deepcopy(customer)
    return event


def checkout_completed(
    *,
    event_id: str,
    session_id: str,
    amount: int = 2000,
    currency: str = "usd",
    customer_id: str | None = None,
    invoice_id: str | None = None,
    payment_intent_id: str | None = None,
    mode: str = "subscription",
    payment_status: str = "paid",
    client_reference_id: str | None = None,
    metadata: dict[str, str] | None = None,
    currency_conversion: dict[str, Any] | None = None,
    account: str = ACCOUNT,
    created: int = CREATED,
    livemode: bool = False,
    event_type: str = "checkout.session.completed",
) -> dict[str, Any]:
    event = _envelope(
        "event_checkout_session_completed.json",
        event_id=event_id,
        account=account,
        created=created,
        livemode=livemode,
    )
    event["type"] = event_type
    event["data"]["object"].update(
        id=session_id,
        amount_subtotal=amount,
        amount_total=amount,
        currency=currency,
        customer=customer_id,
        invoice=invoice_id,
        payment_intent=payment_intent_id,
        subscription="sub_1TestSubscription0000000" if mode == "subscription" else None,
        mode=mode,
        payment_status=payment_status,
        client_reference_id=client_reference_id,
        metadata=metadata or {},
        currency_conversion=currency_conversion,
    )
    return event


def invoice_paid(
    *,
    event_id: str,
    invoice_id: str,
    customer_id: str,
    amount_paid: int = 2000,
    currency: str = "usd",
    paid_at: int = CREATED,
    account: str = ACCOUNT,
    created: int = CREATED,
    livemode: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    event = _envelope(
        "event_invoice_paid.json",
        event_id=event_id,
        account=account,
        created=created,
        livemode=livemode,
    )
    invoice = event["data"]["object"]
    invoice.update(
        id=invoice_id,
        customer=customer_id,
        amount_due=amount_paid,
        amount_paid=amount_paid,
        subtotal=amount_paid,
        total=amount_paid,
        currency=currency,
        **(extra or {}),
    )
    invoice["status_transitions"]["paid_at"] = paid_at
    invoice["lines"]["data"][0].update(
        amount=amount_paid, currency=currency, invoice=invoice_id
    )
    return event


def charge_refunded(
    *,
    event_id: str,
    charge_id: str,
    payment_intent_id: str | None,
    amount_refunded: int,
    amount: int = 2000,
    currency: str = "usd",
    customer_id: str | None = None,
    account: str = ACCOUNT,
    created: int = CREATED + 86_400,
    livemode: bool = False,
) -> dict[str, Any]:
    event = _envelope(
        "event_charge_refunded.json",
        event_id=event_id,
        account=account,
        created=created,
        livemode=livemode,
    )
    event["data"]["object"].update(
        id=charge_id,
        payment_intent=payment_intent_id,
        customer=customer_id,
        amount=amount,
        amount_captured=amount,
        amount_refunded=amount_refunded,
        refunded=amount_refunded >= amount,
        currency=currency,
    )
    return event


def deauthorized(*, event_id: str, account: str = ACCOUNT) -> dict[str, Any]:
    event = fixture("event_account_application_deauthorized.json")
    event.update(id=event_id, account=account)
    return event


# --- sending and waiting -------------------------------------------------------------


def signed(event: dict[str, Any]) -> tuple[bytes, str]:
    body = json.dumps(event, indent=2)
    header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
    return body.encode(), header


def post_event(client: httpx.Client, event: dict[str, Any]) -> httpx.Response:
    body, header = signed(event)
    response = client.post(
        "/stripe/webhook",
        content=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": header},
    )
    assert response.status_code == 200, response.text
    return response


FINISHED = {"done", "skipped", "dead"}


def inbox_rows(engine: Engine, event_ids: Iterable[str]) -> dict[str, StripeEvent]:
    with Session(engine) as session:
        rows = session.scalars(
            select(StripeEvent).where(StripeEvent.id.in_(list(event_ids)))  # type: ignore[attr-defined]
        ).all()
        return {row.id: row for row in rows}


def wait_until_attempted(engine: Engine, event_id: str, timeout: float = 30) -> None:
    """Until the worker has tried the event once (finished it, or scheduled a retry)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = inbox_rows(engine, [event_id]).get(event_id)
        if row is not None and (row.status in FINISHED or row.attempts > 0):
            return
        time.sleep(0.01)
    raise AssertionError(f"the worker never tried {event_id}")


def wait_finished(
    engine: Engine, event_ids: Iterable[str], timeout: float = 60
) -> dict[str, tuple[str, str | None]]:
    """Until every event is done, skipped or dead; returns {id: (status, reason)}."""
    wanted = list(event_ids)
    deadline = time.monotonic() + timeout
    while True:
        rows = inbox_rows(engine, wanted)
        if len(rows) == len(wanted) and all(
            r.status in FINISHED for r in rows.values()
        ):
            return {i: (rows[i].status, rows[i].reason) for i in wanted}
        if time.monotonic() > deadline:
            pending = {i: (r.status, r.attempts, r.reason) for i, r in rows.items()}
            raise AssertionError(f"events not finished in time: {pending}")
        time.sleep(0.02)


def add_click(
    engine: Engine, click_id: str, *, workspace_id: int, link_id: int
) -> None:
    with Session(engine) as session:
        session.add(Click(id=click_id, workspace_id=workspace_id, link_id=link_id))
        session.commit()
