"""Fixtures of the GraphQL API: workspaces with API keys, rows written straight to
storage (with their hourly rollups), and a small client for /graphql over real HTTP."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from server import rollups
from server.cli import create_api_key, create_link, create_workspace
from server.db import session_scope
from server.models import (
    ApiKey,
    Click,
    Commission,
    Customer,
    Lead,
    Partner,
    Payout,
    Sale,
    utcnow,
)
from server.security import new_token, token_hash
from tests.conftest import LiveServer


@dataclass
class Tenant:
    """A workspace with an API key and one link."""

    id: int
    slug: str
    token: str
    link_id: int
    link_key: str


def make_tenant(
    slug: str, plan: str = "business", partner: str | None = None
) -> Tenant:
    workspace = create_workspace(slug, plan=plan)
    token = create_api_key(slug)
    link = create_link(
        slug,
        "https://example.com/pricing",
        key=f"{slug}-link",
        track_conversion=True,
        partner=partner,
    )
    assert workspace.id is not None
    return Tenant(workspace.id, slug, token, int(link["id"]), link["key"])


def make_read_only_key(tenant: Tenant) -> str:
    token = new_token("cq_live_")
    with session_scope() as session:
        session.add(
            ApiKey(
                workspace_id=tenant.id,
                token_hash=token_hash(token),
                prefix=token[:12],
                scope="conversions:read",
            )
        )
    return token


def revoke_keys(tenant: Tenant) -> None:
    with session_scope() as session:
        for key in session.exec(select(ApiKey).where(ApiKey.workspace_id == tenant.id)):
            key.revoked_at = utcnow()


# --- rows written straight to storage ---------------------------------------------------


def add_click(
    tenant: Tenant, at: datetime | None = None, *, click_id: str | None = None
) -> str:
    at = at or utcnow()
    click_id = click_id or secrets.token_urlsafe(16)
    with session_scope() as session:
        session.add(
            Click(
                id=click_id,
                workspace_id=tenant.id,
                link_id=tenant.link_id,
                timestamp=at,
            )
        )
        rollups.bump(
            session, workspace_id=tenant.id, moment=at, livemode=True, clicks=1
        )
    return click_id


def add_customer(
    tenant: Tenant,
    external_id: str,
    *,
    email: str | None = None,
    name: str | None = None,
    click_id: str | None = None,
    at: datetime | None = None,
    livemode: bool = True,
) -> int:
    with session_scope() as session:
        customer = Customer(
            workspace_id=tenant.id,
            external_id=external_id,
            email=email,
            name=name,
            click_id=click_id,
            link_id=tenant.link_id if click_id else None,
            livemode=livemode,
            created_at=at or utcnow(),
        )
        session.add(customer)
        session.flush()
        assert customer.id is not None
        return customer.id


def add_lead(
    tenant: Tenant,
    customer_id: int,
    *,
    at: datetime | None = None,
    livemode: bool = True,
    event_name: str = "Sign up",
) -> int:
    at = at or utcnow()
    with session_scope() as session:
        lead = Lead(
            workspace_id=tenant.id,
            customer_id=customer_id,
            link_id=tenant.link_id,
            event_name=event_name,
            livemode=livemode,
            timestamp=at,
        )
        session.add(lead)
        rollups.bump(
            session, workspace_id=tenant.id, moment=at, livemode=livemode, leads=1
        )
        session.flush()
        assert lead.id is not None
        return lead.id


def add_sale(
    tenant: Tenant,
    customer_id: int,
    amount: int,
    *,
    at: datetime | None = None,
    livemode: bool = True,
    invoice_id: str | None = None,
) -> int:
    at = at or utcnow()
    with session_scope() as session:
        sale = Sale(
            workspace_id=tenant.id,
            customer_id=customer_id,
            link_id=tenant.link_id,
            original_amount=amount,
            original_currency="EUR",
            amount=amount,
            currency="USD",
            refunded_amount=0,
            invoice_id=invoice_id,
            livemode=livemode,
            timestamp=at,
        )
        session.add(sale)
        rollups.bump(
            session,
            workspace_id=tenant.id,
            moment=at,
            livemode=livemode,
            sales=1,
            sale_amount=amount,
        )
        session.flush()
        assert sale.id is not None
        return sale.id


def add_commission(
    tenant: Tenant, sale_id: int, partner_email: str, *, at: datetime
) -> int:
    with session_scope() as session:
        partner = session.exec(
            select(Partner).where(
                Partner.workspace_id == tenant.id, Partner.email == partner_email
            )
        ).one()
        assert partner.id is not None
        commission = Commission(
            workspace_id=tenant.id,
            partner_id=partner.id,
            sale_id=sale_id,
            amount=1000,
            earnings=100,
            currency="EUR",
            created_at=at,
        )
        session.add(commission)
        session.add(
            Payout(
                workspace_id=tenant.id,
                partner_id=partner.id,
                amount=100,
                currency="EUR",
                created_at=at,
            )
        )
        session.flush()
        assert commission.id is not None
        return commission.id


def minutes_ago(minutes: float) -> datetime:
    return utcnow() - timedelta(minutes=minutes)


# --- a client for /graphql --------------------------------------------------------------


@dataclass
class Api:
    server: LiveServer
    http: httpx.Client

    def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return self.http.post("/graphql", json=body, headers=headers)

    def data(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str
    ) -> dict[str, Any]:
        """The data of a query that must succeed."""
        response = self.post(query, variables, token=token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    def error_codes(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None
    ) -> list[str]:
        response = self.post(query, variables, token=token)
        body = response.json()
        assert body.get("errors"), body
        return [error["extensions"]["code"] for error in body["errors"]]


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[Api]:
    with live_server.client() as http:
        yield Api(live_server, http)
