"""Redis and PostgreSQL buses: an event published on one instance reaches a subscriber on
another; a cancelled subscriber releases its channel; failures are logged, not raised."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable

import pytest
import redis

from server.bus import BusEvent, make_bus
from server.bus_remote import (
    MAX_PAYLOAD_BYTES,
    PostgresBus,
    RedisBus,
    RemoteBus,
    decode,
    encode,
)
from server.log_config import configure_logging

REDIS_URL = os.environ.get("CODEQR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("CODEQR_TEST_DATABASE_URL")
KINDS = ["redis", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture
def app_logging() -> None:
    """Logging as the app sets it up (structlog through stdlib), before pytest's capture
    handler is attached for the test itself."""
    configure_logging("INFO")


def _make(kind: str, prefix: str) -> RemoteBus:
    if kind == "redis":
        return RedisBus(REDIS_URL, prefix=prefix)
    if not PG_URL:
        pytest.skip("CODEQR_TEST_DATABASE_URL is not set")
    return PostgresBus(PG_URL, prefix=prefix)


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(250):
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


async def _collect(bus: RemoteBus, workspace_id: int, count: int) -> list[BusEvent]:
    received: list[BusEvent] = []
    async for event in bus.subscribe(workspace_id):
        received.append(event)
        if len(received) == count:
            break
    return received


@pytest.mark.parametrize("kind", KINDS)
def test_bus_event_published_on_one_instance_reaches_a_subscriber_on_another(
    kind: str,
) -> None:
    prefix = f"codeqr_test_{uuid.uuid4().hex[:8]}"

    async def scenario() -> list[BusEvent]:
        publisher, listener = _make(kind, prefix), _make(kind, prefix)
        await publisher.start()
        await listener.start()
        try:
            consumer = asyncio.create_task(_collect(listener, 7, 2))

            async def listening() -> bool:
                return listener.listening(7)

            await _until(listening, "the listener's subscription")
            await publisher.publish(
                [
                    BusEvent(7, "CLICK", "click-1"),
                    BusEvent(8, "LEAD", "other-workspace"),
                    BusEvent(7, "SALE", "sale-1", livemode=False),
                ]
            )
            return await asyncio.wait_for(consumer, 10)
        finally:
            await publisher.stop()
            await listener.stop()

    assert asyncio.run(scenario()) == [
        BusEvent(7, "CLICK", "click-1"),
        BusEvent(7, "SALE", "sale-1", livemode=False),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_bus_cancelled_subscriber_releases_its_channel(kind: str) -> None:
    prefix = f"codeqr_test_{uuid.uuid4().hex[:8]}"

    async def remote_subscribed(bus: RemoteBus) -> bool:
        if isinstance(bus, RedisBus):
            with redis.Redis.from_url(REDIS_URL) as client:
                [(_, count)] = client.pubsub_numsub(bus.channel(3))
            return bool(count)
        assert isinstance(bus, PostgresBus)
        return bus.channel(3) in await bus.listening_channels()

    async def scenario() -> tuple[bool, bool, int]:
        bus = _make(kind, prefix)
        await bus.start()
        try:
            consumer = asyncio.create_task(_collect(bus, 3, 1))

            async def subscribed() -> bool:
                return bus.listening(3) and await remote_subscribed(bus)

            await _until(subscribed, "the subscription")
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consumer

            async def released() -> bool:
                return not bus.listening(3) and not await remote_subscribed(bus)

            await _until(released, "the channel to be released")
            return (
                bus.listening(3),
                await remote_subscribed(bus),
                bus.subscriber_count(3),
            )
        finally:
            await bus.stop()

    assert asyncio.run(scenario()) == (False, False, 0)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:1/0", "postgresql://postgres@127.0.0.1:1/none"]
)
def test_bus_publish_to_an_unreachable_broker_is_logged_not_raised(
    url: str, caplog: pytest.LogCaptureFixture, app_logging: None
) -> None:
    async def scenario() -> None:
        bus = make_bus(url)
        await bus.publish([BusEvent(1, "CLICK", "c")])
        await bus.stop()

    asyncio.run(scenario())

    assert "bus.publish_failed" in caplog.text


def test_make_bus_picks_the_transport_from_the_broker_url() -> None:
    assert isinstance(make_bus("redis://127.0.0.1:6379/0"), RedisBus)
    assert isinstance(make_bus("postgresql://postgres@127.0.0.1/postgres"), PostgresBus)
    with pytest.raises(ValueError, match="'kafka' is not supported"):
        make_bus("kafka://127.0.0.1:9092")


def test_bus_messages_stay_below_the_notify_limit_and_round_trip() -> None:
    events = [BusEvent(5, "CLICK", f"click-{i:05d}-" + "x" * 20) for i in range(1000)]
    events.append(BusEvent(6, "LEAD", "lead-1", livemode=False))

    messages = encode(events)

    assert len(messages) > 2
    assert all(len(payload.encode()) < MAX_PAYLOAD_BYTES for _, payload in messages)
    decoded = [event for ws, payload in messages for event in decode(ws, payload)]
    assert decoded == events


def test_bus_malformed_message_is_ignored(
    caplog: pytest.LogCaptureFixture, app_logging: None
) -> None:
    assert decode(1, b"not json") == []
    assert decode(1, '{"e": [["CLICK"]]}') == []
    assert "bus.message_malformed" in caplog.text
