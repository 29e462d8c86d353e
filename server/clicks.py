"""The batched click writer.

The redirect route hands each counted click to :meth:`ClickWriter.record` and answers the
302 once the click sits in a bounded in-memory buffer: that click is then *acknowledged*.
A background task drains the buffer in batches, each batch one thread-pool call and one
transaction (a multi-row INSERT of the clicks plus the hourly rollup bumps), and publishes
the CLICK notifications after the commit.

Guarantees:
- bounded memory: at most ``click_buffer_size`` clicks wait in the buffer plus one batch in
  flight; a full buffer makes :meth:`record` wait (the redirect slows down), it never drops;
- no acknowledged click is lost on a clean shutdown: :meth:`stop` writes everything first;
- a failing batch is retried with backoff (logged at ERROR) until it is written; only rows
  the database refuses for integrity reasons (e.g. their link was deleted) are dropped, one
  by one, each with an ERROR line;
- :meth:`flush` waits until every click acknowledged so far is committed (trackLead calls it
  before calling a click id unknown)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from functools import lru_cache
from typing import cast

from sqlalchemy import Connection, Dialect, Table, insert
from sqlalchemy.exc import DataError, IntegrityError
from starlette.concurrency import run_in_threadpool

from server import db
from server.bus import BusEvent, get_bus
from server.log_config import get_logger
from server.models import Click
from server.rollups import bump
from server.settings import get_settings

logger = get_logger(__name__)

_CLICK_TABLE: Table = Click.__table__  # type: ignore[attr-defined]
_RETRY_FIRST_DELAY = 0.05
_RETRY_MAX_DELAY = 5.0


@dataclass(frozen=True, slots=True)
class PendingClick:
    """One counted click, as the redirect saw it."""

    id: str
    workspace_id: int
    link_id: int
    timestamp: datetime  # aware, UTC (server.models.utcnow())
    referrer_host: str | None = None
    device: str | None = None
    browser: str | None = None
    country: str | None = None

    def row(self) -> dict[str, object]:
        return {
            "id": self.id,
            "workspace_id": self.workspace_id,
            "link_id": self.link_id,
            "timestamp": self.timestamp,
            "referrer_host": self.referrer_host,
            "device": self.device,
            "browser": self.browser,
            "country": self.country,
        }


class ClickWriter:
    """Buffer + background batch writer. One per process; bound to the event loop that
    starts it (the app's lifespan)."""

    def __init__(
        self,
        *,
        buffer_size: int,
        batch_size: int,
        flush_interval: float,
        stop_timeout: float = 30.0,
    ) -> None:
        if buffer_size < 1 or batch_size < 1:
            raise ValueError(
                f"click buffer and batch sizes must be >= 1, got {buffer_size} and {batch_size}"
            )
        self._buffer_size = buffer_size
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._stop_timeout = stop_timeout
        self._queue: asyncio.Queue[PendingClick] | None = None
        self._task: asyncio.Task[None] | None = None
        self._batch_wanted = asyncio.Event()
        self._lingering = False
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        # Counters for logs, tests and the benchmark.
        self.accepted = 0
        self.written = 0
        self.dropped = 0
        self.full_waits = 0
        self.failed_batches = 0

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._queue = asyncio.Queue(self._buffer_size)
        self._batch_wanted = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="codeqr-click-writer"
        )
        logger.info(
            "clicks.writer.started",
            buffer_size=self._buffer_size,
            batch_size=self._batch_size,
        )

    async def stop(self) -> None:
        """Write every acknowledged click, then end the background task."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.flush(), self._stop_timeout)
        except TimeoutError:
            logger.error(
                "clicks.writer.stop_timeout",
                unwritten=self.accepted - self.written - self.dropped,
                timeout_seconds=self._stop_timeout,
            )
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        logger.info(
            "clicks.writer.stopped",
            accepted=self.accepted,
            written=self.written,
            dropped=self.dropped,
        )

    # --- producer side -----------------------------------------------------------------

    async def record(self, click: PendingClick) -> None:
        """Buffer one click; returns once it is acknowledged (waits while the buffer is full)."""
        if self._task is None:
            await self.start()
        queue = self._queue
        assert queue is not None
        if queue.full():
            self.full_waits += 1
            await queue.put(click)
        else:
            queue.put_nowait(click)
        self.accepted += 1
        if self._lingering and queue.qsize() >= self._batch_size:
            self._batch_wanted.set()

    async def flush(self) -> None:
        """Wait until every click acknowledged so far is committed to the database."""
        target = self.accepted
        if self.written + self.dropped >= target:
            return
        if self._task is None:
            await self.start()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((target, future))
        self._batch_wanted.set()
        await asyncio.shield(future)

    @property
    def pending(self) -> int:
        """Acknowledged clicks not yet committed."""
        return self.accepted - self.written - self.dropped

    # --- consumer side -----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            stored = await self._write_with_retry(batch)
            self.written += len(stored)
            self.dropped += len(batch) - len(stored)
            self._wake_flushers()
            await self._publish(stored)

    async def _next_batch(self) -> list[PendingClick]:
        queue = self._queue
        assert queue is not None
        batch = [await queue.get()]
        self._drain_into(batch)
        if len(batch) < self._batch_size and not self._flush_waiters:
            await self._linger()
            self._drain_into(batch)
        return batch

    async def _linger(self) -> None:
        """Give a small batch a moment to grow; cut short by a full batch or a flush."""
        self._batch_wanted.clear()
        self._lingering = True
        try:
            async with asyncio.timeout(self._flush_interval):
                await self._batch_wanted.wait()
        except TimeoutError:
            pass
        finally:
            self._lingering = False

    def _drain_into(self, batch: list[PendingClick]) -> None:
        queue = self._queue
        assert queue is not None
        while len(batch) < self._batch_size and not queue.empty():
            batch.append(queue.get_nowait())

    async def _write_with_retry(self, batch: list[PendingClick]) -> list[PendingClick]:
        delay = _RETRY_FIRST_DELAY
        while True:
            try:
                return await run_in_threadpool(store_clicks, batch)
            except Exception:
                self.failed_batches += 1
                logger.exception(
                    "clicks.batch_failed", count=len(batch), retry_in_seconds=delay
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_DELAY)

    def _wake_flushers(self) -> None:
        done = self.written + self.dropped
        waiting: list[tuple[int, asyncio.Future[None]]] = []
        for target, future in self._flush_waiters:
            if target <= done:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((target, future))
        self._flush_waiters = waiting

    async def _publish(self, stored: list[PendingClick]) -> None:
        if not stored:
            return
        events = [BusEvent(c.workspace_id, "CLICK", c.id) for c in stored]
        try:
            await get_bus().publish(events)
        except Exception:
            # The clicks are committed; only the live notification is lost.
            logger.exception("clicks.publish_failed", count=len(events))


# --- storage (runs in a worker thread) ---------------------------------------------------


def store_clicks(batch: list[PendingClick]) -> list[PendingClick]:
    """Insert a batch in one transaction; on an integrity error, isolate the bad rows."""
    try:
        _insert(batch)
        return batch
    except Exception as exc:
        if not _is_refusal(exc):
            raise
        logger.warning("clicks.batch_refused_isolating_rows", count=len(batch))
    stored: list[PendingClick] = []
    for click in batch:
        try:
            _insert([click])
            stored.append(click)
        except Exception as exc:
            if not _is_refusal(exc):
                raise
            logger.error(
                "clicks.row_dropped",
                click_id=click.id,
                link_id=click.link_id,
                error=type(exc).__name__,
            )
    return stored


def _is_refusal(exc: Exception) -> bool:
    """The database refused the data itself (a constraint, a bad value): retrying the same
    rows cannot succeed. The driver's own exceptions count too (COPY and executemany run
    below SQLAlchemy, which then does not wrap them)."""
    if isinstance(exc, (IntegrityError, DataError)):
        return True
    return any(cls.__name__ in _REFUSALS for cls in type(exc).__mro__)


_REFUSALS = frozenset({"IntegrityError", "DataError"})


def _hourly_counts(batch: list[PendingClick]) -> dict[tuple[int, datetime], int]:
    """Clicks per (workspace, UTC hour). Keyed on plain attributes first: building an
    hour datetime for every click cost more than inserting it."""
    counts = Counter(
        (c.workspace_id, c.timestamp.date(), c.timestamp.hour) for c in batch
    )
    return {
        (workspace_id, datetime.combine(day, time(hour), tzinfo=UTC)): count
        for (workspace_id, day, hour), count in counts.items()
    }


def _insert(batch: list[PendingClick]) -> None:
    hourly = _hourly_counts(batch)
    with db.session_scope() as session:
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            _copy_rows(connection, batch)
        elif connection.dialect.name == "sqlite":
            _executemany_rows(connection, batch)
        else:
            session.execute(insert(_CLICK_TABLE), [c.row() for c in batch])
        for (workspace_id, hour), count in sorted(hourly.items()):
            bump(
                session,
                workspace_id=workspace_id,
                moment=hour,
                livemode=True,
                clicks=count,
            )


# The click batch goes to the driver directly: SQLAlchemy's per-row parameter handling
# cost as much as SQLite's own insert. Same columns, same values, same transaction.
_COLUMNS = (
    "id",
    "workspace_id",
    "link_id",
    "timestamp",
    "referrer_host",
    "device",
    "browser",
    "country",
)
_COPY_SQL = "COPY click (" + ", ".join(_COLUMNS) + ") FROM STDIN"
_SQLITE_SQL = (
    "INSERT INTO click (id, workspace_id, link_id, timestamp, referrer_host, device,"
    " browser, country) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _copy_rows(connection: Connection, batch: list[PendingClick]) -> None:
    """PostgreSQL: COPY, the cheapest multi-row insert psycopg offers."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(_COPY_SQL) as copy:
        for c in batch:
            copy.write_row(
                (
                    c.id,
                    c.workspace_id,
                    c.link_id,
                    c.timestamp,
                    c.referrer_host,
                    c.device,
                    c.browser,
                    c.country,
                )
            )


def _executemany_rows(connection: Connection, batch: list[PendingClick]) -> None:
    """SQLite: one prepared INSERT run for every row, timestamps stored the way
    SQLAlchemy's column type stores them (so ORM reads see the same values)."""
    to_db = _timestamp_processor(connection.dialect)
    rows = [
        (
            c.id,
            c.workspace_id,
            c.link_id,
            to_db(c.timestamp),
            c.referrer_host,
            c.device,
            c.browser,
            c.country,
        )
        for c in batch
    ]
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(_SQLITE_SQL, rows)
    finally:
        cursor.close()


@lru_cache(maxsize=4)
def _timestamp_processor(dialect: Dialect) -> Callable[[datetime], object]:
    """SQLAlchemy's own converter for the timestamp column, or an equivalent C-speed one
    when it gives the same text (SQLAlchemy's cost more than SQLite's insert itself)."""
    column_type = _CLICK_TABLE.c.timestamp.type.dialect_impl(dialect)
    processor = column_type.bind_processor(dialect)
    if processor is None:
        return lambda value: value
    sample = datetime(2024, 2, 29, 23, 5, 7, 1234, tzinfo=UTC)
    for value in (sample, sample.replace(microsecond=0)):
        if processor(value) != _iso_utc(value):
            return cast(Callable[[datetime], object], processor)
    return _iso_utc


def _iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]


# --- the process singleton -----------------------------------------------------------------

_writer: ClickWriter | None = None


def get_click_writer() -> ClickWriter:
    global _writer
    if _writer is None:
        settings = get_settings()
        _writer = ClickWriter(
            buffer_size=settings.click_buffer_size,
            batch_size=settings.click_flush_batch_size,
            flush_interval=settings.click_flush_interval_seconds,
        )
    return _writer


def reset_click_writer() -> None:
    """Forget the singleton (tests: each server builds its own on its own loop)."""
    global _writer
    _writer = None
