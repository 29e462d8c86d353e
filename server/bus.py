"""The event bus: conversions recorded on any instance reach live subscribers on every
instance. ``memory://`` serves one process; Redis and PostgreSQL LISTEN/NOTIFY serve several.

Producers never publish from inside a transaction: domain code calls :func:`emit`, which
parks the event on the session, and the owner of the transaction calls :func:`publish_all`
after the commit, so a subscriber never hears of a row that was rolled back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from sqlmodel import Session

_PENDING_KEY = "codeqr.bus.pending"


@dataclass(frozen=True, slots=True)
class BusEvent:
    """What a subscriber is told: which row of which kind, in which workspace."""

    workspace_id: int
    kind: str  # CLICK | LEAD | SALE
    id: str
    livemode: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def emit(session: Session, event: BusEvent) -> None:
    session.info.setdefault(_PENDING_KEY, []).append(event)


def take_pending(session: Session) -> list[BusEvent]:
    events: list[BusEvent] = session.info.pop(_PENDING_KEY, [])
    return events


class EventBus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, events: list[BusEvent]) -> None: ...

    def subscribe(self, workspace_id: int) -> AsyncIterator[BusEvent]: ...


class MemoryBus:
    """In-process fan-out with a bounded queue per subscriber; a slow subscriber loses
    its oldest notifications rather than growing memory (the rows stay queryable)."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscribers: dict[int, set[asyncio.Queue[BusEvent]]] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._subscribers.clear()

    async def publish(self, events: list[BusEvent]) -> None:
        for event in events:
            self.deliver(event)

    def deliver(self, event: BusEvent) -> None:
        for queue in list(self._subscribers.get(event.workspace_id, ())):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    async def subscribe(self, workspace_id: int) -> AsyncIterator[BusEvent]:
        queue: asyncio.Queue[BusEvent] = asyncio.Queue(self._queue_size)
        self._subscribers.setdefault(workspace_id, set()).add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers[workspace_id].discard(queue)


_bus: EventBus | None = None


def get_bus() -> EventBus:
    global _bus
    if _bus is None:
        _bus = make_bus()
    return _bus


def set_bus(bus: EventBus | None) -> None:
    global _bus
    _bus = bus


def make_bus(url: str | None = None) -> EventBus:
    from server.settings import get_settings

    url = url or get_settings().broker_url
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        return MemoryBus()
    if scheme in {"redis", "rediss", "unix"}:
        from server.bus_remote import RedisBus

        return RedisBus(url)
    if scheme in {"postgresql", "postgres", "postgresql+psycopg"}:
        from server.bus_remote import PostgresBus

        return PostgresBus(url)
    raise ValueError(
        f"CODEQR_BROKER_URL scheme {scheme!r} is not supported: use memory://, "
        "redis://host:port/db or postgresql://user@host/db"
    )


async def publish_all(session: Session) -> None:
    events = take_pending(session)
    if events:
        await get_bus().publish(events)
