"""The Stripe API client of the handlers against the fake Stripe API on loopback: the
platform key as bearer, the connected account in Stripe-Account, answers and failures."""

from __future__ import annotations

import pytest

from stripe_app.stripe_api import (
    StripeApi,
    StripeApiError,
    StripeApiUnavailable,
    get_stripe_api,
)
from tests.conftest import free_port
from tests.stripe_app.fake_stripe import API_KEY, FakeStripe
from tests.stripe_app.stripe_events import ACCOUNT, stripe_customer


def test_retrieve_customer_asks_as_the_connected_account(
    fake_stripe: FakeStripe,
) -> None:
    fake_stripe.add_customer(
        ACCOUNT, stripe_customer("cus_Api0000001", external_id="u1")
    )

    found = get_stripe_api().retrieve_customer(ACCOUNT, "cus_Api0000001")

    assert found is not None
    assert (found["id"], found["metadata"]) == (
        "cus_Api0000001",
        {"codeqrCustomerId": "u1"},
    )
    [call] = fake_stripe.requests
    assert (call.method, call.path) == ("GET", "/v1/customers/cus_Api0000001")
    assert (call.authorization, call.stripe_account) == (f"Bearer {API_KEY}", ACCOUNT)


def test_a_customer_of_another_account_or_a_deleted_one_is_none(
    fake_stripe: FakeStripe,
) -> None:
    fake_stripe.add_customer(
        "acct_1TestOther0000000", stripe_customer("cus_Api0000002")
    )
    fake_stripe.add_customer(
        ACCOUNT, {"id": "cus_Api0000003", "object": "customer", "deleted": True}
    )
    api = get_stripe_api()
    assert api.retrieve_customer(ACCOUNT, "cus_Api0000002") is None
    assert api.retrieve_customer(ACCOUNT, "cus_Api0000003") is None


def test_invoice_ids_for_a_payment_intent(fake_stripe: FakeStripe) -> None:
    fake_stripe.add_invoice_payment(
        ACCOUNT, invoice_id="in_Api1", payment_intent_id="pi_Api1", amount=1000
    )
    fake_stripe.add_invoice_payment(
        ACCOUNT, invoice_id="in_Api2", payment_intent_id="pi_Api1", amount=500
    )
    api = get_stripe_api()
    assert api.invoice_ids_for_payment_intent(ACCOUNT, "pi_Api1") == [
        "in_Api1",
        "in_Api2",
    ]
    assert api.invoice_ids_for_payment_intent(ACCOUNT, "pi_Unknown") == []
    query = fake_stripe.calls("/v1/invoice_payments")[0].query
    assert query["payment[type]"] == "payment_intent"
    assert query["payment[payment_intent]"] == "pi_Api1"


def test_a_refused_key_is_unavailable_and_the_message_never_shows_it(
    fake_stripe: FakeStripe,
) -> None:
    api = StripeApi(fake_stripe.url, "sk_test_wrong_key_0000000000")
    with pytest.raises(StripeApiUnavailable) as caught:
        api.retrieve_customer(ACCOUNT, "cus_Api0000001")
    api.close()
    assert caught.value.status == 401
    assert "401 invalid_request_error" in caught.value.message
    assert "sk_test" not in str(caught.value)


def test_outage_unreachable_and_missing_key_are_unavailable(
    fake_stripe: FakeStripe,
) -> None:
    fake_stripe.fail_with = 503
    with pytest.raises(StripeApiUnavailable, match="503"):
        get_stripe_api().retrieve_customer(ACCOUNT, "cus_Api0000001")

    nobody = StripeApi(f"http://127.0.0.1:{free_port()}", API_KEY, timeout=2)
    with pytest.raises(StripeApiUnavailable, match="ConnectError"):
        nobody.retrieve_customer(ACCOUNT, "cus_Api0000001")
    nobody.close()

    keyless = StripeApi(fake_stripe.url, "")
    with pytest.raises(StripeApiUnavailable, match="CODEQR_STRIPE_API_KEY"):
        keyless.invoice_ids_for_payment_intent(ACCOUNT, "pi_Api1")
    keyless.close()
    assert len(fake_stripe.requests) == 1  # neither of the last two reached the fake


@pytest.mark.parametrize("bad", ["../v1/charges", "cus_1?expand=x", "cus 1", ""])
def test_ids_that_are_not_stripe_ids_are_refused_before_any_request(
    fake_stripe: FakeStripe, bad: str
) -> None:
    with pytest.raises(StripeApiError, match="not a Stripe id"):
        get_stripe_api().retrieve_customer(ACCOUNT, bad)
    assert fake_stripe.requests == []
