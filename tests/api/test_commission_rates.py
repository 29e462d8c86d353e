"""Commission rates set with the CLI: the workspace's default, a partner's own rate, and
the refusals, read back through GraphQL after real trackLead/trackSale calls."""

from __future__ import annotations

from typing import Any

import pytest

from server.cli import create_api_key, create_link, create_workspace, main
from tests.api.conftest import Api, add_click
from tests.api.conftest import Tenant as _Tenant

TRACK = """
mutation($click: String!, $who: String!) {
  trackLead(input: {clickId: $click, customerExternalId: $who}) { lead { id } }
  trackSale(input: {customerExternalId: $who, amount: 10000, currency: "USD"}) {
    sale { id }
  }
}
"""
COMMISSIONS = """
{ commissions(first: 10) { edges { node { rateBps earnings partner { email } } } } }
"""


def _sell_through(api: Api, tenant: _Tenant, link: dict[str, Any], who: str) -> None:
    link_tenant = _Tenant(tenant.id, tenant.slug, tenant.token, link["id"], link["key"])
    data = api.data(
        TRACK, {"click": add_click(link_tenant), "who": who}, token=tenant.token
    )
    assert data["trackSale"]["sale"]["id"]


def test_partner_rate_then_workspace_rate(api: Api) -> None:
    workspace = create_workspace("acme", plan="business", commission_rate_bps=2000)
    assert workspace.id is not None
    tenant = _Tenant(workspace.id, "acme", create_api_key("acme"), 0, "")
    default = create_link("acme", "https://a.example/", partner="ann@example.com")
    own = create_link(
        "acme", "https://b.example/", partner="bob@example.com", commission_rate_bps=500
    )
    assert (default["commissionRateBps"], own["commissionRateBps"]) == (2000, 500)

    _sell_through(api, tenant, default, "u1")
    _sell_through(api, tenant, own, "u2")

    edges = api.data(COMMISSIONS, token=tenant.token)["commissions"]["edges"]
    by_partner = {e["node"]["partner"]["email"]: e["node"] for e in edges}
    assert by_partner["ann@example.com"]["rateBps"] == 2000
    assert by_partner["ann@example.com"]["earnings"] == 2000
    assert by_partner["bob@example.com"]["rateBps"] == 500
    assert by_partner["bob@example.com"]["earnings"] == 500


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["workspace", "create", "w", "--commission-rate-bps", "10001"], "0 to 10000"),
        (["workspace", "create", "w", "--commission-rate-bps", "-1"], "0 to 10000"),
        (
            ["link", "create", "--workspace", "acme", "--url", "https://a.example/",
             "--commission-rate-bps", "100"],
            "add --partner",
        ),
    ],
)  # fmt: skip
def test_commission_rates_out_of_range_or_without_partner_are_refused(
    settings_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    create_workspace("acme", plan="business")
    capsys.readouterr()
    assert main(argv) == 2
    assert message in capsys.readouterr().err
