"""A signed Stripe event whose customer name holds text no store can hold (a NUL on
PostgreSQL, an unpaired surrogate anywhere) is handled once with that text cleaned,
instead of failing on every attempt until it is dead-lettered."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlmodel import select

from server.cli import create_link
from server.db import session_scope
from server.models import Customer, InboxStatus, Workspace
from tests.conftest import LiveServer
from tests.stripe_app.conftest import (
    deliver,
    fixture_bytes,
    wait_for_click,
    wait_for_status,
)

CUSTOMER_CREATED = "event_customer_created.json"


@pytest.mark.parametrize(
    "name", ["Nul\u0000Name", "Sur\ud800"], ids=["nul", "surrogate"]
)
def test_worker_handles_a_customer_name_no_store_can_hold_without_dead_letter(
    live_server: LiveServer,
    business_workspace: Workspace,
    database_url: str,
    name: str,
) -> None:
    if "\u0000" in name and database_url.startswith("sqlite"):
        pytest.skip("SQLite stores NUL in text")
    create_link("acme", "https://shop.example/", key="go", track_conversion=True)
    with live_server.client() as client:
        location = client.get("/go").headers["location"]
    click_id = parse_qs(urlsplit(location).query)["cq_id"][0]
    wait_for_click(click_id)
    event = json.loads(fixture_bytes(CUSTOMER_CREATED))
    customer = event["data"]["object"]
    customer["name"] = name
    customer["metadata"] = {"codeqrCustomerId": "ext_1", "codeqrClickId": click_id}
    body = json.dumps(event).encode()

    with live_server.client() as client:
        assert deliver(client, body).status_code == 200
    row = wait_for_status(
        event["id"],
        InboxStatus.DONE,
        InboxStatus.SKIPPED,
        InboxStatus.DEAD,
        timeout=90,
    )

    assert row.status == InboxStatus.DONE, row.reason
    assert row.attempts == 0
    with session_scope() as session:
        stored = session.exec(select(Customer.name)).one()
    assert stored is not None and "\x00" not in stored and stored.startswith(name[:3])
