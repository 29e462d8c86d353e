"""A Stripe id longer than our columns hold ends the same way on SQLite and PostgreSQL:
skipped at once with a reason, not stored on one and retried to death on the other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stripe_app.worker import drain
from tests.conftest import LiveServer, start_server
from tests.stripe_app.attribution_fixtures import make_shop
from tests.stripe_app.fake_stripe import FakeStripe
from tests.stripe_app.stripe_events import (
    customer_event,
    inbox_rows,
    post_event,
    stripe_customer,
)

ACCOUNT = "acct_1Overlong0000003"


@pytest.fixture
def rx(
    settings_env: dict[str, str],
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LiveServer]:
    monkeypatch.setenv("CODEQR_WORKER_ENABLED", "false")
    monkeypatch.setenv("CODEQR_WORKER_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("CODEQR_WORKER_BACKOFF_BASE_SECONDS", "0")
    server = start_server()
    yield server
    server.stop()


def test_an_overlong_stripe_customer_id_is_skipped_not_retried_to_death(
    rx: LiveServer,
) -> None:
    shop = make_shop("overlong", ACCOUNT)
    click = shop.click("click_overlong_0001")
    customer = stripe_customer("cus_" + "x" * 300, external_id="hx", click_id=click)
    with rx.client() as client:
        post_event(client, customer_event(customer, event_id="evt_h", account=ACCOUNT))
    for _ in range(5):
        drain()
    row = inbox_rows(shop.engine, ["evt_h"])["evt_h"]
    assert (row.status, row.attempts) == ("skipped", 0), (row.status, row.reason)
    assert "stripeCustomerId must be a non-empty string" in str(row.reason)
