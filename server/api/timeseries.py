"""Time series buckets in a client's time zone, built from hourly rollups in UTC.

Rollups are whole UTC hours. A DAY or MONTH bucket holds every hour that *starts* within
it, in the requested zone; in zones whose offset is not a whole hour (Asia/Kolkata is
+05:30) the hour that straddles local midnight counts in the day where it begins. HOUR
buckets are the UTC hours themselves, labelled in the requested zone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from server.api.errors import BadUserInput
from server.api.store import Counters

MAX_BUCKETS = 1500
HOUR = timedelta(hours=1)
DEFAULT_SPAN = {"HOUR": timedelta(hours=24), "DAY": timedelta(days=30)}


# Files the system's zone directory holds that are not zones of the IANA database:
# "localtime" is the server's own zone, "Factory" a placeholder.
_NOT_IANA = frozenset({"localtime", "Factory", "posixrules"})


@lru_cache(maxsize=1)
def _iana_names() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_IANA


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (e.g. ``Europe/Paris``): a name of the time zone
    database only, not a file the system happens to have (such as ``localtime``)."""
    if not name or len(name) > 64 or name not in _iana_names():
        raise BadUserInput(
            f"timezone {name[:64]!r} is not an IANA time zone name, e.g. "
            "'Europe/Paris'."
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise BadUserInput(
            f"timezone {name!r} is not an IANA time zone name, e.g. 'Europe/Paris'."
        ) from exc


# Instants a client may pass: a year of margin on each side of datetime's own range, so
# no conversion, hour rounding or bucket step taken from them can overflow.
EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 1, 1, tzinfo=UTC)


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a value without an offset is taken as UTC. Instants outside
    EARLIEST..LATEST are refused."""
    try:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise BadUserInput(
            f"{moment.isoformat()} is out of range: instants must lie between "
            f"{EARLIEST.isoformat()} and {LATEST.isoformat()}."
        )
    return utc


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + HOUR


def default_range(interval: str, now: datetime, tz: ZoneInfo) -> datetime:
    """The default start when only the end is given: 24 hours, 30 days or 12 months."""
    if interval in DEFAULT_SPAN:
        return now - DEFAULT_SPAN[interval]
    local = now.astimezone(tz)
    return datetime(local.year - 1, local.month, 1, tzinfo=tz).astimezone(UTC)


def bucket_starts(
    interval: str, start: datetime, end: datetime, tz: ZoneInfo
) -> list[datetime]:
    """Starts of the buckets covering [start, end), as aware datetimes in ``tz``."""
    starts: list[datetime] = []
    for moment in _iterate(interval, start, end, tz):
        if len(starts) == MAX_BUCKETS:
            raise BadUserInput(
                f"the range holds more than {MAX_BUCKETS} {interval} buckets; "
                "shorten it or use a wider interval."
            )
        starts.append(moment)
    return starts


def _iterate(
    interval: str, start: datetime, end: datetime, tz: ZoneInfo
) -> Iterator[datetime]:
    if interval == "HOUR":
        moment = floor_hour(start)
        while moment < end:
            yield moment.astimezone(tz)
            moment += HOUR
        return
    day = start.astimezone(tz).date()
    if interval == "MONTH":
        day = day.replace(day=1)
    while (moment := _local_midnight(day, tz)) < end:
        yield moment
        day = _next_month(day) if interval == "MONTH" else day + timedelta(days=1)


def rollup_span(
    interval: str, starts: list[datetime], tz: ZoneInfo
) -> tuple[datetime, datetime]:
    """The UTC hours to read: from the first bucket's start to the last one's end."""
    last = starts[-1]
    if interval == "HOUR":
        after_last = last + HOUR
    else:
        day = last.date()
        following = _next_month(day) if interval == "MONTH" else day + timedelta(days=1)
        after_last = _local_midnight(following, tz)
    return floor_hour(starts[0].astimezone(UTC)), ceil_hour(after_last.astimezone(UTC))


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def bucket_key(interval: str, hour: datetime, tz: ZoneInfo) -> tuple[int, ...]:
    """Which bucket an hourly rollup (its UTC start) belongs to."""
    if interval == "HOUR":
        utc = hour.astimezone(UTC)
        return (utc.year, utc.month, utc.day, utc.hour)
    local = hour.astimezone(tz)
    if interval == "MONTH":
        return (local.year, local.month)
    return (local.year, local.month, local.day)


def aggregate(
    interval: str,
    starts: list[datetime],
    hours: list[tuple[datetime, Counters]],
    tz: ZoneInfo,
) -> list[tuple[datetime, Counters]]:
    """Every bucket in order, with the hourly counters that fall in it added up."""
    totals = {bucket_key(interval, start, tz): Counters() for start in starts}
    for hour, counters in hours:
        key = bucket_key(interval, hour, tz)
        if key in totals:
            totals[key] = totals[key] + counters
    return [(start, totals[bucket_key(interval, start, tz)]) for start in starts]
