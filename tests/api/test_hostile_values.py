"""Values no store can hold (NUL, unpaired surrogates, instants past year 9999, ids past
the integer columns) are BAD_USER_INPUT, over HTTP and WebSocket: before these tests
they reached the database and came back as masked INTERNAL_SERVER_ERRORs."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
import websockets

from tests.api.conftest import Api, make_tenant

SEARCH = "query($s: String) { customers(search: $s) { edges { node { id } } } }"
CUSTOMER = "query($s: String!) { customer(externalId: $s) { id } }"
TRACK_LEAD = "mutation($i: TrackLeadInput!) { trackLead(input: $i) { lead { id } } }"
TRACK_SALE = "mutation($i: TrackSaleInput!) { trackSale(input: $i) { sale { id } } }"
CUSTOMERS_AFTER = "query($a: String) { customers(after: $a) { edges { node { id } } } }"
EVENTS_AFTER = "query($a: String) { events(after: $a) { edges { node { kind } } } }"


def _cursor(*parts: object) -> str:
    raw = json.dumps(list(parts)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (SEARCH, {"s": "a\u0000b"}),
        (SEARCH, {"s": "\ud800"}),
        (CUSTOMER, {"s": "cus\u0000"}),
        (TRACK_LEAD, {"i": {"clickId": "c\u0000", "customerExternalId": "x"}}),
        (TRACK_LEAD, {"i": {"clickId": "abc", "customerExternalId": "\udfff"}}),
        (TRACK_SALE, {"i": {"customerExternalId": "x\u0000", "amount": 1}}),
        (EVENTS_AFTER, {"a": _cursor("events", "2024-01-01T00:00:00+00:00", 0, "\0")}),
    ],
    ids=[
        "search-nul",
        "search-surrogate",
        "customer-nul",
        "trackLead-nul",
        "trackLead-surrogate",
        "trackSale-nul",
        "events-cursor-nul",
    ],
)
def test_text_variable_no_store_can_hold_is_bad_user_input(
    api: Api, query: str, variables: dict[str, Any]
) -> None:
    tenant = make_tenant("acme")
    body = json.dumps({"query": query, "variables": variables})  # surrogates escaped

    response = api.http.post(
        "/graphql",
        content=body,
        headers={
            "Authorization": f"Bearer {tenant.token}",
            "Content-Type": "application/json",
        },
    )

    codes = [error["extensions"]["code"] for error in response.json()["errors"]]
    assert codes == ["BAD_USER_INPUT"]


def test_nul_in_a_string_literal_is_bad_user_input(api: Api) -> None:
    tenant = make_tenant("acme")
    query = '{ customers(search: "a\\u0000") { edges { node { id } } } }'

    assert api.error_codes(query, token=tenant.token) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (CUSTOMERS_AFTER, {"a": _cursor("customers", "2024-01-01T00:00:00Z", 2**80)}),
        (CUSTOMERS_AFTER, {"a": _cursor("customers", "9999-12-31T23:59:59-14:00", 1)}),
        (CUSTOMERS_AFTER, {"a": _cursor("customers", "0001-01-01T00:00:00+14:00", 1)}),
        (EVENTS_AFTER, {"a": _cursor("events", "2024-01-01T00:00:00Z", 1, 2**80)}),
        (
            '{ events(start: "0001-01-01T00:00:00+14:00") { edges { node { kind } } } }',
            None,
        ),
        ('{ funnel(end: "9999-12-31T23:59:59-14:00") { clicks } }', None),
    ],
    ids=[
        "cursor-id-64bit",
        "cursor-after-9999",
        "cursor-before-0001",
        "events-cursor-id-64bit",
        "events-start-before-0001",
        "funnel-end-after-9999",
    ],
)
def test_out_of_range_cursor_or_instant_is_bad_user_input(
    api: Api, query: str, variables: dict[str, Any] | None
) -> None:
    tenant = make_tenant("acme")

    assert api.error_codes(query, variables, token=tenant.token) == ["BAD_USER_INPUT"]


def test_nul_variable_over_websocket_is_bad_user_input_and_keeps_the_socket(
    api: Api,
) -> None:
    tenant = make_tenant("acme")
    url = api.server.url.replace("http://", "ws://") + "/graphql"
    init = {"Authorization": f"Bearer {tenant.token}"}

    async def scenario() -> tuple[list[str], str]:
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            payload = {"query": SEARCH, "variables": {"s": "\u0000"}}
            await ws.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": payload})
            )
            result = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "ping"}))
            while (message := json.loads(await ws.recv()))["type"] == "complete":
                pass
            assert result["type"] == "error"  # refused before execution
            codes = [e["extensions"]["code"] for e in result["payload"]]
            return codes, message["type"]

    assert asyncio.run(scenario()) == (["BAD_USER_INPUT"], "pong")
