"""The live events subscription over a real WebSocket (graphql-transport-ws), with the
gql client and the websockets client against uvicorn."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import websockets
from gql import Client, gql
from gql.transport.exceptions import TransportConnectionFailed, TransportServerError
from gql.transport.websockets import WebsocketsTransport
from sqlmodel import select

from server.api import limits
from server.bus import MemoryBus, get_bus
from server.db import session_scope
from server.models import OAuthToken, utcnow
from tests.api.conftest import Api, Tenant, add_click, make_tenant, revoke_keys
from tests.oauth.flow import create_oauth_setup, obtain_tokens

LIVE_EVENTS = (
    Path(__file__).resolve().parents[2]
    / "graphql"
    / "operations"
    / "LiveEvents.graphql"
).read_text()
TRACK_LEAD = """
mutation($input: TrackLeadInput!) { trackLead(input: $input) { lead { id } } }
"""
TRACK_SALE = """
mutation($input: TrackSaleInput!) { trackSale(input: $input) { sale { id } } }
"""
TRANSPORT_WS = "graphql-transport-ws"


def ws_url(api: Api) -> str:
    return api.server.url.replace("http://", "ws://") + "/graphql"


def subscriber_count(workspace_id: int) -> int:
    bus = get_bus()
    assert isinstance(bus, MemoryBus)
    return len(bus._subscribers.get(workspace_id, ()))


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


def transport(api: Api, token: str, **kwargs: Any) -> WebsocketsTransport:
    kwargs.setdefault("subprotocols", [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    return WebsocketsTransport(
        url=ws_url(api), init_payload={"Authorization": f"Bearer {token}"}, **kwargs
    )


def track_lead_and_sale(api: Api, tenant: Tenant, click_id: str) -> None:
    lead = {"clickId": click_id, "customerExternalId": "user_1"}
    sale = {"customerExternalId": "user_1", "amount": 4900, "currency": "USD"}
    api.data(TRACK_LEAD, {"input": lead}, token=tenant.token)
    api.data(TRACK_SALE, {"input": sale}, token=tenant.token)


async def receive_after_tracking(
    api: Api, tenant: Tenant, click_id: str, count: int, **transport_kwargs: Any
) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    async with Client(
        transport=transport(api, tenant.token, **transport_kwargs)
    ) as session:

        async def collect() -> None:
            request = gql(LIVE_EVENTS)
            request.variable_values = {"kinds": ["LEAD", "SALE"]}
            async for result in session.subscribe(request):
                received.append(result["events"])
                if len(received) == count:
                    return

        task = asyncio.create_task(collect())
        await wait_until(lambda: subscriber_count(tenant.id) == 1, "subscribed")
        await asyncio.to_thread(track_lead_and_sale, api, tenant, click_id)
        await asyncio.wait_for(task, timeout=10)
    await wait_until(lambda: subscriber_count(tenant.id) == 0, "unsubscribed")
    return received


def test_subscription_streams_a_lead_and_a_sale_tracked_after_subscribing(
    api: Api,
) -> None:
    tenant = make_tenant("acme")
    click = add_click(tenant)

    received = asyncio.run(receive_after_tracking(api, tenant, click, count=2))

    lead, sale = received
    assert lead["__typename"] == "Lead"
    assert lead["kind"] == "LEAD"
    assert lead["clickId"] == click
    assert lead["link"] == {"key": tenant.link_key}
    assert lead["customer"] == {"externalId": "user_1"}
    assert sale["__typename"] == "Sale"
    assert sale["amount"] == 4900
    assert sale["originalCurrency"] == "USD"
    assert sale["customer"] == {"externalId": "user_1"}
    assert subscriber_count(tenant.id) == 0


def test_subscription_works_with_gqls_default_subprotocol_offer(api: Api) -> None:
    tenant = make_tenant("acme")
    click = add_click(tenant)

    received = asyncio.run(
        receive_after_tracking(
            api,
            tenant,
            click,
            count=1,
            subprotocols=[
                WebsocketsTransport.APOLLO_SUBPROTOCOL,
                WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
            ],
        )
    )

    assert received[0]["kind"] == "LEAD"


def test_subscription_sees_nothing_of_another_workspace(api: Api) -> None:
    tenant = make_tenant("acme")
    other = make_tenant("other")
    other_click = add_click(other)

    async def scenario() -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        async with Client(transport=transport(api, tenant.token)) as session:

            async def collect() -> None:
                async for result in session.subscribe(gql(LIVE_EVENTS)):
                    received.append(result["events"])

            task = asyncio.create_task(collect())
            await wait_until(lambda: subscriber_count(tenant.id) == 1, "subscribed")
            await asyncio.to_thread(track_lead_and_sale, api, other, other_click)
            own_click = add_click(tenant)
            lead = {"clickId": own_click, "customerExternalId": "mine"}
            await asyncio.to_thread(
                api.data, TRACK_LEAD, {"input": lead}, token=tenant.token
            )
            await wait_until(lambda: len(received) == 1, "own lead received")
            task.cancel()
        return received

    received = asyncio.run(scenario())

    assert [event["customer"] for event in received] == [{"externalId": "mine"}]


async def _close_code_after_init(api: Api, payload: dict[str, Any]) -> int | None:
    async with websockets.connect(ws_url(api), subprotocols=[TRANSPORT_WS]) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(socket.recv(), timeout=10)
        return socket.close_code


@pytest.mark.parametrize(
    "payload",
    [
        {"Authorization": "Bearer cq_live_not-a-real-key"},
        {"Authorization": "not-bearer"},
        {"Authorization": 42},
        {},
    ],
)
def test_connection_init_with_bad_token_closes_4403(
    api: Api, payload: dict[str, Any]
) -> None:
    make_tenant("acme")

    code = asyncio.run(_close_code_after_init(api, payload))

    assert code == 4403


def test_gql_client_with_bad_token_fails_to_connect(api: Api) -> None:
    make_tenant("acme")

    async def connect() -> None:
        async with Client(transport=transport(api, "cq_live_wrong")) as session:
            async for _ in session.subscribe(gql(LIVE_EVENTS)):
                break

    with pytest.raises((TransportConnectionFailed, TransportServerError)):
        asyncio.run(connect())


def test_socket_is_closed_4403_when_its_key_is_revoked(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = make_tenant("acme")
    monkeypatch.setattr(limits, "TOKEN_RECHECK_SECONDS", 0.1)

    async def scenario() -> int | None:
        async with websockets.connect(ws_url(api), subprotocols=[TRANSPORT_WS]) as ws:
            init = {"Authorization": f"Bearer {tenant.token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            assert ack["type"] == "connection_ack"
            await asyncio.to_thread(revoke_keys, tenant)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), timeout=10)
            return ws.close_code

    assert asyncio.run(scenario()) == 4403


def test_socket_is_closed_4403_when_its_oauth_token_expires(api: Api) -> None:
    setup = create_oauth_setup(workspace="acme")
    tokens = obtain_tokens(api.server.url, setup)
    with session_scope() as session:
        for row in session.exec(select(OAuthToken)):
            row.access_expires_at = utcnow() + timedelta(seconds=1)

    async def scenario() -> tuple[str, int | None]:
        async with websockets.connect(ws_url(api), subprotocols=[TRANSPORT_WS]) as ws:
            init = {"Authorization": f"Bearer {tokens['access_token']}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), timeout=10)
            return ack["type"], ws.close_code

    assert asyncio.run(scenario()) == ("connection_ack", 4403)


def test_oauth_access_token_reads_its_workspace_over_http(api: Api) -> None:
    setup = create_oauth_setup(workspace="acme")
    tokens = obtain_tokens(api.server.url, setup)

    data = api.data("{ workspace { slug } }", token=tokens["access_token"])

    assert data == {"workspace": {"slug": "acme"}}


async def _init(socket: Any, token: str) -> None:
    init = {"Authorization": f"Bearer {token}"}
    await socket.send(json.dumps({"type": "connection_init", "payload": init}))
    ack = json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
    assert ack["type"] == "connection_ack"


async def _subscribe(socket: Any, operation_id: str) -> None:
    payload = {"query": "subscription { events { id } }"}
    message = {"id": operation_id, "type": "subscribe", "payload": payload}
    await socket.send(json.dumps(message))


def test_abrupt_disconnect_releases_the_bus_subscription(api: Api) -> None:
    tenant = make_tenant("acme")

    async def scenario() -> None:
        socket = await websockets.connect(ws_url(api), subprotocols=[TRANSPORT_WS])
        await _init(socket, tenant.token)
        await _subscribe(socket, "1")
        await _subscribe(socket, "2")
        await wait_until(lambda: subscriber_count(tenant.id) == 2, "subscribed twice")
        socket.transport.abort()
        await wait_until(lambda: subscriber_count(tenant.id) == 0, "released")

    asyncio.run(scenario())


def test_operations_beyond_the_per_socket_limit_are_refused(api: Api) -> None:
    tenant = make_tenant("acme")
    limit = limits.MAX_SUBSCRIPTIONS_PER_CONNECTION

    async def scenario() -> dict[str, Any]:
        async with websockets.connect(ws_url(api), subprotocols=[TRANSPORT_WS]) as ws:
            await _init(ws, tenant.token)
            for index in range(limit + 1):
                await _subscribe(ws, str(index))
            reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            await wait_until(
                lambda: subscriber_count(tenant.id) == limit, "limit subscribed"
            )
            return reply

    reply = asyncio.run(scenario())

    assert reply["type"] == "error"
    assert reply["id"] == str(limit)
    assert "limit" in reply["payload"][0]["message"]
    assert reply["payload"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_invalid_subscription_gets_a_coded_error_and_the_socket_stays(api: Api) -> None:
    tenant = make_tenant("acme")

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(ws_url(api), subprotocols=[TRANSPORT_WS]) as ws:
            await _init(ws, tenant.token)
            bad = {"query": "subscription { events { nope } }"}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": bad}))
            error = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            await ws.send(json.dumps({"type": "ping"}))
            pong = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            return [error, pong]

    error, pong = asyncio.run(scenario())

    assert error["type"] == "error"
    assert error["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert pong == {"type": "pong"}


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"id": "1", "type": "subscribe", "payload": None}, "payload must be an object"),
        ({"id": "1", "type": "subscribe", "payload": [1]}, "payload must be an object"),
        ({"id": "1", "type": "subscribe", "payload": {"query": 1}}, "payload.query"),
        (
            {"id": "1", "type": "subscribe",
             "payload": {"query": "subscription { events { kind } }",
                         "operationName": 5}},
            "payload.operationName must be a string or null",
        ),
        (
            {"id": "1", "type": "subscribe",
             "payload": {"query": "subscription { events { kind } }",
                         "variables": "x"}},
            "payload.variables must be an object or null",
        ),
        (
            {"id": 7, "type": "subscribe",
             "payload": {"query": "subscription { events { kind } }"}},
            "id must be a non-empty string",
        ),
    ],
)  # fmt: skip
def test_a_malformed_subscribe_message_closes_4400_saying_what_is_wrong(
    api: Api, message: dict[str, Any], problem: str
) -> None:
    tenant = make_tenant("acme")

    async def scenario() -> tuple[int | None, str | None]:
        async with websockets.connect(ws_url(api), subprotocols=[TRANSPORT_WS]) as ws:
            await _init(ws, tenant.token)
            await ws.send(json.dumps(message))
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), timeout=10)
            return ws.close_code, ws.close_reason

    code, reason = asyncio.run(scenario())

    assert code == 4400
    assert reason is not None and problem in reason


def test_subscription_streams_a_click_made_through_the_real_redirect(api: Api) -> None:
    tenant = make_tenant("acme")

    async def scenario() -> dict[str, Any]:
        async with Client(transport=transport(api, tenant.token)) as session:
            request = gql(LIVE_EVENTS)
            request.variable_values = {"kinds": ["CLICK"]}
            stream = session.subscribe(request)
            first = asyncio.ensure_future(stream.__anext__())
            await wait_until(lambda: subscriber_count(tenant.id) == 1, "subscribed")
            redirect = await asyncio.to_thread(
                api.http.get, f"/{tenant.link_key}", follow_redirects=False
            )
            assert redirect.status_code == 302
            result = await asyncio.wait_for(first, timeout=10)
            await stream.aclose()
            event: dict[str, Any] = result["events"]
            event["location"] = redirect.headers["location"]
            return event

    click = asyncio.run(scenario())

    assert click["__typename"] == "Click"
    assert click["link"] == {"key": tenant.link_key}
    assert f"cq_id={click['clickId']}" in click["location"]
