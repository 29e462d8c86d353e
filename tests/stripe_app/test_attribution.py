"""Attribution through real HTTP: signed Stripe events posted to the webhook of a running
app, handled by its worker, with the Stripe look-ups answered by the fake Stripe API. Each
scenario reads the resulting rows back and checks every figure."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from currency_converter import CurrencyConverter
from sqlmodel import Session, select

from server import conversions
from server.cli import create_api_key
from server.models import (
    Customer,
    OAuthClient,
    OAuthToken,
    Sale,
    User,
    Workspace,
    utcnow,
)
from tests.conftest import LiveServer
from tests.stripe_app.attribution_fixtures import (
    Shop,
    click_through,
    inbox,
    make_shop,
    state,
)
from tests.stripe_app.fake_stripe import API_KEY, FakeStripe
from tests.stripe_app.stripe_events import (
    ACCOUNT,
    CREATED,
    charge_refunded,
    checkout_completed,
    customer_event,
    deauthorized,
    invoice_paid,
    post_event,
    stripe_customer,
    wait_finished,
    wait_until_attempted,
)

DAY = datetime.fromtimestamp(CREATED, UTC)


def _send(
    server: LiveServer, shop: Shop, *events: dict[str, Any]
) -> dict[str, tuple[str, str | None]]:
    with server.client() as client:
        for event in events:
            post_event(client, event)
    return wait_finished(shop.engine, [e["id"] for e in events])


def _one_sale(shop: Shop) -> Sale:
    with Session(shop.engine) as session:
        sales = session.exec(
            select(Sale).where(Sale.workspace_id == shop.workspace_id)
        ).all()
    assert len(sales) == 1, sales
    return sales[0]


# --- the full story --------------------------------------------------------------------


def test_full_story_from_click_to_full_refund(
    app_server: LiveServer, shop: Shop, fake_stripe: FakeStripe
) -> None:
    click_id = click_through(app_server, shop.link_key)
    customer = stripe_customer(
        "cus_Story000001", external_id="user_42", click_id=click_id
    )
    fake_stripe.add_invoice_payment(
        ACCOUNT,
        invoice_id="in_Story000001",
        payment_intent_id="pi_Story000001",
        amount=2000,
    )

    outcome = _send(app_server, shop, customer_event(customer, event_id="evt_story_1"))
    assert outcome == {"evt_story_1": ("done", None)}
    after_lead = state(shop.engine, shop.workspace_id)
    assert after_lead["customers"] == [
        (
            "user_42",
            "cus_Story000001",
            "jenny.rosen@example.com",
            click_id,
            False,
            DAY.isoformat(),
        )
    ]
    assert after_lead["leads"] == [
        ("user_42", "Sign up", click_id, False, DAY.isoformat())
    ]
    assert after_lead["sales"] == []

    checkout = checkout_completed(
        event_id="evt_story_2",
        session_id="cs_test_Story000001",
        customer_id="cus_Story000001",
        invoice_id="in_Story000001",
    )
    assert _send(app_server, shop, checkout) == {"evt_story_2": ("done", None)}
    sale = _one_sale(shop)
    assert (
        sale.original_amount,
        sale.original_currency,
        sale.amount,
        sale.currency,
    ) == (2000, "USD", 2000, "USD")
    assert (sale.click_id, sale.link_id, sale.livemode) == (
        click_id,
        shop.link_id,
        False,
    )
    assert state(shop.engine, shop.workspace_id)["commissions"] == [
        (2000, 200, 1000, "USD", "pending", False)
    ]

    paid = invoice_paid(
        event_id="evt_story_3",
        invoice_id="in_Story000001",
        customer_id="cus_Story000001",
    )
    assert _send(app_server, shop, paid) == {"evt_story_3": ("done", None)}
    same = _one_sale(shop)
    assert same.id == sale.id
    assert (same.invoice_id, same.checkout_session_id) == (
        "in_Story000001",
        "cs_test_Story000001",
    )

    partial = charge_refunded(
        event_id="evt_story_4",
        charge_id="ch_Story000001",
        payment_intent_id="pi_Story000001",
        amount_refunded=500,
        customer_id="cus_Story000001",
    )
    assert _send(app_server, shop, partial) == {"evt_story_4": ("done", None)}
    refunded = _one_sale(shop)
    assert refunded.refunded_amount == 500
    assert (refunded.payment_intent_id, refunded.charge_id) == (
        "pi_Story000001",
        "ch_Story000001",
    )
    assert state(shop.engine, shop.workspace_id)["commissions"] == [
        (1500, 150, 1000, "USD", "pending", False)
    ]
    # The charge names no invoice (API 2026-07-29): Stripe was asked, as the account.
    lookups = fake_stripe.calls("/v1/invoice_payments")
    assert len(lookups) == 1
    assert lookups[0].stripe_account == ACCOUNT
    assert lookups[0].authorization == f"Bearer {API_KEY}"
    assert lookups[0].query["payment[payment_intent]"] == "pi_Story000001"
    assert fake_stripe.calls("/v1/customers") == []  # every customer was known

    full = charge_refunded(
        event_id="evt_story_5",
        charge_id="ch_Story000001",
        payment_intent_id="pi_Story000001",
        amount_refunded=2000,
    )
    replayed_partial = dict(partial, id="evt_story_6")
    assert _send(app_server, shop, full, replayed_partial) == {
        "evt_story_5": ("done", None),
        "evt_story_6": ("done", None),
    }
    final = state(shop.engine, shop.workspace_id)
    assert [s["refunded"] for s in final["sales"]] == [2000]
    assert final["commissions"] == [(0, 0, 1000, "USD", "refunded", False)]
    assert final["rollups"] == [(DAY.isoformat(), False, 1, 1, 2000)]
    assert (
        len(fake_stripe.calls("/v1/invoice_payments")) == 1
    )  # later refunds found it by id


# --- who the customer is -----------------------------------------------------------------


def test_checkout_before_customer_created_asks_stripe_for_the_customer(
    app_server: LiveServer, shop: Shop, fake_stripe: FakeStripe
) -> None:
    click_id = shop.click("click_lookup_0000001")
    fake_stripe.add_customer(
        ACCOUNT,
        stripe_customer("cus_Lookup00001", external_id="user_7", click_id=click_id),
    )
    checkout = checkout_completed(
        event_id="evt_lookup_1",
        session_id="cs_test_Lookup1",
        customer_id="cus_Lookup00001",
        invoice_id="in_Lookup00001",
    )
    assert _send(app_server, shop, checkout) == {"evt_lookup_1": ("done", None)}

    calls = fake_stripe.calls("/v1/customers/cus_Lookup00001")
    assert [(c.stripe_account, c.authorization) for c in calls] == [
        (ACCOUNT, f"Bearer {API_KEY}")
    ]
    result = state(shop.engine, shop.workspace_id)
    assert result["leads"] == [("user_7", "Sign up", click_id, False, DAY.isoformat())]
    assert [s["customer"] for s in result["sales"]] == ["user_7"]


def test_events_of_customers_without_codeqr_metadata_are_skipped_with_the_reason(
    app_server: LiveServer, shop: Shop, fake_stripe: FakeStripe
) -> None:
    plain = stripe_customer("cus_Plain000001")
    fake_stripe.add_customer(ACCOUNT, plain)
    outcome = _send(
        app_server,
        shop,
        customer_event(plain, event_id="evt_plain_1"),
        invoice_paid(
            event_id="evt_plain_2",
            invoice_id="in_Plain1",
            customer_id="cus_Plain000001",
        ),
        invoice_paid(
            event_id="evt_plain_3",
            invoice_id="in_Plain2",
            customer_id="cus_Gone0000001",
        ),
        checkout_completed(
            event_id="evt_plain_4", session_id="cs_test_Guest", mode="payment"
        ),
    )
    assert {k: v[0] for k, v in outcome.items()} == dict.fromkeys(outcome, "skipped")
    assert "has no metadata.codeqrCustomerId" in str(outcome["evt_plain_1"][1])
    assert "not attributed to a CodeQR click" in str(outcome["evt_plain_2"][1])
    assert "does not exist" in str(outcome["evt_plain_3"][1])
    assert "not attributed to a CodeQR click" in str(outcome["evt_plain_4"][1])
    assert state(shop.engine, shop.workspace_id)["customers"] == []


def test_payment_link_client_reference_id_makes_customer_lead_and_sale(
    app_server: LiveServer, shop: Shop
) -> None:
    click_id = click_through(app_server, shop.link_key)
    checkout = checkout_completed(
        event_id="evt_plink_1",
        session_id="cs_test_PaymentLink1",
        customer_id="cus_PaymentLink1",
        payment_intent_id="pi_PaymentLink1",
        mode="payment",
        client_reference_id=f"codeqr_id_{click_id}",
    )
    assert _send(app_server, shop, checkout) == {"evt_plink_1": ("done", None)}
    result = state(shop.engine, shop.workspace_id)
    assert result["customers"] == [
        (
            "cus_PaymentLink1",
            "cus_PaymentLink1",
            "jenny.rosen@example.com",
            click_id,
            False,
            DAY.isoformat(),
        )
    ]
    assert result["leads"] == [
        ("cus_PaymentLink1", "Checkout", click_id, False, DAY.isoformat())
    ]
    assert result["sales"][0]["ids"] == (
        None,
        "cs_test_PaymentLink1",
        "pi_PaymentLink1",
        None,
    )

    # A refund of that payment finds the sale by its payment intent, without asking Stripe.
    refund = charge_refunded(
        event_id="evt_plink_2",
        charge_id="ch_PaymentLink1",
        payment_intent_id="pi_PaymentLink1",
        amount_refunded=2000,
    )
    assert _send(app_server, shop, refund) == {"evt_plink_2": ("done", None)}
    assert _one_sale(shop).refunded_amount == 2000


def test_payment_link_without_customer_falls_back_to_the_buyers_email(
    app_server: LiveServer, shop: Shop
) -> None:
    click_id = shop.click("click_guest_00000001")
    checkout = checkout_completed(
        event_id="evt_guest_1",
        session_id="cs_test_Guest1",
        mode="payment",
        payment_intent_id="pi_Guest1",
        client_reference_id=f"codeqr_id_{click_id}",
    )
    assert _send(app_server, shop, checkout) == {"evt_guest_1": ("done", None)}
    customers = state(shop.engine, shop.workspace_id)["customers"]
    assert [(c[0], c[1]) for c in customers] == [("jenny.rosen@example.com", None)]


def test_custom_checkout_metadata_waits_for_the_tracked_customer(
    app_server: LiveServer, shop: Shop
) -> None:
    checkout = checkout_completed(
        event_id="evt_custom_1",
        session_id="cs_test_Custom1",
        customer_id="cus_Custom0001",
        payment_intent_id="pi_Custom1",
        mode="payment",
        metadata={"codeqrCustomerId": "user_9"},
    )
    with app_server.client() as client:
        post_event(client, checkout)
    wait_until_attempted(shop.engine, "evt_custom_1")
    waiting = inbox(shop.engine, "evt_custom_1")
    assert (waiting.status, waiting.attempts) == ("pending", 1)
    assert "customer 'user_9' is not tracked yet" in str(waiting.reason)

    # trackLead comes from the merchant's backend a moment later.
    click_id = shop.click("click_custom_0000001")
    with Session(shop.engine) as session:
        workspace = session.get(Workspace, shop.workspace_id)
        assert workspace is not None
        conversions.record_lead(
            session, workspace, click_id=click_id, customer_external_id="user_9"
        )
        session.commit()
    assert wait_finished(shop.engine, ["evt_custom_1"]) == {
        "evt_custom_1": ("done", None)
    }
    result = state(shop.engine, shop.workspace_id)
    assert [(c[0], c[1]) for c in result["customers"]] == [("user_9", "cus_Custom0001")]
    assert [(s["customer"], s["click_id"]) for s in result["sales"]] == [
        ("user_9", click_id)
    ]


def test_click_of_another_workspace_never_attributes(
    app_server: LiveServer, shop: Shop
) -> None:
    other = make_shop("globex", "acct_1TestGlobex00000")
    foreign_click = other.click("click_globex_0000001")
    customer = stripe_customer(
        "cus_Foreign0001", external_id="user_x", click_id=foreign_click
    )
    outcome = _send(
        app_server, shop, customer_event(customer, event_id="evt_foreign_1")
    )

    assert outcome["evt_foreign_1"][0] == "dead"
    assert "does not exist in workspace 'acme'" in str(outcome["evt_foreign_1"][1])
    assert inbox(shop.engine, "evt_foreign_1").attempts == 6
    assert state(shop.engine, shop.workspace_id)["customers"] == []
    assert state(shop.engine, other.workspace_id)["customers"] == []


def test_two_workspaces_side_by_side_with_the_same_stripe_ids(
    app_server: LiveServer, shop: Shop, fake_stripe: FakeStripe
) -> None:
    other = make_shop("globex", "acct_1TestGlobex00000")
    mine, theirs = (
        shop.click("click_side_acme_0001"),
        other.click("click_side_globex_01"),
    )
    events = []
    for current, click_id, amount in ((shop, mine, 2000), (other, theirs, 7000)):
        customer = stripe_customer(
            "cus_Same0000001", external_id="user_1", click_id=click_id
        )
        events += [
            customer_event(
                customer,
                event_id=f"evt_side_{current.account}_1",
                account=current.account,
            ),
            invoice_paid(
                event_id=f"evt_side_{current.account}_2",
                invoice_id="in_Same0000001",
                customer_id="cus_Same0000001",
                amount_paid=amount,
                account=current.account,
            ),
        ]
    outcome = _send(app_server, shop, *events)
    assert {status for status, _ in outcome.values()} == {"done"}

    for current, click_id, amount in ((shop, mine, 2000), (other, theirs, 7000)):
        result = state(shop.engine, current.workspace_id)
        assert [c[3] for c in result["customers"]] == [click_id]
        assert [(s["click_id"], s["original"]) for s in result["sales"]] == [
            (click_id, (amount, "USD"))
        ]
        assert result["rollups"] == [(DAY.isoformat(), False, 1, 1, amount)]


# --- payments ------------------------------------------------------------------------------


def test_zero_invoice_is_no_sale_and_the_next_paid_one_is_attributed_to_the_click(
    app_server: LiveServer, shop: Shop
) -> None:
    click_id = shop.click("click_trial_00000001")
    customer = stripe_customer(
        "cus_Trial000001", external_id="user_t", click_id=click_id
    )
    trial = invoice_paid(
        event_id="evt_trial_2",
        invoice_id="in_Trial0000001",
        customer_id="cus_Trial000001",
        amount_paid=0,
    )
    first_paid = invoice_paid(
        event_id="evt_trial_3",
        invoice_id="in_Trial0000002",
        customer_id="cus_Trial000001",
        amount_paid=2900,
        paid_at=CREATED + 14 * 86_400,
        created=CREATED + 14 * 86_400,
    )
    outcome = _send(
        app_server,
        shop,
        customer_event(customer, event_id="evt_trial_1"),
        trial,
        first_paid,
    )
    assert outcome["evt_trial_2"][0] == "skipped"
    assert "paid 0 usd (trial or free): no sale" in str(outcome["evt_trial_2"][1])
    assert outcome["evt_trial_3"] == ("done", None)
    sale = _one_sale(shop)
    assert (sale.invoice_id, sale.original_amount, sale.click_id, sale.link_id) == (
        "in_Trial0000002",
        2900,
        click_id,
        shop.link_id,
    )
    assert sale.timestamp == datetime.fromtimestamp(CREATED + 14 * 86_400, UTC)


def test_unpaid_checkout_records_the_lead_and_async_payment_makes_the_sale(
    app_server: LiveServer, shop: Shop
) -> None:
    click_id = shop.click("click_async_00000001")
    metadata = {"codeqrCustomerId": "user_a", "codeqrClickId": click_id}
    pending = checkout_completed(
        event_id="evt_async_1",
        session_id="cs_test_Async1",
        mode="payment",
        payment_intent_id="pi_Async1",
        payment_status="unpaid",
        metadata=metadata,
    )
    assert _send(app_server, shop, pending) == {"evt_async_1": ("done", None)}
    waiting = state(shop.engine, shop.workspace_id)
    assert (len(waiting["leads"]), waiting["sales"]) == (1, [])

    succeeded = dict(
        pending, id="evt_async_2", type="checkout.session.async_payment_succeeded"
    )
    succeeded["data"] = {
        "object": dict(pending["data"]["object"], payment_status="paid")
    }
    assert _send(app_server, shop, succeeded) == {"evt_async_2": ("done", None)}
    assert _one_sale(shop).checkout_session_id == "cs_test_Async1"


def test_sale_also_sent_through_track_sale_stays_one_sale(
    app_server: LiveServer, shop: Shop
) -> None:
    click_id = shop.click("click_track_00000001")
    customer = stripe_customer(
        "cus_Track000001", external_id="user_s", click_id=click_id
    )
    assert _send(app_server, shop, customer_event(customer, event_id="evt_track_1"))
    token = create_api_key("acme")
    mutation = "mutation($input: TrackSaleInput!) { trackSale(input: $input) { sale { invoiceId } } }"
    variables = {
        "input": {
            "customerExternalId": "user_s",
            "amount": 2000,
            "currency": "usd",
            "invoiceId": "in_Track0000001",
            "eventName": "Purchase",
        }
    }
    with app_server.client(headers={"Authorization": f"Bearer {token}"}) as client:
        response = client.post(
            "/graphql", json={"query": mutation, "variables": variables}
        )
    assert response.status_code == 200 and "errors" not in response.json(), (
        response.text
    )

    paid = invoice_paid(
        event_id="evt_track_2",
        invoice_id="in_Track0000001",
        customer_id="cus_Track000001",
    )
    checkout = checkout_completed(
        event_id="evt_track_3",
        session_id="cs_test_Track1",
        customer_id="cus_Track000001",
        invoice_id="in_Track0000001",
    )
    assert _send(app_server, shop, paid, checkout) == {
        "evt_track_2": ("done", None),
        "evt_track_3": ("done", None),
    }
    sale = _one_sale(shop)
    assert (sale.invoice_id, sale.checkout_session_id, sale.livemode) == (
        "in_Track0000001",
        "cs_test_Track1",
        False,  # trackSale's row, in the mode of its test-mode Stripe customer
    )
    assert state(shop.engine, shop.workspace_id)["commissions"] == [
        (2000, 200, 1000, "USD", "pending", False)
    ]


# --- money --------------------------------------------------------------------------------

_ECB = CurrencyConverter(decimal=True)


def _usd_cents(amount: Decimal, code: str, day: date) -> int:
    usd = _ECB.convert(amount, code, "USD", date=day)
    return int((usd * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def test_jpy_kwd_and_eur_sales_in_their_minor_units(
    app_server: LiveServer, shop: Shop
) -> None:
    events = []
    for index, (code, amount) in enumerate(
        (("jpy", 5000), ("kwd", 5120), ("eur", 1850))
    ):
        click_id = shop.click(f"click_money_{code}_00001")
        events.append(
            checkout_completed(
                event_id=f"evt_money_{code}",
                session_id=f"cs_test_Money{index}",
                mode="payment",
                payment_intent_id=f"pi_Money{index}",
                amount=amount,
                currency=code,
                metadata={
                    "codeqrCustomerId": f"user_{code}",
                    "codeqrClickId": click_id,
                },
            )
        )
    assert {s for s, _ in _send(app_server, shop, *events).values()} == {"done"}

    sales = {s["customer"]: s for s in state(shop.engine, shop.workspace_id)["sales"]}
    day = DAY.date()
    assert sales["user_jpy"]["original"] == (5000, "JPY")  # ¥5000: no minor unit
    assert sales["user_jpy"]["amount"] == (
        _usd_cents(Decimal(5000), "JPY", day),
        "USD",
        False,
    )
    assert sales["user_kwd"]["original"] == (5120, "KWD")  # 5.120 KWD, thousandths
    assert sales["user_kwd"]["amount"] == (None, "USD", True)  # the ECB has no KWD rate
    assert sales["user_eur"]["original"] == (1850, "EUR")
    assert sales["user_eur"]["amount"] == (
        _usd_cents(Decimal("18.50"), "EUR", day),
        "USD",
        False,
    )
    assert _usd_cents(Decimal("18.50"), "EUR", day) == 2123  # 18.50 x 1.1476 = 21.2306


def test_adaptive_pricing_currency_conversion_gives_the_merchants_amount(
    app_server: LiveServer, shop: Shop
) -> None:
    click_id = shop.click("click_adaptive_00001")
    checkout = checkout_completed(
        event_id="evt_adaptive_1",
        session_id="cs_test_Adaptive1",
        mode="payment",
        payment_intent_id="pi_Adaptive1",
        amount=1850,
        currency="eur",
        metadata={"codeqrCustomerId": "user_ap", "codeqrClickId": click_id},
        currency_conversion={
            "amount_subtotal": 2000,
            "amount_total": 2000,
            "fx_rate": "0.925",
            "source_currency": "usd",
        },
    )
    refund = charge_refunded(
        event_id="evt_adaptive_2",
        charge_id="ch_Adaptive1",
        payment_intent_id="pi_Adaptive1",
        amount=1850,
        amount_refunded=925,
        currency="eur",
    )
    assert {s for s, _ in _send(app_server, shop, checkout, refund).values()} == {
        "done"
    }
    sale = _one_sale(shop)
    assert (sale.original_amount, sale.original_currency, sale.amount) == (
        2000,
        "USD",
        2000,
    )
    assert sale.refunded_amount == 1000  # half of the EUR charge is half of the sale


def test_test_mode_and_live_mode_rows_keep_their_livemode(
    app_server: LiveServer, shop: Shop
) -> None:
    for mode, livemode in (("test", False), ("live", True)):
        click_id = shop.click(f"click_mode_{mode}_00001")
        checkout = checkout_completed(
            event_id=f"evt_mode_{mode}",
            session_id=f"cs_{mode}_Mode1",
            mode="payment",
            payment_intent_id=f"pi_Mode_{mode}",
            livemode=livemode,
            amount=1000 if livemode else 300,
            metadata={"codeqrCustomerId": f"user_{mode}", "codeqrClickId": click_id},
        )
        assert _send(app_server, shop, checkout)[f"evt_mode_{mode}"] == ("done", None)
    result = state(shop.engine, shop.workspace_id)
    assert {(c[0], c[4]) for c in result["customers"]} == {
        ("user_test", False),
        ("user_live", True),
    }
    assert {(lead[0], lead[3]) for lead in result["leads"]} == {
        ("user_test", False),
        ("user_live", True),
    }
    assert {(s["customer"], s["livemode"]) for s in result["sales"]} == {
        ("user_test", False),
        ("user_live", True),
    }
    assert sorted(r[1:] for r in result["rollups"]) == [
        (False, 1, 1, 300),
        (True, 1, 1, 1000),
    ]


def test_refund_before_its_sale_waits_for_it(
    app_server: LiveServer, shop: Shop, fake_stripe: FakeStripe
) -> None:
    click_id = shop.click("click_early_00000001")
    refund = charge_refunded(
        event_id="evt_early_1",
        charge_id="ch_Early1",
        payment_intent_id="pi_Early1",
        amount_refunded=700,
    )
    checkout = checkout_completed(
        event_id="evt_early_2",
        session_id="cs_test_Early1",
        mode="payment",
        payment_intent_id="pi_Early1",
        metadata={"codeqrCustomerId": "u_e", "codeqrClickId": click_id},
    )
    with app_server.client() as client:
        post_event(client, refund)
        wait_until_attempted(shop.engine, "evt_early_1")
        post_event(client, checkout)
    assert wait_finished(shop.engine, ["evt_early_1", "evt_early_2"]) == {
        "evt_early_1": ("done", None),
        "evt_early_2": ("done", None),
    }
    assert inbox(shop.engine, "evt_early_1").attempts >= 1
    assert _one_sale(shop).refunded_amount == 700
    assert len(fake_stripe.calls("/v1/invoice_payments")) >= 1  # asked while it waited


def test_refund_before_its_sale_during_a_stripe_outage_says_the_sale_is_missing(
    app_server: LiveServer, shop: Shop, fake_stripe: FakeStripe
) -> None:
    fake_stripe.fail_with = 500
    refund = charge_refunded(
        event_id="evt_early_out",
        charge_id="ch_EarlyOut1",
        payment_intent_id="pi_EarlyOut1",
        amount_refunded=700,
    )
    with app_server.client() as client:
        post_event(client, refund)
        wait_until_attempted(shop.engine, "evt_early_out")
    row = inbox(shop.engine, "evt_early_out")
    assert (row.status, row.attempts) == ("pending", 1)
    reason = str(row.reason)
    assert reason.startswith("no sale yet for charge ch_EarlyOut1"), reason
    assert "Stripe look-up of its invoice" in reason and "500" in reason, reason


def test_stripe_outage_is_retried_not_skipped(
    app_server: LiveServer, shop: Shop, fake_stripe: FakeStripe
) -> None:
    click_id = shop.click("click_outage_0000001")
    fake_stripe.add_customer(
        ACCOUNT,
        stripe_customer("cus_Outage00001", external_id="user_o", click_id=click_id),
    )
    fake_stripe.fail_with = 500
    paid = invoice_paid(
        event_id="evt_outage_1", invoice_id="in_Outage1", customer_id="cus_Outage00001"
    )
    with app_server.client() as client:
        post_event(client, paid)
        wait_until_attempted(shop.engine, "evt_outage_1")
        row = inbox(shop.engine, "evt_outage_1")
        assert (row.status, row.attempts) == ("pending", 1)
        assert "Stripe answered 500" in str(row.reason)
        fake_stripe.fail_with = None
    assert wait_finished(shop.engine, ["evt_outage_1"]) == {
        "evt_outage_1": ("done", None)
    }
    assert _one_sale(shop).invoice_id == "in_Outage1"


# --- the installation ----------------------------------------------------------------------


def test_deauthorized_unlinks_the_account_and_revokes_tokens(
    app_server: LiveServer, shop: Shop
) -> None:
    with Session(shop.engine) as session:
        user = User(email="owner@acme.example", password_hash="x")
        session.add(user)
        session.add(
            OAuthClient(client_id="client_1", name="Stripe App", redirect_uris="[]")
        )
        session.flush()
        assert user.id is not None
        for index in range(2):
            session.add(
                OAuthToken(
                    family_id=f"family_{index}",
                    client_id="client_1",
                    user_id=user.id,
                    workspace_id=shop.workspace_id,
                    access_token_hash=f"{index:064d}",
                    access_expires_at=utcnow(),
                )
            )
        session.commit()

    outcome = _send(app_server, shop, deauthorized(event_id="evt_deauth_1"))
    assert outcome == {"evt_deauth_1": ("done", None)}
    with Session(shop.engine) as session:
        workspace = session.get(Workspace, shop.workspace_id)
        tokens = session.exec(select(OAuthToken)).all()
    assert workspace is not None
    assert (workspace.stripe_account_id, workspace.stripe_connected_at) == (None, None)
    assert len(tokens) == 2 and all(t.revoked_at is not None for t in tokens)

    again = _send(app_server, shop, deauthorized(event_id="evt_deauth_2"))
    assert (
        again["evt_deauth_2"][0] == "skipped"
    )  # no workspace has that account any more
    assert "unknown account" in str(again["evt_deauth_2"][1])


def test_customer_updated_refreshes_a_known_customer(
    app_server: LiveServer, shop: Shop
) -> None:
    click_id = shop.click("click_update_0000001")
    customer = stripe_customer(
        "cus_Update00001", external_id="user_u", click_id=click_id
    )
    updated = dict(customer, email="new@example.com", name="Jenny R.")
    outcome = _send(
        app_server,
        shop,
        customer_event(customer, event_id="evt_update_1"),
        customer_event(updated, event_id="evt_update_2", event_type="customer.updated"),
    )
    assert {s for s, _ in outcome.values()} == {"done"}
    with Session(shop.engine) as session:
        row = session.exec(select(Customer)).one()
    assert (row.email, row.name, row.external_id) == (
        "new@example.com",
        "Jenny R.",
        "user_u",
    )
    assert len(state(shop.engine, shop.workspace_id)["leads"]) == 1


@pytest.mark.parametrize("plan", ["free", "pro"])
def test_lower_plans_are_skipped_with_the_reason(
    app_server: LiveServer, plan: str
) -> None:
    small = make_shop("smallco", "acct_1TestSmall000000", plan=plan)
    click_id = small.click("click_small_00000001")
    customer = stripe_customer("cus_Small000001", external_id="u", click_id=click_id)
    outcome = _send(
        app_server,
        small,
        customer_event(customer, event_id="evt_small_1", account=small.account),
    )
    assert outcome["evt_small_1"][0] == "skipped"
    assert "Business" in str(outcome["evt_small_1"][1])
    assert state(small.engine, small.workspace_id)["customers"] == []


def test_older_api_versions_keep_the_payment_ids_their_objects_carry(
    app_server: LiveServer, shop: Shop, fake_stripe: FakeStripe
) -> None:
    click_id = shop.click("click_oldapi_0000001")
    customer = stripe_customer(
        "cus_OldApi00001", external_id="user_o", click_id=click_id
    )
    paid = invoice_paid(
        event_id="evt_oldapi_2",
        invoice_id="in_OldApi000001",
        customer_id="cus_OldApi00001",
        extra={"payment_intent": "pi_OldApi000001"},  # removed in 2025-03-31.basil
    )
    refund = charge_refunded(
        event_id="evt_oldapi_3",
        charge_id="ch_OldApi000001",
        payment_intent_id=None,
        amount_refunded=800,
    )
    refund["data"]["object"]["invoice"] = "in_OldApi000001"  # removed in basil as well
    for event in (paid, refund):
        event["api_version"] = "2024-06-20"
    outcome = _send(
        app_server,
        shop,
        customer_event(customer, event_id="evt_oldapi_1"),
        paid,
        refund,
    )
    assert {status for status, _ in outcome.values()} == {"done"}
    sale = _one_sale(shop)
    assert (sale.invoice_id, sale.payment_intent_id, sale.charge_id) == (
        "in_OldApi000001",
        "pi_OldApi000001",
        "ch_OldApi000001",
    )
    assert sale.refunded_amount == 800
    assert fake_stripe.requests == []  # everything was in the payloads
