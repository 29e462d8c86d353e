"""A Stripe id longer than our columns hold ends the same way on SQLite and PostgreSQL:
skipped at once with a reason, not stored on one and retried to death on the other."""

from __future__ import annotations

from stripe_app.worker import drain
from tests.conftest import LiveServer
from tests.stripe_app.attribution_fixtures import make_shop
from tests.stripe_app.stripe_events import (
    customer_event,
    inbox_rows,
    post_event,
    stripe_customer,
)

ACCOUNT = "acct_1Overlong0000003"


def test_an_overlong_stripe_customer_id_is_skipped_not_retried_to_death(
    quick_giving_up_receiver: LiveServer,
) -> None:
    shop = make_shop("overlong", ACCOUNT)
    click = shop.click("click_overlong_0001")
    customer = stripe_customer("cus_" + "x" * 300, external_id="hx", click_id=click)
    with quick_giving_up_receiver.client() as client:
        post_event(client, customer_event(customer, event_id="evt_h", account=ACCOUNT))
    for _ in range(5):
        drain()
    row = inbox_rows(shop.engine, ["evt_h"])["evt_h"]
    assert (row.status, row.attempts) == ("skipped", 0), (row.status, row.reason)
    assert "stripeCustomerId must be a non-empty string" in str(row.reason)
