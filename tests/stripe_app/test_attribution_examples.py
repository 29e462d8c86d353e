"""The shipped example purchase (stripe_app/examples) replayed the way the README shows:
click the demo link, trackLead with its cq_id, ``codeqr replay`` the five files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select

import stripe_app
from server.cli import create_api_key, main
from server.models import Customer, Sale
from tests.conftest import WEBHOOK_SECRET, LiveServer
from tests.stripe_app.attribution_fixtures import Shop, click_through, make_shop, state
from tests.stripe_app.fake_stripe import FakeStripe
from tests.stripe_app.stripe_events import ACCOUNT, wait_finished

EXAMPLES = Path(stripe_app.__file__).parent / "examples"
FILES = sorted(EXAMPLES.glob("*.json"))


def _track_lead(server: LiveServer, click_id: str) -> None:
    token = create_api_key("demo")
    mutation = (
        "mutation($input: TrackLeadInput!) { trackLead(input: $input) "
        "{ customer { externalId } } }"
    )
    variables = {
        "input": {
            "clickId": click_id,
            "customerExternalId": "user_42",
            "eventName": "Sign up",
        }
    }
    with server.client(headers={"Authorization": f"Bearer {token}"}) as client:
        response = client.post(
            "/graphql", json={"query": mutation, "variables": variables}
        )
    assert response.status_code == 200, response.text
    assert "errors" not in response.json(), response.text


def test_the_examples_are_one_purchase_of_the_demo_account() -> None:
    events = [json.loads(path.read_text()) for path in FILES]
    assert [e["type"] for e in events] == [
        "customer.created",
        "checkout.session.completed",
        "invoice.paid",
        "charge.refunded",
        "charge.refunded",
    ]
    assert {e["account"] for e in events} == {ACCOUNT}
    assert len({e["id"] for e in events}) == len(events)
    checkout, invoice = events[1]["data"]["object"], events[2]["data"]["object"]
    assert checkout["invoice"] == invoice["id"]
    assert (
        checkout["customer"] == invoice["customer"] == events[0]["data"]["object"]["id"]
    )
    refunds = [e["data"]["object"] for e in events[3:]]
    assert {r["payment_intent"] for r in refunds} == {checkout["payment_intent"]}


def test_replaying_the_examples_after_track_lead_gives_one_refunded_sale(
    app_server: LiveServer, fake_stripe: FakeStripe, capsys: pytest.CaptureFixture[str]
) -> None:
    demo: Shop = make_shop("demo", ACCOUNT)
    click_id = click_through(app_server, demo.link_key)
    _track_lead(app_server, click_id)

    capsys.readouterr()
    args = [
        "replay",
        *map(str, FILES),
        "--url",
        app_server.url,
        "--secret",
        WEBHOOK_SECRET,
    ]
    assert main(args) == 0
    sent = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["status"] for line in sent] == [200] * len(FILES)

    event_ids = [json.loads(path.read_text())["id"] for path in FILES]
    outcomes = wait_finished(demo.engine, event_ids)
    assert outcomes == dict.fromkeys(event_ids, ("done", None))

    with Session(demo.engine) as session:
        customer = session.exec(select(Customer)).one()
        sale = session.exec(select(Sale)).one()
    assert (customer.external_id, customer.stripe_customer_id, customer.click_id) == (
        "user_42",
        "cus_ExampleJenny01",
        click_id,
    )
    assert (sale.original_amount, sale.amount, sale.currency) == (4900, 4900, "USD")
    assert (sale.refunded_amount, sale.click_id) == (4900, click_id)
    assert (sale.invoice_id, sale.payment_intent_id, sale.charge_id) == (
        "in_ExamplePurchase001",
        "pi_ExamplePurchase001",
        "ch_ExamplePurchase001",
    )
    figures = state(demo.engine, demo.workspace_id)
    assert figures["commissions"] == [(0, 0, 1000, "USD", "refunded", False)]
    assert fake_stripe.requests == []  # the demo needs no Stripe API key

    # Replaying again changes nothing.
    assert main(args) == 0
    assert state(demo.engine, demo.workspace_id) == figures
