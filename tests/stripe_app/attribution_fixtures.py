"""Fixtures and read-back helpers of the attribution tests: a running app pointed at the
fake Stripe API, a Business workspace linked to the fixtures' account, and the state of a
workspace as a plain, comparable dict."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from server import currency
from server.cli import create_link, create_workspace
from server.db import get_engine
from server.models import (
    Commission,
    Customer,
    Lead,
    RollupHourly,
    Sale,
    StripeEvent,
)
from stripe_app.stripe_api import reset_stripe_api
from tests.conftest import RESET_HOOKS, LiveServer, start_server
from tests.stripe_app.fake_stripe import FakeStripe
from tests.stripe_app.stripe_events import ACCOUNT, add_click

for _hook in (reset_stripe_api, currency.reset_rate_cache):
    if _hook not in RESET_HOOKS:
        RESET_HOOKS.append(_hook)


@dataclass
class Shop:
    """A Business workspace linked to a Stripe account, with a tracked partner link."""

    engine: Engine
    workspace_id: int
    link_id: int
    link_key: str
    account: str

    def click(self, click_id: str) -> str:
        add_click(
            self.engine, click_id, workspace_id=self.workspace_id, link_id=self.link_id
        )
        return click_id


def make_shop(slug: str, account: str, *, plan: str = "business") -> Shop:
    workspace = create_workspace(slug, plan=plan, stripe_account=account)
    link = create_link(
        slug,
        f"https://{slug}.example/pricing",
        key=f"{slug}-pro",
        track_conversion=True,
        partner=f"partner@{slug}.example",
    )
    assert workspace.id is not None
    return Shop(get_engine(), workspace.id, link["id"], link["key"], account)


@pytest.fixture
def app_server(
    fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveServer]:
    """The app on loopback (webhook, worker, redirects), looking Stripe up in the fake."""
    monkeypatch.setenv("CODEQR_WORKER_MAX_ATTEMPTS", "6")
    server = start_server()
    yield server
    server.stop()


@pytest.fixture
def shop(app_server: LiveServer) -> Shop:
    return make_shop("acme", ACCOUNT)


def click_through(server: LiveServer, key: str) -> str:
    """GET /{key} like a browser; the click id is the cq_id of the redirect."""
    with server.client() as client:
        response = client.get(
            f"/{key}", headers={"User-Agent": "Mozilla/5.0 Firefox/128.0"}
        )
    assert response.status_code == 302, response.text
    return parse_qs(urlsplit(response.headers["location"]).query)["cq_id"][0]


# --- reading the state back -------------------------------------------------------------


def state(engine: Engine, workspace_id: int) -> dict[str, Any]:
    """Everything the purchase produced in one workspace, without database ids."""
    with Session(engine) as session:
        customers = session.exec(
            select(Customer).where(Customer.workspace_id == workspace_id)
        ).all()
        external = {c.id: c.external_id for c in customers}
        leads = session.exec(
            select(Lead).where(Lead.workspace_id == workspace_id)
        ).all()
        sales = session.exec(
            select(Sale).where(Sale.workspace_id == workspace_id).order_by(col(Sale.id))
        ).all()
        commissions = session.exec(
            select(Commission).where(Commission.workspace_id == workspace_id)
        ).all()
        rollups = session.exec(
            select(RollupHourly).where(RollupHourly.workspace_id == workspace_id)
        ).all()
    return {
        "customers": sorted(
            (
                c.external_id,
                c.stripe_customer_id,
                c.email,
                c.click_id,
                c.livemode,
                c.created_at.isoformat(),
            )
            for c in customers
        ),
        "leads": sorted(
            (
                external[lead.customer_id],
                lead.event_name,
                lead.click_id,
                lead.livemode,
                lead.timestamp.isoformat(),
            )
            for lead in leads
        ),
        "sales": [_sale(s, external) for s in sales],
        "commissions": sorted(
            (c.amount, c.earnings, c.rate_bps, c.currency, c.status, c.livemode)
            for c in commissions
        ),
        "rollups": sorted(
            (r.bucket.isoformat(), r.livemode, r.leads, r.sales, r.sale_amount)
            for r in rollups
            if r.leads or r.sales
        ),
    }


def _sale(sale: Sale, external: dict[int | None, str]) -> dict[str, Any]:
    return {
        "customer": external[sale.customer_id],
        "click_id": sale.click_id,
        "original": (sale.original_amount, sale.original_currency),
        "amount": (sale.amount, sale.currency, sale.fx_missing),
        "refunded": sale.refunded_amount,
        "ids": (
            sale.invoice_id,
            sale.checkout_session_id,
            sale.payment_intent_id,
            sale.charge_id,
        ),
        "livemode": sale.livemode,
        "timestamp": sale.timestamp.isoformat(),
    }


def inbox(engine: Engine, event_id: str) -> StripeEvent:
    with Session(engine) as session:
        row = session.get(StripeEvent, event_id)
    assert row is not None
    return row
