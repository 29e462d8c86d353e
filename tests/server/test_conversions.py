"""The attribution domain (server.conversions) on SQLite and PostgreSQL: leads, sales,
refunds, commissions, rollups and bus notifications, including concurrent duplicates."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from currency_converter import CurrencyConverter
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from server import bus, conversions, currency
from server.cli import create_link, create_workspace
from server.db import get_engine
from server.models import (
    Click,
    Commission,
    Customer,
    Lead,
    RollupHourly,
    Sale,
    Workspace,
)
from tests.conftest import RESET_HOOKS

if currency.reset_rate_cache not in RESET_HOOKS:
    RESET_HOOKS.append(currency.reset_rate_cache)

SALE_TIME = datetime(2026, 7, 30, 12, 0, tzinfo=UTC)


@dataclass
class Shop:
    engine: Engine
    workspace_id: int
    link_id: int
    other_workspace_id: int
    other_link_id: int

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def workspace(self, session: Session, other: bool = False) -> Workspace:
        found = session.get(
            Workspace, self.other_workspace_id if other else self.workspace_id
        )
        assert found is not None
        return found

    def click(self, click_id: str, other: bool = False) -> str:
        with self.session() as session:
            session.add(
                Click(
                    id=click_id,
                    workspace_id=self.other_workspace_id
                    if other
                    else self.workspace_id,
                    link_id=self.other_link_id if other else self.link_id,
                )
            )
            session.commit()
        return click_id


@pytest.fixture
def shop(settings_env: dict[str, str]) -> Shop:
    """Two Business workspaces; the first one's link belongs to a partner (10% default)."""
    first = create_workspace("acme", plan="business", stripe_account="acct_acme")
    second = create_workspace("globex", plan="business", stripe_account="acct_globex")
    link = create_link(
        "acme", "https://acme.example/pricing", key="acme", partner="p@x.io"
    )
    other = create_link("globex", "https://globex.example/", key="globex")
    assert first.id and second.id
    return Shop(get_engine(), first.id, link["id"], second.id, other["id"])


def _lead(
    shop: Shop, session: Session, click_id: str, external_id: str = "user_1", **kw: Any
) -> Lead:
    return conversions.record_lead(
        session,
        shop.workspace(session),
        click_id=click_id,
        customer_external_id=external_id,
        timestamp=SALE_TIME,
        **kw,
    )


def _customer(shop: Shop, click_id: str = "click_aaaaaaaaaaaaaaaa") -> Customer:
    shop.click(click_id)
    with shop.session() as session:
        lead = _lead(shop, session, click_id)
        session.commit()
        customer = session.get(Customer, lead.customer_id)
        assert customer is not None
        return customer


def _sale(shop: Shop, customer: Customer, **kw: Any) -> Sale:
    values: dict[str, Any] = {"amount": 2000, "currency": "usd", "timestamp": SALE_TIME}
    values.update(kw)
    with shop.session() as session:
        sale = conversions.record_sale(
            session, shop.workspace(session), customer=customer, **values
        )
        session.commit()
        return sale


def _count(shop: Shop, model: Any) -> int:
    with shop.session() as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def _rollup(
    shop: Shop, workspace_id: int | None = None
) -> dict[bool, tuple[int, int, int]]:
    with shop.session() as session:
        rows = session.exec(
            select(RollupHourly).where(
                RollupHourly.workspace_id == (workspace_id or shop.workspace_id)
            )
        ).all()
    totals: dict[bool, tuple[int, int, int]] = {}
    for row in rows:
        leads, sales, amount = totals.get(row.livemode, (0, 0, 0))
        totals[row.livemode] = (
            leads + row.leads,
            sales + row.sales,
            amount + row.sale_amount,
        )
    return totals


# --- leads ---------------------------------------------------------------------------------


def test_record_lead_creates_customer_and_one_lead_attributed_to_the_click(
    shop: Shop,
) -> None:
    shop.click("click_aaaaaaaaaaaaaaaa")
    with shop.session() as session:
        lead = _lead(
            shop,
            session,
            "click_aaaaaaaaaaaaaaaa",
            customer_email="a@b.io",
            customer_name="Ann",
            stripe_customer_id="cus_1",
            livemode=False,
        )
        published = bus.take_pending(session)
        session.commit()
    with shop.session() as session:
        customer = session.get(Customer, lead.customer_id)
    assert customer is not None
    assert (customer.external_id, customer.email, customer.name) == (
        "user_1",
        "a@b.io",
        "Ann",
    )
    assert customer.stripe_customer_id == "cus_1"
    assert (customer.click_id, customer.link_id, customer.livemode) == (
        "click_aaaaaaaaaaaaaaaa",
        shop.link_id,
        False,
    )
    assert (lead.event_name, lead.click_id, lead.link_id) == (
        "Sign up",
        "click_aaaaaaaaaaaaaaaa",
        shop.link_id,
    )
    assert published == [bus.BusEvent(shop.workspace_id, "LEAD", str(lead.id), False)]
    assert _rollup(shop) == {False: (1, 0, 0)}


def test_record_lead_replayed_returns_the_same_lead_without_counting_twice(
    shop: Shop,
) -> None:
    shop.click("click_aaaaaaaaaaaaaaaa")
    with shop.session() as session:
        first = _lead(shop, session, "click_aaaaaaaaaaaaaaaa")
        session.commit()
    with shop.session() as session:
        again = _lead(
            shop, session, "click_aaaaaaaaaaaaaaaa", customer_email="new@b.io"
        )
        assert bus.take_pending(session) == []
        session.commit()
    assert again.id == first.id
    assert _count(shop, Customer) == 1 and _count(shop, Lead) == 1
    assert _rollup(shop) == {True: (1, 0, 0)}
    with shop.session() as session:
        customer = session.get(Customer, first.customer_id)
        assert customer is not None and customer.email == "new@b.io"


def test_record_lead_of_another_event_name_is_a_second_lead_of_the_same_customer(
    shop: Shop,
) -> None:
    shop.click("click_aaaaaaaaaaaaaaaa")
    with shop.session() as session:
        first = _lead(shop, session, "click_aaaaaaaaaaaaaaaa")
        second = _lead(
            shop, session, "click_aaaaaaaaaaaaaaaa", event_name="Demo booked"
        )
        session.commit()
    assert first.customer_id == second.customer_id and first.id != second.id


def test_record_lead_refuses_a_click_of_another_workspace(shop: Shop) -> None:
    shop.click("click_globex_00000000", other=True)
    with shop.session() as session, pytest.raises(conversions.UnknownClick) as caught:
        _lead(shop, session, "click_globex_00000000")
    assert "click_globex_00000000" in caught.value.message
    assert caught.value.code == "NOT_FOUND"
    assert _count(shop, Customer) == 0


def test_record_lead_refuses_an_unknown_click(shop: Shop) -> None:
    with shop.session() as session, pytest.raises(conversions.UnknownClick):
        _lead(shop, session, "click_does_not_exist")


def test_record_lead_needs_the_business_plan(shop: Shop) -> None:
    shop.click("click_aaaaaaaaaaaaaaaa")
    with shop.session() as session:
        workspace = shop.workspace(session)
        workspace.plan = "pro"
        with pytest.raises(conversions.PlanRequired) as caught:
            _lead(shop, session, "click_aaaaaaaaaaaaaaaa")
    assert caught.value.code == "PLAN_REQUIRED"


def test_stripe_customer_id_held_by_another_customer_is_not_copied(shop: Shop) -> None:
    shop.click("click_aaaaaaaaaaaaaaaa")
    with shop.session() as session:
        _lead(
            shop,
            session,
            "click_aaaaaaaaaaaaaaaa",
            "user_1",
            stripe_customer_id="cus_1",
        )
        lead = _lead(
            shop,
            session,
            "click_aaaaaaaaaaaaaaaa",
            "user_2",
            stripe_customer_id="cus_1",
        )
        session.commit()
        second = session.get(Customer, lead.customer_id)
    assert second is not None and second.stripe_customer_id is None


def _customer_lead(
    shop: Shop, session: Session, click_id: str, external_id: str, **kw: Any
) -> Customer:
    """The worker's entry point (one statement for a new customer on PostgreSQL)."""
    return conversions.record_customer_lead(
        session,
        shop.workspace(session),
        click_id=click_id,
        customer_external_id=external_id,
        timestamp=SALE_TIME,
        **kw,
    )


def test_customer_lead_of_a_new_customer_records_customer_lead_rollup_and_event(
    shop: Shop,
) -> None:
    shop.click("click_aaaaaaaaaaaaaaaa")
    with shop.session() as session:
        customer = _customer_lead(
            shop,
            session,
            "click_aaaaaaaaaaaaaaaa",
            "user_1",
            stripe_customer_id="cus_1",
            customer_email="a@b.io",
            customer_name="Ada",
            livemode=False,
        )
        published = bus.take_pending(session)
        session.commit()
    with shop.session() as session:
        stored = session.get(Customer, customer.id)
        lead = session.exec(select(Lead)).one()
    assert stored is not None
    assert (stored.external_id, stored.stripe_customer_id, stored.email) == (
        "user_1",
        "cus_1",
        "a@b.io",
    )
    assert (stored.name, stored.click_id, stored.link_id, stored.livemode) == (
        "Ada",
        "click_aaaaaaaaaaaaaaaa",
        shop.link_id,
        False,
    )
    assert stored.created_at == SALE_TIME
    assert (lead.customer_id, lead.event_name, lead.timestamp) == (
        customer.id,
        "Sign up",
        SALE_TIME,
    )
    assert (lead.click_id, lead.link_id, lead.livemode) == (
        "click_aaaaaaaaaaaaaaaa",
        shop.link_id,
        False,
    )
    assert published == [bus.BusEvent(shop.workspace_id, "LEAD", str(lead.id), False)]
    assert _rollup(shop) == {False: (1, 0, 0)}


def test_customer_lead_repeated_changes_nothing_but_fresher_details(
    shop: Shop,
) -> None:
    shop.click("click_aaaaaaaaaaaaaaaa")
    with shop.session() as session:
        first = _customer_lead(shop, session, "click_aaaaaaaaaaaaaaaa", "user_1")
        session.commit()
    with shop.session() as session:
        again = _customer_lead(
            shop,
            session,
            "click_aaaaaaaaaaaaaaaa",
            "user_1",
            customer_email="new@b.io",
            stripe_customer_id="cus_9",
        )
        published = bus.take_pending(session)
        session.commit()
    assert again.id == first.id and published == []
    assert _count(shop, Customer) == 1 and _count(shop, Lead) == 1
    with shop.session() as session:
        stored = session.get(Customer, first.id)
    assert stored is not None
    assert (stored.email, stored.stripe_customer_id) == ("new@b.io", "cus_9")
    assert _rollup(shop) == {True: (1, 0, 0)}


def test_customer_lead_whose_stripe_id_another_customer_holds_is_still_recorded(
    shop: Shop,
) -> None:
    shop.click("click_aaaaaaaaaaaaaaaa")
    with shop.session() as session:
        _customer_lead(
            shop, session, "click_aaaaaaaaaaaaaaaa", "user_1", stripe_customer_id="c1"
        )
        second = _customer_lead(
            shop, session, "click_aaaaaaaaaaaaaaaa", "user_2", stripe_customer_id="c1"
        )
        session.commit()
    with shop.session() as session:
        stored = session.get(Customer, second.id)
        leads = session.exec(select(Lead).order_by(Lead.id)).all()
    assert stored is not None and stored.external_id == "user_2"
    assert stored.stripe_customer_id is None  # the id stays with its first holder
    assert [lead.customer_id for lead in leads][1] == second.id
    assert _rollup(shop) == {True: (2, 0, 0)}


def test_customer_lead_refuses_clicks_of_other_workspaces_and_unknown_clicks(
    shop: Shop,
) -> None:
    shop.click("click_globex_00000000", other=True)
    with shop.session() as session:
        for click_id in ("click_globex_00000000", "click_nowhere_000000", "x" * 65):
            with pytest.raises(conversions.UnknownClick):
                _customer_lead(shop, session, click_id, "user_1")
    assert _count(shop, Customer) == 0 and _count(shop, Lead) == 0


# --- sales ---------------------------------------------------------------------------------


def test_record_sale_credits_the_partner_and_counts_once(shop: Shop) -> None:
    customer = _customer(shop)
    with shop.session() as session:
        sale = conversions.record_sale(
            session,
            shop.workspace(session),
            customer=customer,
            amount=2000,
            currency="usd",
            invoice_id="in_1",
            timestamp=SALE_TIME,
        )
        published = bus.take_pending(session)
        session.commit()
    assert (
        sale.original_amount,
        sale.original_currency,
        sale.amount,
        sale.currency,
    ) == (
        2000,
        "USD",
        2000,
        "USD",
    )
    assert (sale.click_id, sale.link_id, sale.fx_missing) == (
        "click_aaaaaaaaaaaaaaaa",
        shop.link_id,
        False,
    )
    assert published == [bus.BusEvent(shop.workspace_id, "SALE", str(sale.id), True)]
    with shop.session() as session:
        commission = session.exec(select(Commission)).one()
    assert (commission.amount, commission.earnings, commission.rate_bps) == (
        2000,
        200,
        1000,
    )
    assert (commission.currency, commission.status, commission.sale_id) == (
        "USD",
        "pending",
        sale.id,
    )
    assert _rollup(shop) == {True: (1, 1, 2000)}


def test_one_payment_is_one_sale_whichever_ids_arrive(shop: Shop) -> None:
    customer = _customer(shop)
    tracked = _sale(shop, customer, invoice_id="in_1")  # trackSale with the invoice id
    checkout = _sale(
        shop, customer, checkout_session_id="cs_1", invoice_id="in_1", amount=999
    )
    refund_side = _sale(
        shop, customer, payment_intent_id="pi_1", checkout_session_id="cs_1"
    )
    assert tracked.id == checkout.id == refund_side.id
    assert _count(shop, Sale) == 1 and _count(shop, Commission) == 1
    with shop.session() as session:
        sale = session.get(Sale, tracked.id)
    assert sale is not None
    assert (sale.invoice_id, sale.checkout_session_id, sale.payment_intent_id) == (
        "in_1",
        "cs_1",
        "pi_1",
    )
    assert (
        sale.original_amount == 2000
    )  # the first record wins; later ones add ids only
    assert _rollup(shop) == {True: (1, 1, 2000)}


def test_sale_without_partner_has_no_commission(shop: Shop) -> None:
    shop.click("click_globex_00000000", other=True)
    with shop.session() as session:
        workspace = shop.workspace(session, other=True)
        lead = conversions.record_lead(
            session,
            workspace,
            click_id="click_globex_00000000",
            customer_external_id="u",
        )
        customer = session.get(Customer, lead.customer_id)
        assert customer is not None
        conversions.record_sale(
            session, workspace, customer=customer, amount=500, currency="eur"
        )
        session.commit()
    assert _count(shop, Sale) == 1 and _count(shop, Commission) == 0


def test_partner_rate_overrides_the_workspace_rate(shop: Shop) -> None:
    from server.models import Partner

    with shop.session() as session:
        partner = session.exec(select(Partner)).one()
        partner.commission_rate_bps = 2550
        session.add(partner)
        session.commit()
    sale = _sale(shop, _customer(shop), amount=1999)
    with shop.session() as session:
        commission = session.exec(
            select(Commission).where(Commission.sale_id == sale.id)
        ).one()
    # 25.5% of 1999 = 509.745 -> 510 (half-even rounds only exact halves)
    assert (commission.earnings, commission.rate_bps) == (510, 2550)


@pytest.mark.parametrize(
    ("amount", "code"),
    [(0, "usd"), (-5, "usd"), (100, "usdollar"), (100, "")],
)
def test_record_sale_refuses_bad_amounts_and_currencies(
    shop: Shop, amount: int, code: str
) -> None:
    customer = _customer(shop)
    with shop.session() as session, pytest.raises(conversions.InvalidInput) as caught:
        conversions.record_sale(
            session,
            shop.workspace(session),
            customer=customer,
            amount=amount,
            currency=code,
        )
    assert caught.value.code == "BAD_USER_INPUT"


# --- currencies ----------------------------------------------------------------------------


def _ecb_usd_per_eur(day: date) -> Decimal:
    """Independently of server.currency: the package's own Decimal table."""
    converter = CurrencyConverter(decimal=True)
    rate: Decimal = converter.convert(Decimal(1), "EUR", "USD", date=day)
    return rate


def test_eur_sale_is_converted_to_usd_at_the_ecb_rate_of_its_date(shop: Shop) -> None:
    sale = _sale(shop, _customer(shop), amount=1850, currency="eur")
    expected = (Decimal(1850) * _ecb_usd_per_eur(SALE_TIME.date())).quantize(
        Decimal(1), rounding=ROUND_HALF_EVEN
    )
    assert (sale.original_amount, sale.original_currency) == (1850, "EUR")
    assert (sale.amount, sale.currency, sale.fx_missing) == (
        int(expected),
        "USD",
        False,
    )
    assert sale.fx_rate == str(_ecb_usd_per_eur(SALE_TIME.date()))
    assert _rollup(shop) == {True: (1, 1, int(expected))}
    with shop.session() as session:
        commission = session.exec(select(Commission)).one()
    assert (commission.amount, commission.earnings, commission.currency) == (
        1850,
        185,
        "EUR",
    )


def test_jpy_sale_has_no_minor_unit(shop: Shop) -> None:
    sale = _sale(shop, _customer(shop), amount=5000, currency="jpy")
    converter = CurrencyConverter(decimal=True)
    usd = converter.convert(Decimal(5000), "JPY", "USD", date=SALE_TIME.date())
    expected = (usd * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    assert (sale.original_amount, sale.original_currency) == (5000, "JPY")
    assert sale.amount == int(expected)


def test_kwd_sale_without_an_ecb_rate_is_kept_unconverted_and_flagged(
    shop: Shop,
) -> None:
    sale = _sale(shop, _customer(shop), amount=5120, currency="kwd")  # 5.120 KWD
    assert (sale.original_amount, sale.original_currency) == (5120, "KWD")
    assert (sale.amount, sale.fx_missing, sale.fx_rate, sale.currency) == (
        None,
        True,
        None,
        "USD",
    )
    assert _rollup(shop) == {True: (1, 1, 0)}
    with shop.session() as session:
        commission = session.exec(select(Commission)).one()
    assert (commission.amount, commission.earnings, commission.currency) == (
        5120,
        512,
        "KWD",
    )


def test_sale_dated_before_the_table_is_flagged(shop: Shop) -> None:
    sale = _sale(
        shop,
        _customer(shop),
        amount=100,
        currency="eur",
        timestamp=datetime(1998, 6, 1, tzinfo=UTC),
    )
    assert sale.amount is None and sale.fx_missing


def test_flagged_sales_are_converted_once_a_table_has_their_rate(
    shop: Shop, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sale = _sale(shop, _customer(shop), amount=5120, currency="kwd")
    table = currency.packaged_rates_file().read_bytes()
    lines = currency._csv_lines(table, "hist.zip")
    header = lines[0].rstrip(",") + ",KWD"
    rows = [
        line.rstrip(",") + (",0.3500" if line.startswith("2026-07-30") else ",N/A")
        for line in lines[1:]
    ]
    monkeypatch.setenv("CODEQR_FX_RATES_FILE", str(tmp_path / "rates.csv"))
    from server.settings import reset_settings

    reset_settings()
    currency.install_table(
        "\n".join([header, *rows]).encode(), "rates.csv", tmp_path / "rates.csv"
    )

    with shop.session() as session:
        assert conversions.convert_flagged_sales(session) == 1
        session.commit()
        converted = session.get(Sale, sale.id)
    assert converted is not None
    usd_per_eur = _ecb_usd_per_eur(SALE_TIME.date())
    expected = (Decimal("5.120") / Decimal("0.3500") * usd_per_eur * 100).quantize(
        Decimal(1), rounding=ROUND_HALF_EVEN
    )
    assert (converted.amount, converted.fx_missing) == (int(expected), False)
    assert _rollup(shop) == {True: (1, 1, int(expected))}


# --- refunds -------------------------------------------------------------------------------


def _refund(
    shop: Shop, sale_id: int | None, refunded: int, code: str = "usd", **kw: Any
) -> int:
    with shop.session() as session:
        sale = session.get(Sale, sale_id)
        assert sale is not None
        applied = conversions.apply_refund(
            session, sale, amount_refunded=refunded, currency=code, **kw
        )
        session.commit()
        return applied


def _refund_state(shop: Shop, sale_id: int | None) -> tuple[int, int, int]:
    with shop.session() as session:
        sale = session.get(Sale, sale_id)
        commission = session.exec(
            select(Commission).where(Commission.sale_id == sale_id)
        ).one()
    assert sale is not None
    return sale.refunded_amount, commission.amount, commission.earnings


def test_refunds_apply_only_the_change_of_the_cumulative_amount(shop: Shop) -> None:
    sale = _sale(shop, _customer(shop), amount=2000)
    assert _refund(shop, sale.id, 500) == 500
    assert _refund_state(shop, sale.id) == (500, 1500, 150)
    assert _refund(shop, sale.id, 500) == 0  # replay
    assert _refund_state(shop, sale.id) == (500, 1500, 150)
    assert _refund(shop, sale.id, 2000) == 1500
    assert _refund_state(shop, sale.id) == (2000, 0, 0)
    assert _refund(shop, sale.id, 500) == 0  # the partial one arriving late
    assert _refund_state(shop, sale.id) == (2000, 0, 0)
    assert _rollup(shop) == {True: (1, 1, 2000)}  # rollups count gross sales


def test_commission_is_pending_until_its_sale_is_refunded_in_full(shop: Shop) -> None:
    sale = _sale(shop, _customer(shop), amount=2000)

    def status() -> str:
        with shop.session() as session:
            return session.exec(
                select(Commission.status).where(Commission.sale_id == sale.id)
            ).one()

    _refund(shop, sale.id, 1999)
    assert status() == "pending"
    _refund(shop, sale.id, 2000)
    assert status() == "refunded"


def test_refund_in_the_buyers_currency_applies_pro_rata(shop: Shop) -> None:
    sale = _sale(shop, _customer(shop), amount=2000, currency="usd")
    # Adaptive Pricing (legacy): the charge was 1850 EUR; 925 EUR refunded is half.
    assert _refund(shop, sale.id, 925, "eur", payment_amount=1850) == 1000
    assert _refund_state(shop, sale.id) == (1000, 1000, 100)


def test_refund_never_exceeds_the_sale(shop: Shop) -> None:
    sale = _sale(shop, _customer(shop), amount=2000)
    assert _refund(shop, sale.id, 5000) == 2000


# --- concurrency ---------------------------------------------------------------------------


def _together(count: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = work(index)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_concurrent_duplicate_sales_make_one_sale(shop: Shop) -> None:
    customer = _customer(shop)

    def work(index: int) -> int | None:
        ids = [
            {"invoice_id": "in_1"},
            {"checkout_session_id": "cs_1", "invoice_id": "in_1"},
        ]
        return _sale(shop, customer, **ids[index % 2]).id

    ids = _together(6, work)
    assert len(set(ids)) == 1
    assert _count(shop, Sale) == 1 and _count(shop, Commission) == 1
    assert _rollup(shop) == {True: (1, 1, 2000)}


def test_concurrent_duplicate_leads_make_one_customer_and_one_lead(shop: Shop) -> None:
    shop.click("click_aaaaaaaaaaaaaaaa")

    def work(_index: int) -> int | None:
        with shop.session() as session:
            lead = _lead(
                shop, session, "click_aaaaaaaaaaaaaaaa", stripe_customer_id="cus_1"
            )
            session.commit()
            return lead.id

    ids = _together(6, work)
    assert len(set(ids)) == 1
    assert _count(shop, Customer) == 1 and _count(shop, Lead) == 1
    assert _rollup(shop) == {True: (1, 0, 0)}


def test_concurrent_refunds_end_at_the_largest_cumulative_amount(shop: Shop) -> None:
    sale = _sale(shop, _customer(shop), amount=2000)
    _together(6, lambda i: _refund(shop, sale.id, [500, 2000, 1200][i % 3]))
    assert _refund_state(shop, sale.id) == (2000, 0, 0)


def test_record_sale_refuses_a_customer_of_another_workspace(shop: Shop) -> None:
    customer = _customer(shop)
    with (
        shop.session() as session,
        pytest.raises(conversions.UnknownCustomer) as caught,
    ):
        conversions.record_sale(
            session,
            shop.workspace(session, other=True),
            customer=customer,
            amount=100,
            currency="usd",
        )
    assert caught.value.code == "NOT_FOUND"
    assert _count(shop, Sale) == 0
