"""``codeqr workspace update``: a free workspace upgraded to Business can track
conversions at once; what it cannot change is refused with a message."""

from __future__ import annotations

import json

import pytest

from server.cli import main
from tests.api.conftest import Api, add_click, make_tenant

TRACK_LEAD = """
mutation($click: String!) {
  trackLead(input: {clickId: $click, customerExternalId: "u1"}) { lead { id } }
}
"""


def test_upgrading_the_plan_turns_conversion_tracking_on(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = make_tenant("acme", plan="free")
    click = add_click(tenant)
    refused = api.error_codes(TRACK_LEAD, {"click": click}, token=tenant.token)
    assert refused == ["PLAN_REQUIRED"]

    capsys.readouterr()
    assert main(["workspace", "update", "acme", "--plan", "business"]) == 0
    updated = json.loads(capsys.readouterr().out)
    assert (updated["slug"], updated["plan"]) == ("acme", "business")

    assert api.data(TRACK_LEAD, {"click": click}, token=tenant.token)["trackLead"]

    assert main(["workspace", "update", "acme", "--name", "Acme Inc", "--commission-rate-bps", "1500"]) == 0  # fmt: skip
    renamed = json.loads(capsys.readouterr().out)
    assert (renamed["name"], renamed["commissionRateBps"]) == ("Acme Inc", 1500)
    assert renamed["plan"] == "business"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["workspace", "update", "acme"], "nothing to change"),
        (["workspace", "update", "nope", "--plan", "pro"], "no workspace with slug 'nope'"),
        (["workspace", "update", "acme", "--commission-rate-bps", "20000"], "0 to 10000"),
    ],
)  # fmt: skip
def test_workspace_update_refusals(
    settings_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    make_tenant("acme", plan="free")
    capsys.readouterr()
    assert main(argv) == 2
    assert message in capsys.readouterr().err
