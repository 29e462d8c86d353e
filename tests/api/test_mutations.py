"""trackLead and trackSale over real HTTP, with the real attribution domain."""

from __future__ import annotations

import secrets
import threading
from typing import Any

import pytest

from tests.api.conftest import Api, Tenant, add_click, make_tenant

TRACK_LEAD = """
mutation TrackLead($input: TrackLeadInput!) {
  trackLead(input: $input) {
    lead { id kind eventName clickId livemode link { key } customer { externalId } }
    customer { externalId email name clickId link { key } }
  }
}
"""
TRACK_SALE = """
mutation TrackSale($input: TrackSaleInput!) {
  trackSale(input: $input) {
    sale {
      id kind amount currency originalAmount originalCurrency invoiceId eventName
      clickId link { key } customer { externalId }
    }
    customer { externalId }
  }
}
"""
COUNTS = """
{
  funnel { clicks leads sales saleAmount }
  events(kinds: [LEAD, SALE]) { edges { node { kind } } }
}
"""


def _lead(api: Api, tenant: Tenant, click_id: str, **extra: Any) -> Any:
    variables = {
        "input": {"clickId": click_id, "customerExternalId": "user_1", **extra}
    }
    return api.post(TRACK_LEAD, variables, token=tenant.token).json()


def _sale(api: Api, tenant: Tenant, **fields: Any) -> Any:
    variables = {"input": {"customerExternalId": "user_1", "amount": 4900, **fields}}
    return api.post(TRACK_SALE, variables, token=tenant.token).json()


def test_track_lead_attributes_the_customer_to_the_click(api: Api) -> None:
    tenant = make_tenant("acme")
    click = add_click(tenant)

    body = _lead(
        api, tenant, click, customerName="Ada", customerEmail="ada@example.com"
    )

    assert "errors" not in body, body
    payload = body["data"]["trackLead"]
    assert payload["lead"]["kind"] == "LEAD"
    assert payload["lead"]["eventName"] == "Sign up"
    assert payload["lead"]["clickId"] == click
    assert payload["lead"]["livemode"] is True
    assert payload["lead"]["link"] == {"key": tenant.link_key}
    assert payload["lead"]["customer"] == {"externalId": "user_1"}
    assert payload["customer"] == {
        "externalId": "user_1",
        "email": "ada@example.com",
        "name": "Ada",
        "clickId": click,
        "link": {"key": tenant.link_key},
    }
    counts = api.data(COUNTS, token=tenant.token)
    assert counts["funnel"]["leads"] == 1
    assert [e["node"]["kind"] for e in counts["events"]["edges"]] == ["LEAD"]


def test_track_lead_right_after_a_real_redirect_finds_the_batched_click(
    api: Api,
) -> None:
    tenant = make_tenant("acme")
    redirect = api.http.get(f"/{tenant.link_key}", follow_redirects=False)
    assert redirect.status_code == 302
    click = redirect.headers["location"].split("cq_id=")[1].split("&")[0]

    body = _lead(api, tenant, click)

    assert "errors" not in body, body
    assert body["data"]["trackLead"]["lead"]["clickId"] == click


def test_track_lead_waits_for_a_click_another_process_is_about_to_write(
    api: Api,
) -> None:
    """Under ``serve --workers N`` the redirect may have been served, and its click
    queued, by another process: trackLead waits a few of its flush intervals."""
    tenant = make_tenant("acme")
    click = secrets.token_urlsafe(16)
    other_process = threading.Timer(0.15, add_click, (tenant,), {"click_id": click})
    other_process.start()
    try:
        body = _lead(api, tenant, click)
    finally:
        other_process.join()

    assert "errors" not in body, body
    assert body["data"]["trackLead"]["lead"]["clickId"] == click


def test_track_lead_with_unknown_click_is_not_found_naming_it(api: Api) -> None:
    tenant = make_tenant("acme")

    body = _lead(api, tenant, "no_such_click_0123456789")

    error = body["errors"][0]
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert "no_such_click_0123456789" in error["message"]
    assert body["data"] is None


def test_track_lead_with_another_workspaces_click_is_not_found(api: Api) -> None:
    tenant = make_tenant("acme")
    other = make_tenant("other")
    foreign_click = add_click(other)

    body = _lead(api, tenant, foreign_click)

    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert api.data(COUNTS, token=other.token)["funnel"]["leads"] == 0


def test_track_lead_on_free_plan_is_plan_required(api: Api) -> None:
    tenant = make_tenant("acme", plan="free")
    click = add_click(tenant)

    body = _lead(api, tenant, click)

    assert body["errors"][0]["extensions"]["code"] == "PLAN_REQUIRED"


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"customerExternalId": ""}, "customerExternalId"),
        ({"eventName": "   "}, "eventName"),
        ({"customerEmail": "x" * 400}, "customerEmail"),
    ],
)
def test_track_lead_bad_fields_are_bad_user_input(
    api: Api, fields: dict[str, str], name: str
) -> None:
    tenant = make_tenant("acme")

    body = _lead(api, tenant, add_click(tenant), **fields)

    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert name in error["message"]


def test_track_sale_records_one_sale_per_invoice(api: Api) -> None:
    tenant = make_tenant("acme")
    click = add_click(tenant)
    _lead(api, tenant, click)

    first = _sale(api, tenant, currency="usd", invoiceId="in_123")
    second = _sale(api, tenant, currency="usd", invoiceId="in_123")

    assert "errors" not in first, first
    sale = first["data"]["trackSale"]["sale"]
    assert sale["kind"] == "SALE"
    assert sale["amount"] == 4900
    assert sale["currency"] == "USD"
    assert sale["originalAmount"] == 4900
    assert sale["originalCurrency"] == "USD"
    assert sale["invoiceId"] == "in_123"
    assert sale["eventName"] == "Purchase"
    assert sale["clickId"] == click
    assert sale["link"] == {"key": tenant.link_key}
    assert sale["customer"] == {"externalId": "user_1"}
    assert second["data"]["trackSale"]["sale"]["id"] == sale["id"]
    counts = api.data(COUNTS, token=tenant.token)
    assert counts["funnel"]["sales"] == 1
    assert counts["funnel"]["saleAmount"] == 4900
    assert [e["node"]["kind"] for e in counts["events"]["edges"]] == ["SALE", "LEAD"]


def test_track_sale_of_a_test_mode_customer_is_a_test_mode_sale(api: Api) -> None:
    from server import conversions
    from server.db import session_scope
    from server.models import Workspace

    tenant = make_tenant("acme")
    click = add_click(tenant)
    with session_scope() as session:  # a customer seen in a Stripe test-mode event
        workspace = session.get(Workspace, tenant.id)
        assert workspace is not None
        conversions.record_customer_lead(
            session,
            workspace,
            click_id=click,
            customer_external_id="user_1",
            livemode=False,
        )

    body = _sale(api, tenant, currency="usd", invoiceId="in_test_1")

    assert "errors" not in body, body
    live = api.data(COUNTS, token=tenant.token)["funnel"]
    everything = api.data(
        "{ funnel(includeTestMode: true) { sales saleAmount } }", token=tenant.token
    )["funnel"]
    assert (live["sales"], live["saleAmount"]) == (0, 0)
    assert everything == {"sales": 1, "saleAmount": 4900}


def test_track_sale_in_jpy_keeps_the_original_and_converts(api: Api) -> None:
    tenant = make_tenant("acme")
    _lead(api, tenant, add_click(tenant))

    body = _sale(api, tenant, amount=5000, currency="JPY")

    sale = body["data"]["trackSale"]["sale"]
    assert sale["originalAmount"] == 5000
    assert sale["originalCurrency"] == "JPY"
    assert sale["currency"] == "USD"
    assert sale["amount"] is None or 0 < sale["amount"] < 5000


def test_track_sale_for_unknown_customer_is_not_found(api: Api) -> None:
    tenant = make_tenant("acme")

    body = _sale(api, tenant, customerExternalId="ghost")

    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert "ghost" in body["errors"][0]["message"]


def test_track_sale_on_free_plan_is_plan_required(api: Api) -> None:
    tenant = make_tenant("acme", plan="pro")

    body = _sale(api, tenant)

    assert body["errors"][0]["extensions"]["code"] == "PLAN_REQUIRED"


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"amount": -1}, "amount"),
        ({"currency": "US"}, "currency"),
        ({"currency": "U$D"}, "currency"),
        ({"currency": "XYZ"}, "'XYZ' is not an ISO 4217 currency"),
        ({"currency": "xxx"}, "'xxx' is not an ISO 4217 currency"),
        ({"currency": "HRK"}, "'HRK' is not an ISO 4217 currency"),
    ],
)
def test_track_sale_bad_amount_or_currency_is_bad_user_input(
    api: Api, fields: dict[str, Any], name: str
) -> None:
    tenant = make_tenant("acme")
    _lead(api, tenant, add_click(tenant))

    body = _sale(api, tenant, **fields)

    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert name in error["message"]


def test_track_sale_amount_beyond_32_bits_is_refused_by_the_schema(api: Api) -> None:
    tenant = make_tenant("acme")

    body = _sale(api, tenant, amount=2**31)

    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
