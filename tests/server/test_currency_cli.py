"""``codeqr fx``: install a newer ECB table from a file or a loopback URL, convert the
sales that had no rate, refuse what cannot be a rate table."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from server import conversions, currency
from server.cli import create_link, create_workspace, main
from server.db import get_engine
from server.models import Click, Customer, RollupHourly, Sale
from tests.conftest import RESET_HOOKS, reset_process_state

if currency.reset_rate_cache not in RESET_HOOKS:
    RESET_HOOKS.append(currency.reset_rate_cache)


@pytest.fixture
def fx_env(
    settings_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    target = tmp_path / "installed" / "eurofxref-hist.csv"
    monkeypatch.setenv("CODEQR_FX_RATES_FILE", str(target))
    reset_process_state()
    return target


def _table_with_kwd(tmp_path: Path) -> Path:
    """The packaged history with a KWD column (0.3500 per euro on 2026-07-30 only)."""
    lines = currency._csv_lines(currency.packaged_rates_file().read_bytes(), "hist.zip")
    out = [lines[0].rstrip(",") + ",KWD"]
    for line in lines[1:]:
        rate = "0.3500" if line.startswith("2026-07-30") else "N/A"
        out.append(line.rstrip(",") + "," + rate)
    path = tmp_path / "eurofxref-hist-kwd.csv"
    path.write_text("\n".join(out) + "\n")
    return path


def _kwd_sale() -> int:
    create_workspace("acme", plan="business")
    link = create_link("acme", "https://acme.example/", key="acme")
    with Session(get_engine(), expire_on_commit=False) as session:
        from server.models import Workspace

        workspace = session.exec(select(Workspace)).one()
        assert workspace.id is not None
        session.add(
            Click(
                id="click_kwd_0000000000", workspace_id=workspace.id, link_id=link["id"]
            )
        )
        session.flush()
        lead = conversions.record_lead(
            session,
            workspace,
            click_id="click_kwd_0000000000",
            customer_external_id="u1",
        )
        customer = session.get(Customer, lead.customer_id)
        assert customer is not None
        sale = conversions.record_sale(
            session,
            workspace,
            customer=customer,
            amount=7000,
            currency="kwd",
            timestamp=datetime(2026, 7, 30, 9, tzinfo=UTC),
        )
        session.commit()
        assert sale.fx_missing and sale.id is not None
        return sale.id


def test_codeqr_fx_file_installs_the_table_and_converts_flagged_sales(
    fx_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sale_id = _kwd_sale()
    capsys.readouterr()  # setup output (structlog prints to stdout until configured)
    assert main(["fx", "--file", str(_table_with_kwd(tmp_path))]) == 0

    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(fx_env) and fx_env.is_file()
    assert main(["fx", "--show"]) == 0
    assert json.loads(capsys.readouterr().out)["currencies"] == out["currencies"]
    assert (out["firstDate"], out["convertedSales"]) == ("1999-01-04", 1)
    with Session(get_engine()) as session:
        sale = session.get(Sale, sale_id)
        rollup = session.exec(select(RollupHourly).where(RollupHourly.sales == 1)).one()
    assert sale is not None and not sale.fx_missing
    # 7.000 KWD / 0.35 KWD per EUR = 20 EUR, times the day's USD rate (1.1476) = 22.952
    assert (sale.amount, sale.fx_rate) == (2295, "3.27885714285714")
    assert rollup.sale_amount == 2295


def test_codeqr_fx_url_downloads_from_the_given_address(
    fx_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = _table_with_kwd(tmp_path)
    with _serve(served.parent) as base:
        assert main(["fx", "--url", f"{base}/{served.name}"]) == 0
        assert main(["fx", "--url", f"{base}/missing.zip"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out.splitlines()[0])["lastDate"] == "2026-10-30"
    assert "answered 404" in captured.err
    # 0.350 KWD (350 thousandths) is 1 EUR (100 cents) at the installed rate
    assert (
        currency.convert(350, "KWD", "EUR", datetime(2026, 7, 30).date()).amount == 100
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--file", "/nonexistent/rates.zip"], "cannot read"),
        (["--url", "ftp://127.0.0.1/rates.zip"], "http(s) URL"),
    ],
)
def test_codeqr_fx_refuses_unreadable_sources(
    fx_env: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fx", *args]) == 2
    assert message in capsys.readouterr().err
    assert not fx_env.exists()


def test_codeqr_fx_refuses_a_shorter_history_without_force(
    fx_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = tmp_path / "one-day.csv"
    short.write_text("Date,USD\n2026-07-30,1.1476\n")
    assert main(["fx", "--file", str(short)]) == 2
    assert "--force" in capsys.readouterr().err
    assert not fx_env.exists()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


@contextmanager
def _serve(directory: Path) -> Iterator[str]:
    def handler(*args: object, **kwargs: object) -> _QuietHandler:
        return _QuietHandler(*args, directory=str(directory), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_codeqr_fx_says_where_it_cannot_write(
    settings_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("CODEQR_FX_RATES_FILE", str(blocker / "rates.csv"))
    reset_process_state()
    assert main(["fx", "--file", str(_table_with_kwd(tmp_path))]) == 2
    assert "set CODEQR_FX_RATES_FILE to a writable path" in capsys.readouterr().err


def test_codeqr_fx_show_names_the_active_table_and_whether_it_is_stale(
    fx_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    today = datetime.now(tz=UTC).date()
    capsys.readouterr()
    assert main(["fx", "--show"]) == 0
    shipped = json.loads(capsys.readouterr().out)
    assert shipped["path"] == str(currency.packaged_rates_file())
    assert shipped["firstDate"] == "1999-01-04"
    assert shipped["stale"] is (
        today - date.fromisoformat(shipped["lastDate"]) > currency.MAX_RATE_AGE
    )

    fx_env.parent.mkdir(parents=True)
    for age, stale in ((timedelta(days=1), False), (timedelta(days=8), True)):
        fx_env.write_text(f"Date,USD,JPY,\n{(today - age).isoformat()},1.10,160.5,\n")
        assert main(["fx", "--show"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["path"] == str(fx_env)
        assert shown["lastDate"] == (today - age).isoformat()
        assert (shown["currencies"], shown["stale"]) == (3, stale)


def test_a_stale_table_is_logged_as_such_when_loaded(
    fx_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fx_env.parent.mkdir(parents=True)
    fx_env.write_text("Date,USD,\n2026-01-02,1.10,\n")
    table = currency.get_rate_table()
    assert table.last_date == date(2026, 1, 2)
    assert currency.is_stale(table, today=date(2026, 1, 9)) is False
    assert currency.is_stale(table, today=date(2026, 1, 10)) is True
    logged = capsys.readouterr()
    assert "fx.table_stale" in logged.out + logged.err
