"""The inbox worker: takes due events from the inbox and runs their handlers.

One event is one transaction. Its first write marks the event's row done if it is still
pending (which locks the row), then the handler runs, and the commit keeps both: a crash
can neither mark an event done without its effects nor apply them twice. When the
handler raises, everything it wrote is rolled back and the row is updated in a fresh
transaction: :class:`~stripe_app.registry.SkipEvent` -> skipped;
:class:`~stripe_app.registry.RetryLater` or an unexpected error -> due again after an
exponential backoff, dead after ``worker_max_attempts``. Dead and skipped events stay in
the inbox for ``codeqr events list|replay``.

A batch of claimed events is handled in one thread-pool call (:func:`process_batch`);
the async :class:`Worker` runs batches while there are due events, then sleeps until
:meth:`Worker.wake` (the webhook receiver calls it) or ``worker_poll_seconds``.

On PostgreSQL the worker has its own connections, which commit without waiting for the
WAL flush (``synchronous_commit=off``): a commit costs a round trip instead of a disk
sync. Nothing acknowledged can be lost that way: an event's effects and its done mark
are one transaction, so a commit lost in a crash leaves the event pending and it is
handled again; what Stripe's 2xx promised, the receiver's insert, stays synchronous."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import Connection, Engine, create_engine
from sqlmodel import Session, select

from server import bus
from server.db import get_engine, is_sqlite
from server.log_config import get_logger
from server.models import InboxStatus, Workspace, plan_allows_conversions, utcnow
from server.settings import Settings, get_settings
from stripe_app import inbox, registry
from stripe_app.inbox import ClaimedEvent

logger = get_logger(__name__)

LEASE_SECONDS = 60.0  # a claimed event not finished by then can be claimed again
MAX_BACKOFF_SECONDS = 3600.0


@dataclass
class BatchReport:
    """What one :func:`process_batch` call did."""

    claimed: int = 0
    done: int = 0
    skipped: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0  # given back unhandled because the worker is stopping
    lost: int = 0  # finished by another worker after our lease ran out
    bus_events: list[bus.BusEvent] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.done + self.skipped + self.retried + self.dead


# --- one batch (synchronous: runs in a worker thread, a test or the CLI) -------------


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def worker_engine() -> Engine:
    """The engine the worker writes with (see the module's note on PostgreSQL)."""
    url = get_settings().database_url
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _make_worker_engine(get_engine())
    return engine


def _make_worker_engine(shared: Engine) -> Engine:
    if is_sqlite(shared):
        return shared  # one writer at a time anyway: share the application's engine
    return create_engine(
        shared.url,
        pool_size=4,
        max_overflow=8,
        pool_pre_ping=True,
        connect_args={"options": "-c synchronous_commit=off"},
    )


def dispose_worker_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def process_batch(
    limit: int | None = None,
    *,
    engine: Engine | None = None,
    stop: threading.Event | None = None,
) -> BatchReport:
    """Claim up to ``limit`` due events and handle them one transaction each.

    The batch uses one connection (one pool checkout); with ``stop`` set between two
    events, the rest of the batch is given back. The bus notifications of committed
    events are returned in the report for the caller to publish (the async worker does;
    callers without an event loop may drop them)."""
    settings = get_settings()
    engine = engine or worker_engine()
    with engine.connect() as conn:
        claimed = inbox.claim_due(
            conn, limit or settings.worker_batch_size, LEASE_SECONDS
        )
        report = BatchReport(claimed=len(claimed))
        if not claimed:
            return report

        workspaces = _WorkspaceCache(conn, {e.account for e in claimed if e.account})
        for index, event in enumerate(claimed):
            if stop is not None and stop.is_set():
                rest = [e.id for e in claimed[index:]]
                inbox.release(conn, rest)
                report.released = len(rest)
                break
            _process_one(conn, settings, event, workspaces, report)
    return report


def process_due_events(limit: int | None = None) -> int:
    """Handle one batch of due events now; returns how many were handled (done,
    skipped, retried or dead). Bus notifications are not published: live subscribers
    hear of events handled by the running :class:`Worker` only."""
    return process_batch(limit).handled


def drain(max_batches: int = 100) -> int:
    """Handle batch after batch until no event is due (at most ``max_batches``);
    returns how many were handled. For tests, the CLI and benchmarks."""
    total = 0
    for _ in range(max_batches):
        report = process_batch()
        total += report.handled
        if not report.claimed:
            break
    return total


class _WorkspaceCache:
    """The workspaces of one batch, read once, keyed by linked Stripe account."""

    def __init__(self, conn: Connection, accounts: set[str]) -> None:
        self._conn = conn
        self._by_account: dict[str, Workspace | None] = dict.fromkeys(accounts)
        self._load(accounts)

    def _load(self, accounts: set[str]) -> None:
        linked = Workspace.stripe_account_id.in_(accounts)  # type: ignore[union-attr]
        with Session(bind=self._conn, expire_on_commit=False) as session:
            rows = session.exec(select(Workspace).where(linked)).all()
        for workspace in rows:
            assert workspace.stripe_account_id is not None
            self._by_account[workspace.stripe_account_id] = workspace

    def get(self, account: str) -> Workspace | None:
        if account not in self._by_account:
            self._by_account[account] = None
            self._load({account})
        return self._by_account[account]

    def forget(self, account: str) -> None:
        self._by_account.pop(account, None)


# --- one event -----------------------------------------------------------------------


def _process_one(
    conn: Connection,
    settings: Settings,
    event: ClaimedEvent,
    workspaces: _WorkspaceCache,
    report: BatchReport,
) -> None:
    handler = registry.load_handlers().get(event.type)
    workspace = workspaces.get(event.account) if event.account else None
    skip_reason = _skip_reason(event, handler is not None, workspace)
    if skip_reason is not None or handler is None or workspace is None:
        _finish_alone(conn, event, InboxStatus.SKIPPED, skip_reason or "", workspace)
        report.skipped += 1
        return

    attempts = event.attempts
    try:
        with Session(bind=conn, expire_on_commit=False) as session, session.begin():
            locked = inbox.mark_done(session.connection(), event.id, workspace.id)
            if locked is None:
                report.lost += 1
                return
            attempts = locked
            handler(session, _context(event, session.merge(workspace, load=False)))
            published = bus.take_pending(session)
    except registry.SkipEvent as exc:
        _finish_alone(conn, event, InboxStatus.SKIPPED, exc.reason, workspace)
        report.skipped += 1
    except registry.RetryLater as exc:
        _retry(conn, settings, event, attempts, exc.reason, workspace, report)
    except Exception as exc:
        logger.exception(
            "worker.event.failed",
            event_id=event.id,
            type=event.type,
            attempts=attempts + 1,
        )
        _retry(conn, settings, event, attempts, _describe(exc), workspace, report)
    else:
        report.done += 1
        report.bus_events.extend(published)
        logger.info(
            "worker.event.done",
            event_id=event.id,
            type=event.type,
            account=event.account,
        )
    finally:
        if event.type in registry.PLAN_EXEMPT and event.account:
            workspaces.forget(event.account)  # the installation may have changed


def _skip_reason(
    event: ClaimedEvent, has_handler: bool, workspace: Workspace | None
) -> str | None:
    if not has_handler:
        return f"unhandled event type {event.type}"
    if not event.account:
        return "event has no account: it is not about a connected Stripe account"
    if workspace is None:
        return f"unknown account {event.account}"
    if event.type not in registry.PLAN_EXEMPT and not plan_allows_conversions(
        workspace.plan
    ):
        return (
            f"plan {workspace.plan} does not include conversion tracking"
            " (Business or higher)"
        )
    return None


def _context(event: ClaimedEvent, workspace: Workspace) -> registry.EventContext:
    body: dict[str, Any] = json.loads(event.payload)
    if "\\u" in event.payload:
        # Only an escape can smuggle in text no database stores (NUL, lone surrogates).
        body = _storable(body)
    data: dict[str, Any] = body["data"]
    return registry.EventContext(
        event_id=event.id,
        type=event.type,
        account=event.account,
        livemode=event.livemode,
        created=datetime.fromtimestamp(event.created, UTC),
        api_version=body.get("api_version"),
        object=data["object"],
        previous_attributes=data.get("previous_attributes"),
        workspace=workspace,
    )


def _storable(value: Any) -> Any:
    """``value`` with every string made storable: NUL removed (PostgreSQL refuses it in
    text) and unpaired surrogates replaced (no UTF-8 encoder accepts them)."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def _describe(exc: Exception) -> str:
    """The exception's class and first line: database errors put the statement and
    its parameters on the following lines, which do not belong in the inbox."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _finish_alone(
    conn: Connection,
    event: ClaimedEvent,
    status: InboxStatus,
    reason: str,
    workspace: Workspace | None,
) -> None:
    workspace_id = workspace.id if workspace else None
    with conn.begin():
        changed = inbox.finish(conn, event.id, status, reason, workspace_id)
    if changed:
        logger.info(
            "worker.event.finished",
            event_id=event.id,
            type=event.type,
            account=event.account,
            status=str(status),
            reason=reason,
        )


def backoff_seconds(attempts: int, base: float) -> float:
    """The wait after the ``attempts``-th failure: doubling from ``base``, capped,
    with +-20% jitter so events that failed together do not come back together."""
    delay = min(base * 2.0 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)
    return delay * random.uniform(0.8, 1.2)


def _retry(
    conn: Connection,
    settings: Settings,
    event: ClaimedEvent,
    attempts_before: int,
    reason: str,
    workspace: Workspace | None,
    report: BatchReport,
) -> None:
    attempts = attempts_before + 1
    workspace_id = workspace.id if workspace else None
    if attempts >= settings.worker_max_attempts:
        with conn.begin():
            inbox.schedule_retry(
                conn, event.id, attempts, utcnow(), reason, workspace_id
            )
            inbox.finish(conn, event.id, InboxStatus.DEAD, reason, workspace_id)
        report.dead += 1
        logger.warning(
            "worker.event.dead",
            event_id=event.id,
            type=event.type,
            attempts=attempts,
            reason=reason,
        )
        return

    delay = backoff_seconds(attempts, settings.worker_backoff_base_seconds)
    with conn.begin():
        inbox.schedule_retry(
            conn,
            event.id,
            attempts,
            utcnow() + timedelta(seconds=delay),
            reason,
            workspace_id,
        )
    report.retried += 1
    logger.info(
        "worker.event.retry",
        event_id=event.id,
        type=event.type,
        attempts=attempts,
        delay_seconds=round(delay, 3),
        reason=reason,
    )


# --- the in-process worker -----------------------------------------------------------


class Worker:
    """Runs :func:`process_batch` in the thread pool while events are due, then waits
    for :meth:`wake` or the poll interval. ``concurrency`` loops may run side by side:
    their claims never overlap and never hold events of one customer at the same time
    (:func:`stripe_app.inbox.claim_due`); on SQLite one is enough, writes are
    serialised."""

    def __init__(self, concurrency: int = 1) -> None:
        self.concurrency = concurrency
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self) -> None:
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self._run(), name=f"stripe-inbox-worker-{n}")
            for n in range(self.concurrency)
        ]
        logger.info("worker.started", concurrency=self.concurrency)

    async def stop(self) -> None:
        """Let the event in hand finish, give back the rest of the batch, and return."""
        if not self._tasks:
            return
        self._stop.set()
        self.wake()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        logger.info("worker.stopped")

    def wake(self) -> None:
        """Look at the inbox now (callable from any thread; a no-op when not started)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)

    async def _run(self) -> None:
        settings = get_settings()
        assert self._wake is not None
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            report = await self._one_batch()
            if report is not None and report.claimed and self.concurrency > 1:
                # Its customers are free again: a sibling loop that found their
                # later events held back may take them now instead of at its poll.
                self.wake()
            if report is not None and report.claimed >= settings.worker_batch_size:
                continue  # more may be due right now
            # After a failed batch (database down?) wait longer each time, up to a minute.
            failures = 0 if report is not None else failures + 1
            pause = min(settings.worker_poll_seconds * 2**failures, 60.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def _one_batch(self) -> BatchReport | None:
        try:
            report = await anyio.to_thread.run_sync(
                functools.partial(process_batch, stop=self._stop)
            )
        except Exception:
            logger.exception("worker.batch.failed")
            return None
        if report.bus_events:
            try:
                await bus.get_bus().publish(report.bus_events)
            except Exception:
                logger.exception("worker.publish.failed", count=len(report.bus_events))
        return report


_worker: Worker | None = None


def get_worker() -> Worker:
    global _worker
    if _worker is None:
        _worker = Worker(concurrency=worker_concurrency())
    return _worker


def worker_concurrency() -> int:
    """How many batches run side by side: ``worker_concurrency`` on PostgreSQL (a
    thread waiting for the database leaves the interpreter to the others; the claim
    keeps each customer's events with one of them), one on SQLite, where writes are
    serialised anyway."""
    if is_sqlite(get_engine()):
        return 1
    return max(1, get_settings().worker_concurrency)


def one_loop_per_process(processes: int, environ: MutableMapping[str, str]) -> None:
    """With several server processes (``codeqr serve --workers N``) each runs one worker
    loop unless ``CODEQR_WORKER_CONCURRENCY`` says otherwise: the processes already use
    every core, and a second thread in a process mostly waits for the interpreter lock
    while its sibling holds it (measured: 2 processes x 1 loop handle about 700 purchase
    events/s on this 2-core machine, 2 x 2 between 430 and 590)."""
    if processes > 1:
        environ.setdefault("CODEQR_WORKER_CONCURRENCY", "1")


def reset_worker() -> None:
    """Forget the process's worker (tests: the next app gets a fresh one)."""
    global _worker
    _worker = None
    dispose_worker_engines()
