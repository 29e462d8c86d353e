"""Related rows load in batches: one query per relation, however many nodes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.conftest import Api, add_click, add_customer, add_lead, make_tenant
from tests.conftest import recorded_statements

EVENTS = """
{
  events(first: 50) {
    edges { node { link { key } ... on Lead { customer { externalId link { key } } } } }
  }
}
"""


@pytest.fixture
def statements() -> Iterator[list[str]]:
    # The live server's threads run the queries asked of it: keep theirs.
    with recorded_statements(this_thread_only=False) as seen:
        yield seen


def test_events_with_links_and_customers_use_one_query_per_relation(
    api: Api, statements: list[str]
) -> None:
    tenant = make_tenant("acme")
    for index in range(10):
        customer = add_customer(tenant, f"user_{index}", click_id=add_click(tenant))
        add_lead(tenant, customer)
    statements.clear()

    data = api.data(EVENTS, token=tenant.token)

    assert len(data["events"]["edges"]) == 20
    from_link = [s for s in statements if "\nFROM link" in s]
    from_customer = [s for s in statements if "\nFROM customer" in s]
    assert len(from_link) == 1
    assert len(from_customer) == 1
