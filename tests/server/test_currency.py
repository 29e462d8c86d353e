"""server.currency: Stripe's minor units, ECB conversion with Decimal at the rate of the
sale's date (the last one published on or before it), and installing a newer table."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
from currency_converter import CurrencyConverter

from server import currency
from tests.conftest import RESET_HOOKS

if currency.reset_rate_cache not in RESET_HOOKS:
    RESET_HOOKS.append(currency.reset_rate_cache)

ECB = CurrencyConverter(decimal=True)  # the package's own reading, for expected values


def _expected(amount: int, source: str, target: str, day: date, digits: int) -> int:
    value = ECB.convert(
        Decimal(amount).scaleb(-currency.exponent(source)), source, target, date=day
    )
    return int((value * 10**digits).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


# --- exponents -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "digits"),
    [
        ("JPY", 0),
        ("jpy", 0),
        ("KRW", 0),
        ("MGA", 0),  # ISO says 2, Stripe says 0
        ("XOF", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("TND", 3),
        ("ISK", 2),  # zero-decimal in life, sent as two-decimal
        ("UGX", 2),
        ("USD", 2),
        ("EUR", 2),
        ("HUF", 2),
    ],
)
def test_exponent_follows_stripes_table_not_iso(code: str, digits: int) -> None:
    assert currency.exponent(code) == digits


def test_to_major_is_exact_for_each_exponent() -> None:
    assert currency.to_major(1234, "usd") == Decimal("12.34")
    assert currency.to_major(1234, "JPY") == Decimal("1234")
    assert currency.to_major(5120, "KWD") == Decimal("5.120")
    assert currency.to_major(500, "ISK") == Decimal("5.00")


def test_to_minor_rounds_half_even() -> None:
    assert currency.to_minor(Decimal("0.125"), "USD") == 12
    assert currency.to_minor(Decimal("0.135"), "USD") == 14
    assert currency.to_minor(Decimal("12.5"), "JPY") == 12
    assert currency.to_minor(Decimal("1.0005"), "KWD") == 1000


@pytest.mark.parametrize("bad", ["", "US", "USDX", "12$", "€ur"])
def test_normalise_currency_refuses_what_is_not_a_code(bad: str) -> None:
    with pytest.raises(currency.CurrencyError, match="three-letter"):
        currency.normalise_currency(bad)


@pytest.mark.parametrize(
    ("code", "known"),
    [
        ("USD", True),
        ("jpy", True),
        (" kwd ", True),
        ("VES", True),
        ("XOF", True),
        ("XYZ", False),
        ("HRK", False),  # withdrawn in 2023
        ("XXX", False),  # "no currency"
        ("XTS", False),  # reserved for testing
        ("US", False),
        ("€UR", False),
    ],
)
def test_is_iso_currency_knows_todays_iso_4217_list(code: str, known: bool) -> None:
    assert currency.is_iso_currency(code) is known


# --- conversion ---------------------------------------------------------------------------


def test_eur_to_usd_at_the_rate_of_the_day() -> None:
    day = date(2026, 7, 30)
    result = currency.convert(1850, "eur", "usd", day)
    assert result.amount == _expected(1850, "EUR", "USD", day, 2)
    assert (result.currency, result.rate_date, result.missing) == ("USD", day, False)
    assert result.rate == ECB.convert(Decimal(1), "EUR", "USD", date=day)


def test_a_weekend_uses_the_friday_rate_never_the_monday_one() -> None:
    saturday, friday, monday = date(2026, 8, 1), date(2026, 7, 31), date(2026, 8, 3)
    result = currency.convert(100_000, "EUR", "USD", saturday)
    assert result.rate_date == friday
    assert result.amount == _expected(100_000, "EUR", "USD", friday, 2)
    assert result.amount != _expected(100_000, "EUR", "USD", monday, 2)


def test_zero_decimal_source_and_cross_rate_through_the_euro() -> None:
    day = date(2026, 7, 30)
    assert currency.convert(5000, "JPY", "USD", day).amount == _expected(
        5000, "JPY", "USD", day, 2
    )
    assert currency.convert(2000, "USD", "JPY", day).amount == _expected(
        2000, "USD", "JPY", day, 0
    )


def test_same_currency_is_unchanged_whatever_the_date() -> None:
    result = currency.convert(5120, "kwd", "KWD", date(1990, 1, 1))
    assert (result.amount, result.rate) == (5120, Decimal(1))


@pytest.mark.parametrize(
    ("code", "day"),
    [
        ("KWD", date(2026, 7, 30)),  # not published by the ECB
        ("EUR", date(1998, 12, 31)),  # before the table
        ("CYP", date(2026, 7, 30)),  # replaced by the euro in 2008: stale rate
        ("EUR", date(2027, 6, 1)),  # after the table: never extrapolated
    ],
)
def test_no_usable_rate_gives_no_amount(code: str, day: date) -> None:
    result = currency.convert(1000, code, "USD", day)
    assert (result.amount, result.rate, result.missing) == (None, None, True)


# --- tables ---------------------------------------------------------------------------


def _packaged_lines() -> list[str]:
    return currency._csv_lines(currency.packaged_rates_file().read_bytes(), "hist.zip")


def _newer_table(extra_day: str, usd: str) -> str:
    """The packaged history plus one more day (with only USD and JPY published)."""
    lines = _packaged_lines()
    header = lines[0]
    cells = ["N/A"] * (len(header.split(",")) - 1)
    cells[0], cells[1] = usd, "170.00"
    return "\n".join([header, f"{extra_day}," + ",".join(cells), *lines[1:]])


def test_parse_table_reads_the_zip_the_csv_and_the_one_day_file() -> None:
    packaged = currency.packaged_rates_file()
    from_zip = currency.parse_table(packaged.read_bytes(), packaged.name)
    from_csv = currency.parse_table("\n".join(_packaged_lines()).encode(), "hist.csv")
    assert from_zip == from_csv
    assert from_zip.first_date == date(1999, 1, 4)
    assert {"USD", "JPY", "EUR"} <= from_zip.currencies

    single = (
        Path(currency.packaged_rates_file()).parent / "eurofxref.csv"
    ).read_bytes()
    one_day = currency.parse_table(single, "eurofxref.csv")
    assert one_day.first_date == one_day.last_date
    assert "USD" in one_day.days


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "first line"),
        (b"Date,USD\n2026-01-01,abc\n", "unreadable rate"),
        (b"Date,USD\n2026-01-01,-1\n", "not positive"),
        (b"Date,USD\nyesterday,1.1\n", "unreadable date"),
        (b"PK\x03\x04broken", "zip"),
    ],
)
def test_parse_table_refuses_broken_files(content: bytes, message: str) -> None:
    with pytest.raises(currency.CurrencyError, match=message):
        currency.parse_table(content, "rates.csv")


def test_install_table_replaces_the_active_table(
    settings_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEQR_FX_RATES_FILE", str(tmp_path / "fx" / "rates.csv"))
    from tests.conftest import reset_process_state

    reset_process_state()
    last = currency.get_rate_table().last_date
    day = date.fromordinal(last.toordinal() + 3)
    before = currency.convert(10_000, "EUR", "USD", day)
    assert before.rate_date == last  # the last rate on or before the day

    installed = currency.install_table(
        _newer_table(day.isoformat(), "1.2500").encode(),
        "eurofxref-hist.csv",
        currency.installed_rates_file(),
    )
    assert installed.path == tmp_path / "fx" / "rates.csv"
    assert installed.last_date == day
    assert currency.active_rates_file() == installed.path
    after = currency.convert(10_000, "EUR", "USD", day)
    assert (after.amount, after.rate, after.rate_date) == (
        12_500,
        Decimal("1.2500"),
        day,
    )


def test_install_table_refuses_less_history_unless_forced(
    settings_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEQR_FX_RATES_FILE", str(tmp_path / "rates.csv"))
    from tests.conftest import reset_process_state

    reset_process_state()
    short = b"Date,USD,JPY\n2026-07-30,1.1000,170.00\n"
    with pytest.raises(currency.CurrencyError, match="--force"):
        currency.install_table(short, "short.csv", currency.installed_rates_file())
    assert not (tmp_path / "rates.csv").exists()

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("eurofxref-hist.csv", short)
    currency.install_table(
        buffer.getvalue(), "short.zip", currency.installed_rates_file(), force=True
    )
    assert currency.convert(1000, "EUR", "USD", date(2026, 7, 30)).amount == 1100


def test_install_table_refuses_a_file_without_usd(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(currency.CurrencyError, match="no USD"):
        currency.install_table(
            b"Date,JPY\n2026-07-30,170\n", "x.csv", tmp_path / "x.csv", force=True
        )
