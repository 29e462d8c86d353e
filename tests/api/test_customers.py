"""customers (search, keyset pages) and customer(externalId)."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import (
    Api,
    Tenant,
    add_click,
    add_customer,
    make_tenant,
    minutes_ago,
)

CUSTOMERS = """
query Customers($first: Int, $after: String, $search: String) {
  customers(first: $first, after: $after, search: $search) {
    edges { cursor node { id externalId stripeCustomerId email name clickId link { key } } }
    nodes { externalId }
    pageInfo { hasNextPage endCursor }
  }
}
"""
CUSTOMER = """
query Customer($externalId: String!) {
  customer(externalId: $externalId) {
    id externalId stripeCustomerId email name link { key } clickId
  }
}
"""


def _customers(api: Api, tenant: Tenant, **variables: Any) -> dict[str, Any]:
    result: dict[str, Any] = api.data(CUSTOMERS, variables, token=tenant.token)
    return result["customers"]


def test_customer_by_external_id_returns_its_attribution(api: Api) -> None:
    tenant = make_tenant("acme")
    click = add_click(tenant)
    add_customer(tenant, "user_42", email="ada@example.com", name="Ada", click_id=click)

    found = api.data(CUSTOMER, {"externalId": "user_42"}, token=tenant.token)
    missing = api.data(CUSTOMER, {"externalId": "user_43"}, token=tenant.token)

    customer = found["customer"]
    assert customer["externalId"] == "user_42"
    assert customer["email"] == "ada@example.com"
    assert customer["name"] == "Ada"
    assert customer["clickId"] == click
    assert customer["link"] == {"key": tenant.link_key}
    assert customer["stripeCustomerId"] is None
    assert customer["id"]
    assert missing == {"customer": None}


def test_customers_search_matches_external_id_email_and_name(api: Api) -> None:
    tenant = make_tenant("acme")
    add_customer(tenant, "user_1", email="ada@lovelace.org", name="Ada")
    add_customer(tenant, "user_2", email="alan@turing.org", name="Alan")
    add_customer(tenant, "crm_%_3", email="grace@navy.mil", name="Grace Hopper")

    def search(term: str) -> list[str]:
        page = _customers(api, tenant, search=term)
        return sorted(node["externalId"] for node in page["nodes"])

    assert search("USER_") == ["user_1", "user_2"]
    assert search("turing") == ["user_2"]
    assert search("hopper") == ["crm_%_3"]
    assert search("%") == ["crm_%_3"]
    assert search("nobody") == []


def test_customers_pages_newest_first_without_duplicates(api: Api) -> None:
    tenant = make_tenant("acme")
    for index in range(7):
        add_customer(tenant, f"user_{index}", at=minutes_ago(100 - index))

    seen: list[str] = []
    after = None
    while True:
        page = _customers(api, tenant, first=3, after=after)
        seen.extend(node["externalId"] for node in page["nodes"])
        add_customer(tenant, f"late_{len(seen)}")
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    assert seen == [f"user_{index}" for index in range(6, -1, -1)]


def test_customers_search_longer_than_200_is_bad_user_input(api: Api) -> None:
    tenant = make_tenant("acme")

    codes = api.error_codes(CUSTOMERS, {"search": "x" * 201}, token=tenant.token)

    assert codes == ["BAD_USER_INPUT"]
