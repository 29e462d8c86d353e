"""Event buses for several instances: Redis pub/sub and PostgreSQL LISTEN/NOTIFY.

Both work the same way. Each instance keeps ONE listening connection, subscribed to the
channels of the workspaces that have local subscribers (a channel per workspace), and fans
the notices out to bounded per-subscriber queues; a slow subscriber loses its oldest
notices, never memory (the rows stay queryable). Publishing groups events by workspace into
small JSON messages. A lost connection is re-opened with backoff and every channel is
subscribed again; notices published meanwhile are missed (notifications, not storage).

Publishing never raises for a transport failure: the rows were committed before, so the
failure is logged and only the live notice is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable

import psycopg
import redis.asyncio as redis_asyncio
from psycopg import sql
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url

from server.bus import BusEvent
from server.log_config import get_logger

logger = get_logger(__name__)

POLL_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; Redis has no such limit, but
# one size keeps the messages of both small.
MAX_PAYLOAD_BYTES = 7000


# --- messages ----------------------------------------------------------------------------


def encode(events: Iterable[BusEvent]) -> list[tuple[int, str]]:
    """Group events by workspace into ``(workspace_id, payload)`` messages, each payload
    a JSON object ``{"e": [[kind, id, livemode], ...]}`` below :data:`MAX_PAYLOAD_BYTES`."""
    by_workspace: dict[int, list[BusEvent]] = defaultdict(list)
    for event in events:
        by_workspace[event.workspace_id].append(event)
    messages: list[tuple[int, str]] = []
    for workspace_id, group in by_workspace.items():
        for chunk in _chunks(group):
            items = [[e.kind, e.id, int(e.livemode)] for e in chunk]
            messages.append(
                (workspace_id, json.dumps({"e": items}, separators=(",", ":")))
            )
    return messages


def _chunks(events: list[BusEvent]) -> Iterable[list[BusEvent]]:
    chunk: list[BusEvent] = []
    size = 8
    for event in events:
        item_size = len(event.kind) + len(event.id.encode()) + 12
        if chunk and size + item_size > MAX_PAYLOAD_BYTES:
            yield chunk
            chunk, size = [], 8
        chunk.append(event)
        size += item_size
    if chunk:
        yield chunk


def decode(workspace_id: int, payload: str | bytes) -> list[BusEvent]:
    """The events of one message; a malformed message is logged and yields nothing."""
    try:
        items = json.loads(payload)["e"]
        return [
            BusEvent(workspace_id, str(kind), str(event_id), bool(livemode))
            for kind, event_id, livemode in items
        ]
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning(
            "bus.message_malformed", workspace_id=workspace_id, error=str(exc)
        )
        return []


# --- the shared part ---------------------------------------------------------------------


class RemoteBus(ABC):
    """Local fan-out plus one listener task; subclasses provide the transport."""

    def __init__(self, *, prefix: str = "codeqr", queue_size: int = 1000) -> None:
        self.prefix = prefix
        self._queue_size = queue_size
        self._subscribers: dict[int, set[asyncio.Queue[BusEvent]]] = {}
        self._active: set[int] = set()  # workspaces whose channel the server confirmed
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._changed = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"codeqr-bus-{type(self).__name__}"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._subscribers.clear()
        self._active.clear()
        await self._close()

    async def publish(self, events: list[BusEvent]) -> None:
        messages = encode(events)
        if not messages:
            return
        try:
            await self._send(messages)
        except Exception:
            logger.exception("bus.publish_failed", messages=len(messages))

    async def subscribe(self, workspace_id: int) -> AsyncIterator[BusEvent]:
        if self._task is None:
            await self.start()
        queue: asyncio.Queue[BusEvent] = asyncio.Queue(self._queue_size)
        self._subscribers.setdefault(workspace_id, set()).add(queue)
        self._changed.set()
        try:
            while True:
                yield await queue.get()
        finally:
            # Synchronous on purpose: it runs even when the consumer is cancelled. The
            # listener drops the channel on its next turn.
            subscribers = self._subscribers.get(workspace_id, set())
            subscribers.discard(queue)
            if not subscribers:
                self._subscribers.pop(workspace_id, None)
            self._changed.set()

    def listening(self, workspace_id: int) -> bool:
        """True once the server confirmed the workspace's channel for this instance."""
        return workspace_id in self._active

    def subscriber_count(self, workspace_id: int) -> int:
        return len(self._subscribers.get(workspace_id, ()))

    def deliver(self, event: BusEvent) -> None:
        for queue in list(self._subscribers.get(event.workspace_id, ())):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    def wanted(self) -> set[int]:
        return set(self._subscribers)

    async def _run(self) -> None:
        delay = POLL_SECONDS
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "bus.listener_lost",
                    bus=type(self).__name__,
                    error=type(exc).__name__,
                    retry_in_seconds=delay,
                )
            finally:
                self._active.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _wait_for_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    def _diff(self, current: set[int]) -> tuple[set[int], set[int]]:
        """Channels to add and to drop; clears the change flag."""
        self._changed.clear()
        wanted = self.wanted()
        return wanted - current, current - wanted

    @abstractmethod
    async def _listen(self) -> None:
        """Open the listening connection and deliver notices until it fails."""

    @abstractmethod
    async def _send(self, messages: list[tuple[int, str]]) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...


# --- Redis --------------------------------------------------------------------------------


class RedisBus(RemoteBus):
    """Redis pub/sub: channel ``<prefix>:events:<workspace id>``."""

    def __init__(
        self, url: str, *, prefix: str = "codeqr", queue_size: int = 1000
    ) -> None:
        super().__init__(prefix=prefix, queue_size=queue_size)
        self._redis = redis_asyncio.Redis.from_url(url)

    def channel(self, workspace_id: int) -> str:
        return f"{self.prefix}:events:{workspace_id}"

    async def _send(self, messages: list[tuple[int, str]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for workspace_id, payload in messages:
                pipe.publish(self.channel(workspace_id), payload)
            await pipe.execute()

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub()
        subscribed: set[int] = set()
        self._changed.set()  # (re)subscribe to everything wanted
        try:
            while True:
                if self._changed.is_set():
                    await self._resubscribe(pubsub, subscribed)
                if not subscribed:
                    await self._wait_for_change(1.0)
                    continue
                message = await pubsub.get_message(timeout=POLL_SECONDS)
                if message is not None:
                    self._on_message(message)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[attr-defined]  # stubs predate aclose

    async def _resubscribe(
        self, pubsub: redis_asyncio.client.PubSub, subscribed: set[int]
    ) -> None:
        add, drop = self._diff(subscribed)
        if add:
            await pubsub.subscribe(*(self.channel(w) for w in add))
            subscribed |= add
        if drop:
            await pubsub.unsubscribe(*(self.channel(w) for w in drop))
            subscribed -= drop
            self._active -= drop

    def _on_message(self, message: dict[str, object]) -> None:
        channel = message.get("channel")
        if not isinstance(channel, bytes):
            return
        workspace_id = int(channel.rsplit(b":", 1)[1])
        if message.get("type") == "subscribe":
            self._active.add(workspace_id)
        elif message.get("type") == "message":
            data = message.get("data")
            if isinstance(data, (bytes, str)):
                for event in decode(workspace_id, data):
                    self.deliver(event)

    async def _close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()  # type: ignore[attr-defined]  # stubs predate aclose


# --- PostgreSQL ---------------------------------------------------------------------------


class PostgresBus(RemoteBus):
    """PostgreSQL LISTEN/NOTIFY: channel ``<prefix>_events_<workspace id>``."""

    def __init__(
        self, url: str, *, prefix: str = "codeqr", queue_size: int = 1000
    ) -> None:
        super().__init__(prefix=prefix, queue_size=queue_size)
        self._conninfo = libpq_url(url)
        self._publisher: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._publish_lock = asyncio.Lock()
        self._listener: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    def channel(self, workspace_id: int) -> str:
        return f"{self.prefix}_events_{workspace_id}"

    async def _send(self, messages: list[tuple[int, str]]) -> None:
        async with self._publish_lock:
            if self._publisher is None or self._publisher.closed:
                self._publisher = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                )
            try:
                async with self._publisher.cursor() as cursor:
                    for workspace_id, payload in messages:
                        await cursor.execute(
                            "SELECT pg_notify(%s, %s)",
                            (self.channel(workspace_id), payload),
                        )
            except psycopg.OperationalError:
                await self._publisher.close()
                self._publisher = None
                raise

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        self._listener = conn
        listening: set[int] = set()
        self._changed.set()
        try:
            while True:
                if self._changed.is_set():
                    await self._relisten(conn, listening)
                if not listening:
                    await self._wait_for_change(1.0)
                    continue
                async for notice in conn.notifies(timeout=POLL_SECONDS):
                    self._on_notice(notice)
                    if self._changed.is_set():
                        break
        finally:
            self._listener = None
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def _relisten(
        self, conn: psycopg.AsyncConnection[tuple[object, ...]], listening: set[int]
    ) -> None:
        add, drop = self._diff(listening)
        for workspace_id in add:
            channel = sql.Identifier(self.channel(workspace_id))
            await conn.execute(sql.SQL("LISTEN {}").format(channel))
            listening.add(workspace_id)
            self._active.add(workspace_id)
        for workspace_id in drop:
            channel = sql.Identifier(self.channel(workspace_id))
            await conn.execute(sql.SQL("UNLISTEN {}").format(channel))
            listening.discard(workspace_id)
            self._active.discard(workspace_id)

    def _on_notice(self, notice: psycopg.Notify) -> None:
        prefix = f"{self.prefix}_events_"
        if not notice.channel.startswith(prefix):
            return
        workspace_id = int(notice.channel.removeprefix(prefix))
        for event in decode(workspace_id, notice.payload):
            self.deliver(event)

    async def listening_channels(self) -> set[str]:
        """The channels the server has this instance's listener on (for tests and ops)."""
        conn = self._listener
        if conn is None:
            return set()
        cursor = await conn.execute("SELECT pg_listening_channels()")
        return {str(row[0]) for row in await cursor.fetchall()}

    async def _close(self) -> None:
        if self._publisher is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await self._publisher.close()
            self._publisher = None


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` (SQLAlchemy spelling) → ``postgresql://…`` for libpq."""
    parsed = make_url(url)
    if parsed.drivername != "postgresql":
        parsed = parsed.set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)
