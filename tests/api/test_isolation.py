"""Workspace isolation: a key of one workspace sees nothing of another."""

from __future__ import annotations

from tests.api.conftest import (
    Api,
    add_click,
    add_commission,
    add_customer,
    add_lead,
    add_sale,
    make_tenant,
    minutes_ago,
)

EVERYTHING = """
{
  workspace { slug }
  customers(first: 100) { edges { node { id externalId } } }
  customer(externalId: "b_user") { externalId }
  events(first: 100, includeTestMode: true) { edges { node { id kind } } }
  funnel(includeTestMode: true) { clicks leads sales saleAmount }
  commissions(first: 100, includeTestMode: true) { edges { node { id } } }
  payouts(first: 100) { edges { node { id } } }
}
"""
NODE = "query Node($id: ID!) { node(id: $id) { id } }"


def test_key_of_workspace_a_sees_nothing_of_workspace_b(api: Api) -> None:
    a = make_tenant("alpha")
    b = make_tenant("beta", partner="partner@example.com")
    click = add_click(b)
    customer = add_customer(b, "b_user", email="b@example.com", click_id=click)
    add_lead(b, customer)
    sale = add_sale(b, customer, 5000)
    add_commission(b, sale, "partner@example.com", at=minutes_ago(1))

    seen_by_a = api.data(EVERYTHING, token=a.token)
    seen_by_b = api.data(EVERYTHING, token=b.token)

    assert seen_by_a == {
        "workspace": {"slug": "alpha"},
        "customers": {"edges": []},
        "customer": None,
        "events": {"edges": []},
        "funnel": {"clicks": 0, "leads": 0, "sales": 0, "saleAmount": 0},
        "commissions": {"edges": []},
        "payouts": {"edges": []},
    }
    assert seen_by_b["workspace"] == {"slug": "beta"}
    assert len(seen_by_b["customers"]["edges"]) == 1
    assert seen_by_b["customer"] == {"externalId": "b_user"}
    assert [e["node"]["kind"] for e in seen_by_b["events"]["edges"]] == [
        "SALE",
        "LEAD",
        "CLICK",
    ]
    assert seen_by_b["funnel"] == {
        "clicks": 1,
        "leads": 1,
        "sales": 1,
        "saleAmount": 5000,
    }
    assert len(seen_by_b["commissions"]["edges"]) == 1
    assert len(seen_by_b["payouts"]["edges"]) == 1


def test_global_id_of_another_workspace_is_indistinguishable_from_missing(
    api: Api,
) -> None:
    a = make_tenant("alpha")
    b = make_tenant("beta")
    customer = add_customer(b, "b_user", click_id=add_click(b))
    add_lead(b, customer)
    seen_by_b = api.data(EVERYTHING, token=b.token)
    ids = [edge["node"]["id"] for edge in seen_by_b["events"]["edges"]]
    ids.append(seen_by_b["customers"]["edges"][0]["node"]["id"])
    assert len(ids) == 3

    for global_id in ids:
        own = api.data(NODE, {"id": global_id}, token=b.token)
        foreign = api.data(NODE, {"id": global_id}, token=a.token)
        assert own == {"node": {"id": global_id}}
        assert foreign == {"node": None}
    assert api.data(NODE, {"id": "not-an-id"}, token=a.token) == {"node": None}
