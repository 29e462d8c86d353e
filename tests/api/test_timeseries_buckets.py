"""Bucketing of hourly UTC rollups into a client's time zone (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.api.errors import BadUserInput
from server.api.store import Counters
from server.api.timeseries import aggregate, bucket_starts, rollup_span, zone


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_day_buckets_follow_local_midnight_across_a_dst_change() -> None:
    tz = zone("America/New_York")

    starts = bucket_starts("DAY", utc("2024-03-09T05:00"), utc("2024-03-12T04:00"), tz)

    assert [s.isoformat() for s in starts] == [
        "2024-03-09T00:00:00-05:00",
        "2024-03-10T00:00:00-05:00",
        "2024-03-11T00:00:00-04:00",
    ]
    assert rollup_span("DAY", starts, tz) == (
        utc("2024-03-09T05:00"),
        utc("2024-03-12T04:00"),
    )


def test_kolkata_day_takes_the_hours_that_begin_in_it() -> None:
    tz = zone("Asia/Kolkata")
    starts = bucket_starts("DAY", utc("2023-12-31T18:30"), utc("2024-01-02T18:30"), tz)
    hours = [
        (utc("2023-12-31T18:00"), Counters(clicks=1)),  # 23:30 on 31 Dec, local
        (utc("2023-12-31T19:00"), Counters(clicks=2)),  # 00:30 on 1 Jan
        (utc("2024-01-01T18:00"), Counters(clicks=4)),  # 23:30 on 1 Jan
        (utc("2024-01-01T19:00"), Counters(clicks=8)),  # 00:30 on 2 Jan
    ]

    buckets = aggregate("DAY", starts, hours, tz)

    assert [(start.isoformat(), c.clicks) for start, c in buckets] == [
        ("2024-01-01T00:00:00+05:30", 6),
        ("2024-01-02T00:00:00+05:30", 8),
    ]


def test_month_buckets_roll_over_the_year() -> None:
    tz = zone("UTC")

    starts = bucket_starts(
        "MONTH", utc("2023-11-20T00:00"), utc("2024-02-01T00:00"), tz
    )

    assert [s.date().isoformat() for s in starts] == [
        "2023-11-01",
        "2023-12-01",
        "2024-01-01",
    ]


def test_hour_buckets_are_utc_hours_labelled_locally() -> None:
    tz = zone("Asia/Kolkata")

    starts = bucket_starts("HOUR", utc("2024-01-01T00:10"), utc("2024-01-01T02:00"), tz)

    assert [s.isoformat() for s in starts] == [
        "2024-01-01T05:30:00+05:30",
        "2024-01-01T06:30:00+05:30",
    ]


def test_too_many_buckets_is_refused() -> None:
    with pytest.raises(BadUserInput, match="1500"):
        bucket_starts(
            "HOUR", utc("2020-01-01T00:00"), utc("2021-01-01T00:00"), zone("UTC")
        )


@pytest.mark.parametrize(
    "name", ["", "Nowhere/City", "/etc/localtime", "../UTC", "x" * 100]
)
def test_unknown_or_path_like_zone_is_refused(name: str) -> None:
    with pytest.raises(BadUserInput, match="IANA"):
        zone(name)
