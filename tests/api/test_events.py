"""The events connection: three tables merged newest first, keyset cursors, filters."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import (
    Api,
    Tenant,
    add_click,
    add_customer,
    add_lead,
    add_sale,
    make_tenant,
    minutes_ago,
)

EVENTS = """
query Events($first: Int, $after: String, $kinds: [EventKind!], $start: DateTime,
             $end: DateTime, $includeTestMode: Boolean! = false) {
  events(first: $first, after: $after, kinds: $kinds, start: $start, end: $end,
         includeTestMode: $includeTestMode) {
    edges {
      cursor
      node {
        __typename id kind timestamp clickId link { key }
        ... on Lead { eventName livemode customer { externalId } }
        ... on Sale {
          amount currency originalAmount originalCurrency refundedAmount invoiceId
          livemode customer { externalId }
        }
      }
    }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


def _page(api: Api, tenant: Tenant, **variables: Any) -> dict[str, Any]:
    events: dict[str, Any] = api.data(EVENTS, variables, token=tenant.token)["events"]
    return events


def _ids(page: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in page["edges"]]


def _story(tenant: Tenant) -> dict[str, Any]:
    """A click 30 minutes ago, its lead 20 minutes ago, a sale 10 minutes ago."""
    click_id = add_click(tenant, minutes_ago(30))
    customer = add_customer(tenant, "user_1", click_id=click_id, at=minutes_ago(20))
    lead = add_lead(tenant, customer, at=minutes_ago(20))
    sale = add_sale(tenant, customer, 4900, at=minutes_ago(10), invoice_id="in_1")
    return {"click_id": click_id, "customer": customer, "lead": lead, "sale": sale}


def test_events_merge_clicks_leads_and_sales_newest_first(api: Api) -> None:
    tenant = make_tenant("acme")
    story = _story(tenant)

    page = _page(api, tenant)

    nodes = [edge["node"] for edge in page["edges"]]
    assert [n["__typename"] for n in nodes] == ["Sale", "Lead", "Click"]
    assert [n["kind"] for n in nodes] == ["SALE", "LEAD", "CLICK"]
    sale, lead, click = nodes
    assert click["clickId"] == story["click_id"]
    assert click["link"] == {"key": tenant.link_key}
    assert lead["eventName"] == "Sign up"
    assert lead["customer"] == {"externalId": "user_1"}
    assert sale["amount"] == 4900
    assert sale["currency"] == "USD"
    assert sale["originalAmount"] == 4900
    assert sale["originalCurrency"] == "EUR"
    assert sale["refundedAmount"] == 0
    assert sale["invoiceId"] == "in_1"
    assert sale["livemode"] is True
    assert sale["customer"] == {"externalId": "user_1"}
    assert page["pageInfo"]["hasNextPage"] is False
    assert page["pageInfo"]["hasPreviousPage"] is False
    assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]


def test_events_pages_are_stable_when_events_arrive_between_pages(api: Api) -> None:
    tenant = make_tenant("acme")
    for minute in range(10, 0, -1):
        add_click(tenant, minutes_ago(minute + 100))
    customer = add_customer(tenant, "user_1")
    for minute in range(5):
        add_lead(
            tenant, customer, at=minutes_ago(minute + 100.5), event_name=f"e{minute}"
        )
    expected = _ids(_page(api, tenant, first=100))
    assert len(expected) == 15

    seen: list[str] = []
    after = None
    while True:
        page = _page(api, tenant, first=4, after=after)
        seen.extend(_ids(page))
        # Newer events arrive between the pages.
        add_click(tenant)
        add_lead(tenant, customer, event_name=f"new{len(seen)}")
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    assert seen[: len(expected)] == expected
    assert len(seen) == len(set(seen))


def test_events_cursor_ties_on_the_same_instant_page_without_loss(api: Api) -> None:
    tenant = make_tenant("acme")
    moment = minutes_ago(5)
    for _ in range(7):
        add_click(tenant, moment)
    customer = add_customer(tenant, "user_1")
    add_lead(tenant, customer, at=moment)
    add_sale(tenant, customer, 100, at=moment)
    expected = _ids(_page(api, tenant, first=100))

    seen: list[str] = []
    after = None
    for _ in range(10):
        page = _page(api, tenant, first=2, after=after)
        seen.extend(_ids(page))
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break

    assert seen == expected
    assert len(seen) == 9


def test_events_kinds_filter_returns_only_those_kinds(api: Api) -> None:
    tenant = make_tenant("acme")
    _story(tenant)

    sales = _page(api, tenant, kinds=["SALE"])
    leads_and_clicks = _page(api, tenant, kinds=["LEAD", "CLICK"])

    assert [e["node"]["kind"] for e in sales["edges"]] == ["SALE"]
    assert [e["node"]["kind"] for e in leads_and_clicks["edges"]] == ["LEAD", "CLICK"]


def test_events_start_and_end_bound_the_range(api: Api) -> None:
    tenant = make_tenant("acme")
    _story(tenant)

    page = _page(
        api,
        tenant,
        start=minutes_ago(25).isoformat(),
        end=minutes_ago(15).isoformat(),
    )

    assert [e["node"]["kind"] for e in page["edges"]] == ["LEAD"]


def test_events_list_test_mode_by_default_and_leave_it_out_when_asked(
    api: Api,
) -> None:
    tenant = make_tenant("acme")
    customer = add_customer(tenant, "user_1", livemode=False)
    add_lead(tenant, customer, livemode=False)
    add_sale(tenant, customer, 100, livemode=False)

    default = api.data(
        "{ events(first: 10) { edges { node { kind ... on Sale { livemode } } } } }",
        {},
        token=tenant.token,
    )["events"]
    live = _page(api, tenant, includeTestMode=False)
    everything = _page(api, tenant, includeTestMode=True)

    assert [e["node"]["kind"] for e in default["edges"]] == ["SALE", "LEAD"]
    assert default["edges"][0]["node"]["livemode"] is False
    assert live["edges"] == []
    assert [e["node"]["livemode"] for e in everything["edges"]] == [False, False]


@pytest.mark.parametrize("first", [101, -1, 10_000])
def test_events_first_out_of_range_is_bad_user_input(api: Api, first: int) -> None:
    tenant = make_tenant("acme")

    response = api.post(EVENTS, {"first": first}, token=tenant.token)

    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert str(first) in error["message"]


@pytest.mark.parametrize(
    "cursor", ["garbage", "", "eyJ4Ijox", "WyJjdXN0b21lcnMiLCIyMDI0LTAxLTAxIiwxXQ"]
)
def test_events_foreign_or_broken_cursor_is_bad_user_input(
    api: Api, cursor: str
) -> None:
    tenant = make_tenant("acme")

    codes = api.error_codes(EVENTS, {"after": cursor}, token=tenant.token)

    assert codes == ["BAD_USER_INPUT"]


def test_events_first_defaults_to_25(api: Api) -> None:
    tenant = make_tenant("acme")
    for minute in range(30):
        add_click(tenant, minutes_ago(minute))

    page = _page(api, tenant)

    assert len(page["edges"]) == 25
    assert page["pageInfo"]["hasNextPage"] is True
