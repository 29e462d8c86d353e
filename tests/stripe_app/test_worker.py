"""The inbox worker: dispatch, skips, retries with backoff, dead letters, concurrency.

Handlers here are test doubles registered for the test (the real handlers are tested
with the attribution scenarios); each one records its calls and may write a row or raise
what a real handler raises."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from server import bus, db
from server.bus import BusEvent, MemoryBus
from server.cli import main as cli_main
from server.models import InboxStatus, Partner, StripeEvent, utcnow
from server.settings import get_settings, reset_settings
from stripe_app import inbox
from stripe_app.registry import EventContext, RetryLater, SkipEvent
from stripe_app.worker import (
    Worker,
    backoff_seconds,
    drain,
    process_batch,
    process_due_events,
)
from tests.conftest import LiveServer, start_server
from tests.stripe_app.conftest import (
    ACCOUNT,
    RecordingHandler,
    deliver,
    event_bytes,
    fixture_bytes,
    inbox_row,
    make_workspace,
    wait_for,
    wait_for_status,
)

CUSTOMER_CREATED = "event_customer_created.json"
CUSTOMER_EVENT_ID = "evt_1TestCustomerCreated00001"
Register = Callable[..., RecordingHandler]


def _write_partner(session: Session, ctx: EventContext) -> None:
    """What a handler's write looks like: one row, unique per event."""
    session.add(Partner(workspace_id=ctx.workspace.id, email=f"{ctx.event_id}@test"))
    session.flush()


def _partners() -> list[str]:
    with db.session_scope() as session:
        return [p.email for p in session.exec(select(Partner)).all()]


def _store(event_id: str, name: str = CUSTOMER_CREATED, **changes: Any) -> None:
    body = event_bytes(name, id=event_id, **changes).decode()
    event = json.loads(body)
    inbox.store(
        db.get_engine(),
        inbox.IncomingEvent(
            event_id, event["type"], event.get("account"), False, event["created"], body
        ),
    )


def _customer_event_bytes(event_id: str, customer_id: str) -> bytes:
    """customer.created of the fixture for another customer (another ordering key)."""
    event = json.loads(fixture_bytes(CUSTOMER_CREATED))
    event["id"] = event_id
    event["data"]["object"]["id"] = customer_id
    return json.dumps(event, indent=2).encode()


def _make_due_now(event_id: str) -> None:
    """Fast-forward a retry: the backoff is tested, not waited for."""
    with db.get_engine().begin() as conn:
        conn.execute(
            update(inbox.TABLE)
            .where(inbox.TABLE.c.id == event_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


# --- through the live server: delivered, then handled by the in-process worker ---------


def test_worker_hands_a_delivered_event_to_its_handler_once(
    live_server: LiveServer, register_handler: Register
) -> None:
    workspace = make_workspace()
    handler = register_handler("customer.created", _write_partner)
    body = fixture_bytes(CUSTOMER_CREATED)

    with live_server.client() as client:
        assert deliver(client, body).status_code == 200
        assert deliver(client, body).json()["duplicate"] is True

    row = wait_for_status(CUSTOMER_EVENT_ID, InboxStatus.DONE)
    assert row.processed_at is not None
    assert row.workspace_id == workspace.id
    assert row.reason is None
    assert row.locked_until is None
    [call] = handler.calls
    ctx = call.context
    assert (ctx.event_id, ctx.type, ctx.account) == (
        CUSTOMER_EVENT_ID,
        "customer.created",
        ACCOUNT,
    )
    assert ctx.workspace.slug == "acme"
    assert ctx.livemode is False
    assert ctx.created == datetime(2026, 7, 30, 12, 0, tzinfo=UTC)
    assert ctx.api_version == "2026-07-29.dahlia"
    assert ctx.object == json.loads(body)["data"]["object"]
    assert ctx.previous_attributes is None
    assert _partners() == [f"{CUSTOMER_EVENT_ID}@test"]


def test_worker_skips_an_event_of_an_unknown_account(
    live_server: LiveServer, register_handler: Register
) -> None:
    make_workspace()
    handler = register_handler("customer.created")
    body = event_bytes(CUSTOMER_CREATED, account="acct_1NotLinkedAnywhere")

    with live_server.client() as client:
        assert deliver(client, body).status_code == 200

    row = wait_for_status(CUSTOMER_EVENT_ID, InboxStatus.SKIPPED)
    assert row.reason == "unknown account acct_1NotLinkedAnywhere"
    assert handler.calls == []


def test_worker_skips_an_event_without_account(
    live_server: LiveServer, register_handler: Register
) -> None:
    make_workspace()
    handler = register_handler("customer.created")
    body = event_bytes(CUSTOMER_CREATED, account=None)

    with live_server.client() as client:
        assert deliver(client, body).status_code == 200

    row = wait_for_status(CUSTOMER_EVENT_ID, InboxStatus.SKIPPED)
    assert row.reason is not None and row.reason.startswith("event has no account")
    assert handler.calls == []


@pytest.mark.parametrize("plan", ["free", "pro"])
def test_worker_skips_events_of_a_plan_below_business(
    live_server: LiveServer, register_handler: Register, plan: str
) -> None:
    make_workspace(plan=plan)
    handler = register_handler("customer.created")

    with live_server.client() as client:
        assert deliver(client, fixture_bytes(CUSTOMER_CREATED)).status_code == 200

    row = wait_for_status(CUSTOMER_EVENT_ID, InboxStatus.SKIPPED)
    assert row.reason == (
        f"plan {plan} does not include conversion tracking (Business or higher)"
    )
    assert handler.calls == []


def test_worker_handles_installation_events_whatever_the_plan(
    live_server: LiveServer, register_handler: Register
) -> None:
    make_workspace(plan="free")
    handler = register_handler("account.application.deauthorized")
    body = fixture_bytes("event_account_application_deauthorized.json")

    with live_server.client() as client:
        assert deliver(client, body).status_code == 200

    wait_for_status("evt_1TestAppDeauthorized00001", InboxStatus.DONE)
    assert [call.type for call in handler.calls] == ["account.application.deauthorized"]


def test_worker_retries_then_dead_letters_then_replays(
    settings_env: dict[str, str],
    register_handler: Register,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CODEQR_WORKER_MAX_ATTEMPTS", "4")
    server = start_server()
    try:
        _retries_then_dead_letters_then_replays(server, register_handler, capsys)
    finally:
        server.stop()


def _retries_then_dead_letters_then_replays(
    server: LiveServer, register_handler: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    make_workspace()
    missing = {"customer": True}

    def needs_a_row(session: Session, ctx: EventContext) -> None:
        if missing["customer"]:
            raise RetryLater("customer cus_QXg1o8vcGmoR32 is not there yet")
        _write_partner(session, ctx)

    handler = register_handler("customer.created", needs_a_row)
    max_attempts = get_settings().worker_max_attempts  # backoff base: 0.05 s in tests

    with server.client() as client:
        assert deliver(client, fixture_bytes(CUSTOMER_CREATED)).status_code == 200

    row = wait_for_status(CUSTOMER_EVENT_ID, InboxStatus.DEAD, timeout=60)
    assert row.attempts == max_attempts
    assert row.reason == "customer cus_QXg1o8vcGmoR32 is not there yet"
    assert len(handler.calls) == max_attempts
    assert _partners() == []

    missing["customer"] = False
    assert cli_main(["events", "replay", CUSTOMER_EVENT_ID]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["id"] == CUSTOMER_EVENT_ID
    assert (replayed["previousStatus"], replayed["status"]) == ("dead", "pending")

    row = wait_for_status(CUSTOMER_EVENT_ID, InboxStatus.DONE)
    assert row.attempts == 0
    assert row.reason is None
    assert len(handler.calls) == max_attempts + 1
    assert _partners() == [f"{CUSTOMER_EVENT_ID}@test"]


# --- one batch at a time, without the live worker -------------------------------------


def test_worker_retry_waits_for_the_backoff_and_keeps_the_reason(
    settings_env: dict[str, str],
    register_handler: Register,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODEQR_WORKER_BACKOFF_BASE_SECONDS", "30")
    monkeypatch.setenv("CODEQR_WORKER_MAX_ATTEMPTS", "3")
    reset_settings()
    make_workspace()

    def not_yet(_session: Session, _ctx: EventContext) -> None:
        raise RetryLater("checkout session cs_1 has no customer row yet")

    handler = register_handler("customer.created", not_yet)
    _store(CUSTOMER_EVENT_ID)
    before = utcnow()

    assert process_due_events() == 1
    row = inbox_row(CUSTOMER_EVENT_ID)
    assert row is not None
    assert (row.status, row.attempts) == (InboxStatus.PENDING, 1)
    assert row.reason == "checkout session cs_1 has no customer row yet"
    assert row.next_attempt_at >= before + timedelta(seconds=30 * 0.8)
    assert row.locked_until is None
    assert process_due_events() == 0  # not due before its backoff
    assert len(handler.calls) == 1

    _make_due_now(CUSTOMER_EVENT_ID)
    assert process_due_events() == 1
    row = inbox_row(CUSTOMER_EVENT_ID)
    assert row is not None
    assert row.attempts == 2
    assert row.next_attempt_at >= utcnow() + timedelta(seconds=60 * 0.8 - 5)

    _make_due_now(CUSTOMER_EVENT_ID)
    assert process_due_events() == 1
    row = inbox_row(CUSTOMER_EVENT_ID)
    assert row is not None
    assert (row.status, row.attempts) == (InboxStatus.DEAD, 3)
    assert row.processed_at is not None
    assert len(handler.calls) == 3


def test_worker_backoff_doubles_with_jitter_and_is_capped() -> None:
    for attempts, expected in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0)]:
        delay = backoff_seconds(attempts, 1.0)
        assert expected * 0.8 <= delay <= expected * 1.2

    assert backoff_seconds(40, 1.0) <= 3600 * 1.2


def test_worker_treats_an_unexpected_error_as_a_retry_and_rolls_back_its_writes(
    settings_env: dict[str, str],
    register_handler: Register,
    monkeypatch: pytest.MonkeyPatch,
    log_output: Callable[[], str],
) -> None:
    monkeypatch.setenv("CODEQR_WORKER_MAX_ATTEMPTS", "2")
    reset_settings()
    make_workspace()

    def breaks(session: Session, ctx: EventContext) -> None:
        _write_partner(session, ctx)
        raise KeyError("customer")

    register_handler("customer.created", breaks)
    _store(CUSTOMER_EVENT_ID)

    assert process_due_events() == 1
    row = inbox_row(CUSTOMER_EVENT_ID)
    assert row is not None
    assert (row.status, row.attempts) == (InboxStatus.PENDING, 1)
    assert row.reason == "KeyError: 'customer'"
    assert _partners() == []
    logged = log_output()
    assert "worker.event.failed" in logged
    assert "KeyError" in logged  # the traceback
    assert "jenny.rosen@example.com" not in logged  # nothing of the payload

    _make_due_now(CUSTOMER_EVENT_ID)
    assert process_due_events() == 1
    row = inbox_row(CUSTOMER_EVENT_ID)
    assert row is not None
    assert (row.status, row.attempts) == (InboxStatus.DEAD, 2)
    assert _partners() == []


def test_worker_skip_from_a_handler_keeps_the_reason_and_rolls_back_its_writes(
    settings_env: dict[str, str], register_handler: Register
) -> None:
    make_workspace()

    def nothing_to_do(session: Session, ctx: EventContext) -> None:
        _write_partner(session, ctx)
        raise SkipEvent("customer has no codeqr metadata")

    register_handler("customer.created", nothing_to_do)
    _store(CUSTOMER_EVENT_ID)

    assert process_due_events() == 1
    row = inbox_row(CUSTOMER_EVENT_ID)
    assert row is not None
    assert row.status == InboxStatus.SKIPPED
    assert row.reason == "customer has no codeqr metadata"
    assert _partners() == []


def test_worker_skips_a_stored_event_whose_type_lost_its_handler(
    settings_env: dict[str, str],
) -> None:
    make_workspace()
    _store(CUSTOMER_EVENT_ID, type="customer.tax_id.created")

    assert process_due_events() == 1
    row = inbox_row(CUSTOMER_EVENT_ID)
    assert row is not None
    assert row.status == InboxStatus.SKIPPED
    assert row.reason == "unhandled event type customer.tax_id.created"


def test_worker_reclaims_an_event_whose_lease_ran_out_but_not_before(
    settings_env: dict[str, str], register_handler: Register
) -> None:
    make_workspace()
    handler = register_handler("customer.created")
    _store("evt_leased_by_a_live_worker")
    _store("evt_leased_by_a_dead_worker")
    engine = db.get_engine()

    [live] = inbox.claim_due(engine, 1, lease_seconds=60)
    [dead] = inbox.claim_due(engine, 1, lease_seconds=-1)  # its lease is already over

    assert {live.id, dead.id} == {
        "evt_leased_by_a_live_worker",
        "evt_leased_by_a_dead_worker",
    }
    assert process_due_events() == 1
    assert [call.event_id for call in handler.calls] == [dead.id]
    row = inbox_row(live.id)
    assert row is not None
    assert row.status == InboxStatus.PENDING


def test_worker_handles_a_batch_in_event_creation_order(
    settings_env: dict[str, str], register_handler: Register
) -> None:
    make_workspace()
    handler = register_handler("customer.created")
    for n, created in enumerate([1785412900, 1785412700, 1785412800]):
        _store(f"evt_order_{n}", created=created)

    assert process_due_events() == 3
    assert [call.event_id for call in handler.calls] == [
        "evt_order_1",
        "evt_order_2",
        "evt_order_0",
    ]


def test_worker_drain_handles_batch_after_batch_until_none_is_due(
    settings_env: dict[str, str],
    register_handler: Register,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODEQR_WORKER_BATCH_SIZE", "4")
    reset_settings()
    make_workspace()
    handler = register_handler("customer.created")
    for n in range(10):
        _store(f"evt_drain_{n}")

    assert drain() == 10
    assert len(handler.calls) == 10
    assert drain() == 0


def test_two_workers_handle_each_of_200_events_exactly_once(
    receiver: LiveServer, register_handler: Register
) -> None:
    make_workspace()
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def count(session: Session, ctx: EventContext) -> None:
        with lock:
            counts[ctx.event_id] += 1
        _write_partner(session, ctx)

    register_handler("customer.created", count)
    ids = [f"evt_two_workers_{n:03d}" for n in range(200)]
    with receiver.client() as client:
        for n, event_id in enumerate(ids):  # 200 customers: nothing holds a claim back
            body = _customer_event_bytes(event_id, f"cus_two_workers_{n:03d}")
            assert deliver(client, body).is_success

    start = threading.Barrier(2)
    handled_by: dict[str, int] = {}

    def worker(name: str) -> None:
        start.wait()
        total = 0
        while (report := process_batch(10)).claimed:
            total += report.handled
        handled_by[name] = total

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert set(counts) == set(ids)
    assert set(counts.values()) == {1}
    assert handled_by["a"] + handled_by["b"] == 200
    assert handled_by["a"] > 0 and handled_by["b"] > 0
    assert len(_partners()) == 200
    with db.session_scope() as session:
        statuses = Counter(e.status for e in session.exec(select(StripeEvent)).all())
    assert statuses == {InboxStatus.DONE: 200}


# --- the async worker -------------------------------------------------------------------


def test_worker_stop_finishes_the_event_in_hand_and_gives_back_the_rest(
    settings_env: dict[str, str], register_handler: Register
) -> None:
    make_workspace()
    entered = threading.Event()
    release = threading.Event()

    def slow(_session: Session, _ctx: EventContext) -> None:
        entered.set()
        assert release.wait(30)

    handler = register_handler("customer.created", slow)
    ids = [f"evt_stop_{n}" for n in range(5)]
    for n, event_id in enumerate(ids):
        _store(event_id, created=1785412800 + n)

    async def scenario() -> None:
        worker = Worker()
        await worker.start()
        worker.wake()
        await asyncio.to_thread(entered.wait, 30)
        stopping = asyncio.create_task(worker.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # waits for the event in hand
        release.set()
        await asyncio.wait_for(stopping, 30)
        assert not worker.running

    asyncio.run(scenario())

    assert [call.event_id for call in handler.calls] == ids[:1]
    rows = {event_id: inbox_row(event_id) for event_id in ids}
    assert rows[ids[0]] is not None and rows[ids[0]].status == InboxStatus.DONE
    for event_id in ids[1:]:
        row = rows[event_id]
        assert row is not None
        assert (row.status, row.locked_until) == (InboxStatus.PENDING, None)


def test_worker_publishes_bus_events_after_the_commit(
    settings_env: dict[str, str], register_handler: Register
) -> None:
    workspace = make_workspace()
    assert workspace.id is not None

    def emits(session: Session, ctx: EventContext) -> None:
        _write_partner(session, ctx)
        bus.emit(session, BusEvent(ctx.workspace.id or 0, "LEAD", ctx.event_id, False))

    register_handler("customer.created", emits)
    memory = MemoryBus()
    bus.set_bus(memory)

    async def scenario() -> BusEvent:
        stream = memory.subscribe(workspace.id or 0)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # the subscription is registered
        worker = Worker()
        await worker.start()
        try:
            await asyncio.to_thread(_store, CUSTOMER_EVENT_ID)
            worker.wake()
            received = await asyncio.wait_for(first, 30)
            assert _partners() == [f"{CUSTOMER_EVENT_ID}@test"]  # already committed
            return received
        finally:
            await worker.stop()
            await stream.aclose()

    received = asyncio.run(scenario())

    assert received == BusEvent(workspace.id, "LEAD", CUSTOMER_EVENT_ID, False)


def test_worker_wake_from_another_thread_reaches_its_loop(
    settings_env: dict[str, str],
    register_handler: Register,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODEQR_WORKER_POLL_SECONDS", "600")  # only a wake-up helps
    reset_settings()
    make_workspace()
    handler = register_handler("customer.created")

    async def scenario() -> None:
        worker = Worker()
        await worker.start()
        try:
            await asyncio.sleep(0.2)  # its first look found nothing; now it sleeps
            await asyncio.to_thread(_store, CUSTOMER_EVENT_ID)
            await asyncio.to_thread(worker.wake)
            await asyncio.to_thread(
                wait_for, lambda: handler.calls, 30, "the handler call"
            )
        finally:
            await worker.stop()

    asyncio.run(scenario())

    assert [call.event_id for call in handler.calls] == [CUSTOMER_EVENT_ID]


def test_worker_outlives_a_failing_batch_and_still_stops(
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    log_output: Callable[[], str],
) -> None:
    # A database that cannot be opened: every batch fails.
    monkeypatch.setenv("CODEQR_DATABASE_URL", f"sqlite:///{tmp_path}/missing/dir/x.db")
    reset_settings()

    async def scenario() -> None:
        worker = Worker()
        await worker.start()
        for _ in range(300):  # up to 30 s
            if "worker.batch.failed" in log_output():
                break
            await asyncio.sleep(0.1)
        assert "worker.batch.failed" in log_output()
        assert worker.running
        assert not any(task.done() for task in worker._tasks)
        await asyncio.wait_for(worker.stop(), 30)
        assert not worker.running

    asyncio.run(scenario())
