"""funnel and timeseries, read from the hourly rollups."""

from __future__ import annotations

from datetime import UTC, datetime
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
)

FUNNEL = """
query Funnel($start: DateTime, $end: DateTime, $includeTestMode: Boolean! = false) {
  funnel(start: $start, end: $end, includeTestMode: $includeTestMode) {
    clicks leads sales saleAmount currency
  }
}
"""
TIMESERIES = """
query Timeseries($start: DateTime, $end: DateTime, $interval: Interval!, $timezone: String!) {
  timeseries(start: $start, end: $end, interval: $interval, timezone: $timezone) {
    start clicks leads sales saleAmount
  }
}
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _january(tenant: Tenant) -> None:
    """Live: a lead at 10:00Z and a click at 20:10Z on 1 January (01:40 on the 2nd in
    Kolkata), a sale of 2500 on 3 January. Test mode: a lead and a sale of 9999."""
    add_click(tenant, at("2024-01-01T20:10:00+00:00"))
    live = add_customer(tenant, "live")
    add_lead(tenant, live, at=at("2024-01-01T10:00:00+00:00"))
    add_sale(tenant, live, 2500, at=at("2024-01-03T12:00:00+00:00"))
    test = add_customer(tenant, "test", livemode=False)
    add_lead(tenant, test, at=at("2024-01-01T11:00:00+00:00"), livemode=False)
    add_sale(tenant, test, 9999, at=at("2024-01-01T11:30:00+00:00"), livemode=False)


def _series(api: Api, tenant: Tenant, **variables: Any) -> list[dict[str, Any]]:
    series: list[dict[str, Any]] = api.data(TIMESERIES, variables, token=tenant.token)[
        "timeseries"
    ]
    return series


def test_funnel_all_time_counts_live_data_only(api: Api) -> None:
    tenant = make_tenant("acme")
    _january(tenant)

    live = api.data(FUNNEL, token=tenant.token)["funnel"]
    everything = api.data(FUNNEL, {"includeTestMode": True}, token=tenant.token)[
        "funnel"
    ]

    assert live == {
        "clicks": 1,
        "leads": 1,
        "sales": 1,
        "saleAmount": 2500,
        "currency": "USD",
    }
    assert everything == {
        "clicks": 1,
        "leads": 2,
        "sales": 2,
        "saleAmount": 12499,
        "currency": "USD",
    }


def test_funnel_range_widens_to_whole_hours(api: Api) -> None:
    tenant = make_tenant("acme")
    _january(tenant)

    first_day = api.data(
        FUNNEL,
        {"start": "2024-01-01T10:30:00Z", "end": "2024-01-02T00:00:00Z"},
        token=tenant.token,
    )["funnel"]
    third_day = api.data(
        FUNNEL,
        {"start": "2024-01-03T00:00:00+00:00", "end": "2024-01-04T00:00:00+00:00"},
        token=tenant.token,
    )["funnel"]

    assert (first_day["clicks"], first_day["leads"], first_day["sales"]) == (1, 1, 0)
    assert (third_day["sales"], third_day["saleAmount"]) == (1, 2500)


def test_funnel_start_after_end_is_bad_user_input(api: Api) -> None:
    tenant = make_tenant("acme")

    codes = api.error_codes(
        FUNNEL,
        {"start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"},
        token=tenant.token,
    )

    assert codes == ["BAD_USER_INPUT"]


def test_timeseries_days_in_utc_and_in_kolkata_differ_at_midnight(api: Api) -> None:
    tenant = make_tenant("acme")
    _january(tenant)

    utc = _series(
        api,
        tenant,
        start="2024-01-01T00:00:00Z",
        end="2024-01-04T00:00:00Z",
        interval="DAY",
        timezone="UTC",
    )
    kolkata = _series(
        api,
        tenant,
        start="2024-01-01T00:00:00+05:30",
        end="2024-01-04T00:00:00+05:30",
        interval="DAY",
        timezone="Asia/Kolkata",
    )

    assert [(p["start"], p["clicks"], p["leads"], p["sales"]) for p in utc] == [
        ("2024-01-01T00:00:00+00:00", 1, 1, 0),
        ("2024-01-02T00:00:00+00:00", 0, 0, 0),
        ("2024-01-03T00:00:00+00:00", 0, 0, 1),
    ]
    assert [(p["start"], p["clicks"], p["leads"], p["sales"]) for p in kolkata] == [
        ("2024-01-01T00:00:00+05:30", 0, 1, 0),
        ("2024-01-02T00:00:00+05:30", 1, 0, 0),
        ("2024-01-03T00:00:00+05:30", 0, 0, 1),
    ]
    assert [p["saleAmount"] for p in kolkata] == [0, 0, 2500]


def test_timeseries_hours_and_months(api: Api) -> None:
    tenant = make_tenant("acme")
    _january(tenant)

    hours = _series(
        api,
        tenant,
        start="2024-01-01T09:00:00Z",
        end="2024-01-01T12:00:00Z",
        interval="HOUR",
        timezone="Europe/Paris",
    )
    months = _series(
        api,
        tenant,
        start="2023-12-15T00:00:00Z",
        end="2024-02-01T00:00:00Z",
        interval="MONTH",
        timezone="UTC",
    )

    assert [(p["start"], p["leads"]) for p in hours] == [
        ("2024-01-01T10:00:00+01:00", 0),
        ("2024-01-01T11:00:00+01:00", 1),
        ("2024-01-01T12:00:00+01:00", 0),
    ]
    assert [(p["start"], p["clicks"], p["sales"]) for p in months] == [
        ("2023-12-01T00:00:00+00:00", 0, 0),
        ("2024-01-01T00:00:00+00:00", 1, 1),
    ]


@pytest.mark.parametrize(
    ("variables", "fragment"),
    [
        ({"interval": "DAY", "timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"interval": "DAY", "timezone": "../../etc/passwd"}, "passwd"),
        ({"interval": "DAY", "timezone": "localtime"}, "'localtime' is not an IANA"),
        ({"interval": "DAY", "timezone": "Factory"}, "'Factory' is not an IANA"),
        ({"interval": "DAY", "timezone": "europe/paris"}, "e.g. 'Europe/Paris'"),
        (
            {
                "interval": "HOUR",
                "timezone": "UTC",
                "start": "2020-01-01T00:00:00Z",
                "end": "2024-01-01T00:00:00Z",
            },
            "1500",
        ),
        (
            {
                "interval": "DAY",
                "timezone": "UTC",
                "start": "2024-01-02T00:00:00Z",
                "end": "2024-01-01T00:00:00Z",
            },
            "before end",
        ),
    ],
)
def test_timeseries_bad_input_is_bad_user_input(
    api: Api, variables: dict[str, str], fragment: str
) -> None:
    tenant = make_tenant("acme")

    response = api.post(TIMESERIES, variables, token=tenant.token)

    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert fragment in error["message"]


def test_timeseries_defaults_to_30_days_until_now(api: Api) -> None:
    tenant = make_tenant("acme")
    add_click(tenant)

    series = _series(api, tenant, interval="DAY", timezone="UTC")

    assert len(series) == 31
    assert series[-1]["clicks"] == 1
    assert sum(point["clicks"] for point in series) == 1
