"""One customer's events with one worker at a time: the inbox's ordering key, and the
claim that holds back an event while another worker leases one of its key (on both
databases; the claim lock and concurrent claimers on PostgreSQL).

The key is computed by the receiver from the verified body; the claim tests store
events straight into the inbox with the key the receiver would give them, then claim
with real connections (several threads where the point is concurrency)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from server import db
from server.models import InboxStatus, utcnow
from stripe_app import inbox
from stripe_app.routes import parse_event
from tests.conftest import LiveServer
from tests.stripe_app.conftest import (
    ACCOUNT,
    deliver,
    fixture_bytes,
    inbox_row,
)

CUSTOMER = "cus_QXg1o8vcGmoR32"  # the customer of the shared fixtures
ONLY_POSTGRES = pytest.mark.parametrize(
    "database_url",
    [pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)


def _fixture_event(name: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(fixture_bytes(name))
    event.update(changes)
    return event


def _event(
    event_id: str,
    kind: str,
    obj: dict[str, Any],
    account: str | None = ACCOUNT,
    created: int = 1785412800,
) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "account": account,
        "created": created,
        "livemode": False,
        "data": {"object": obj},
    }


# --- the key -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "event_customer_created.json",
        "event_customer_updated.json",
        "event_checkout_session_completed.json",
        "event_invoice_paid.json",
        "event_charge_refunded.json",
    ],
)
def test_every_event_of_one_customer_gets_the_customer_key(name: str) -> None:
    assert inbox.ordering_key(_fixture_event(name)) == f"{ACCOUNT}:{CUSTOMER}"


def test_async_payment_succeeded_follows_its_customer() -> None:
    event = _fixture_event(
        "event_checkout_session_completed.json",
        type="checkout.session.async_payment_succeeded",
    )
    assert inbox.ordering_key(event) == f"{ACCOUNT}:{CUSTOMER}"


def test_deauthorization_is_keyed_by_its_application_object() -> None:
    event = _fixture_event("event_account_application_deauthorized.json")
    app_id = event["data"]["object"]["id"]
    assert inbox.ordering_key(event) == f"{ACCOUNT}:{app_id}"


@pytest.mark.parametrize(
    "customer",
    [
        {"id": CUSTOMER, "object": "customer", "email": "jenny.rosen@example.com"},
        {"id": CUSTOMER, "object": "customer", "deleted": True},
    ],
)
def test_an_expanded_customer_object_gives_the_same_key_as_its_id(
    customer: dict[str, Any],
) -> None:
    invoice = _fixture_event("event_invoice_paid.json")
    invoice["data"]["object"]["customer"] = customer
    assert inbox.ordering_key(invoice) == f"{ACCOUNT}:{CUSTOMER}"


@pytest.mark.parametrize("missing", [None, "", {}, {"object": "customer"}, 42])
def test_without_a_customer_the_object_itself_is_the_key(missing: object) -> None:
    obj = {"id": "cs_test_guest", "object": "checkout.session", "customer": missing}
    event = _event("evt_guest", "checkout.session.completed", obj)
    assert inbox.ordering_key(event) == f"{ACCOUNT}:cs_test_guest"


def test_a_customer_sub_object_event_follows_its_customer() -> None:
    obj = {"id": "sub_1", "object": "subscription", "customer": CUSTOMER}
    event = _event("evt_sub", "customer.subscription.created", obj)
    assert inbox.ordering_key(event) == f"{ACCOUNT}:{CUSTOMER}"


def test_a_customer_event_is_keyed_by_its_own_object() -> None:
    obj = {"id": "cus_other", "customer": "cus_not_this_one"}  # no "object" field
    event = _event("evt_cus", "customer.updated", obj)
    assert inbox.ordering_key(event) == f"{ACCOUNT}:cus_other"


def test_the_account_alone_keys_an_event_without_object_id() -> None:
    event = _event("evt_no_id", "balance.available", {"object": "balance"})
    assert inbox.ordering_key(event) == f"{ACCOUNT}:"


def test_two_accounts_never_share_a_key() -> None:
    one = _fixture_event("event_invoice_paid.json")
    other = _fixture_event("event_invoice_paid.json", account="acct_1OtherAccount000")
    platform = _fixture_event("event_invoice_paid.json", account=None)

    keys = {inbox.ordering_key(one), inbox.ordering_key(other)}
    assert keys == {f"{ACCOUNT}:{CUSTOMER}", f"acct_1OtherAccount000:{CUSTOMER}"}
    assert inbox.ordering_key(platform) == f":{CUSTOMER}"


def test_no_account_and_no_object_id_means_no_key() -> None:
    assert inbox.ordering_key(_event("evt_x", "ping", {}, account=None)) is None


@pytest.mark.parametrize(
    "customer", ["cus_" + "x" * 300, "cus_nul\x00", "cus_lone\ud800surrogate"]
)
def test_a_key_that_does_not_fit_the_column_is_hashed_the_same_way_each_time(
    customer: str,
) -> None:
    obj = {"id": "in_1", "object": "invoice", "customer": customer}
    key = inbox.ordering_key(_event("evt_1", "invoice.paid", obj))
    again = inbox.ordering_key(_event("evt_2", "invoice.paid", dict(obj, id="in_2")))

    assert key is not None and key.startswith("sha256:")
    assert key == again
    assert len(key) <= inbox.KEY_MAX and key.isprintable()
    other = dict(obj, customer=customer + "y")
    assert inbox.ordering_key(_event("evt_3", "invoice.paid", other)) != key


def test_the_receiver_parses_the_key_from_the_body() -> None:
    body = fixture_bytes("event_invoice_paid.json")
    assert parse_event(body).ordering_key == f"{ACCOUNT}:{CUSTOMER}"


def test_a_delivered_event_is_stored_with_its_key(receiver: LiveServer) -> None:
    with receiver.client() as client:
        for name in ("event_customer_created.json", "event_invoice_paid.json"):
            assert deliver(client, fixture_bytes(name)).is_success

    for name in ("event_customer_created.json", "event_invoice_paid.json"):
        row = inbox_row(_fixture_event(name)["id"])
        assert row is not None
        assert row.ordering_key == f"{ACCOUNT}:{CUSTOMER}"


# --- the claim on PostgreSQL ---------------------------------------------------------


def _store(
    event_id: str, customer: str | None, created: int = 1785412800, keyed: bool = True
) -> None:
    """An invoice.paid of ``customer`` in the inbox, keyed as the receiver keys it
    (``keyed=False``: a row stored before keys existed)."""
    obj = {"id": f"in_{event_id}", "object": "invoice", "customer": customer}
    event = _event(event_id, "invoice.paid", obj, created=created)
    inbox.store(
        db.get_engine(),
        inbox.IncomingEvent(
            event_id,
            event["type"],
            event["account"],
            False,
            created,
            json.dumps(event),
            inbox.ordering_key(event) if keyed else None,
        ),
    )


def _claimed_ids(limit: int = 50, lease_seconds: float = 60) -> list[str]:
    return [e.id for e in inbox.claim_due(db.get_engine(), limit, lease_seconds)]


def _finish(*ids: str) -> None:
    with db.get_engine().begin() as conn:
        for event_id in ids:
            assert inbox.finish(conn, event_id, InboxStatus.DONE)


def test_a_customer_leased_to_one_claim_is_held_back_from_the_next(
    settings_env: dict[str, str],
) -> None:
    _store("evt_a1", "cus_a", created=1)
    _store("evt_b1", "cus_b", created=2)
    _store("evt_a2", "cus_a", created=3)

    first = _claimed_ids(limit=1)
    assert first == ["evt_a1"]
    # evt_a2 is due, but its customer is in another worker's hands.
    assert _claimed_ids() == ["evt_b1"]
    assert _claimed_ids() == []

    _finish("evt_a1")
    assert _claimed_ids() == ["evt_a2"]


def test_one_claim_takes_several_events_of_a_customer_in_created_order(
    settings_env: dict[str, str],
) -> None:
    _store("evt_late", "cus_a", created=30)
    _store("evt_early", "cus_a", created=10)
    _store("evt_middle", "cus_a", created=20)

    assert _claimed_ids() == ["evt_early", "evt_middle", "evt_late"]


def test_an_expired_lease_no_longer_holds_its_customer(
    settings_env: dict[str, str],
) -> None:
    _store("evt_a1", "cus_a", created=1)
    _store("evt_a2", "cus_a", created=2)

    # A worker claimed evt_a1 and died: its lease is already over.
    assert _claimed_ids(limit=1, lease_seconds=-1) == ["evt_a1"]

    assert _claimed_ids() == ["evt_a1", "evt_a2"]


def test_a_retry_waiting_for_its_backoff_does_not_hold_its_customer(
    settings_env: dict[str, str],
) -> None:
    _store("evt_a1", "cus_a", created=1)
    _store("evt_a2", "cus_a", created=2)
    assert _claimed_ids(limit=1) == ["evt_a1"]
    with db.get_engine().begin() as conn:
        later = utcnow() + timedelta(minutes=5)
        assert inbox.schedule_retry(conn, "evt_a1", 1, later, "needs a row")

    assert _claimed_ids() == ["evt_a2"]


def test_events_without_a_key_are_never_held_back(
    settings_env: dict[str, str],
) -> None:
    _store("evt_old1", "cus_a", created=1, keyed=False)
    _store("evt_old2", "cus_a", created=2, keyed=False)

    assert _claimed_ids(limit=1) == ["evt_old1"]
    assert _claimed_ids(limit=1) == ["evt_old2"]


def test_a_replayed_event_waits_while_its_customer_is_leased(
    settings_env: dict[str, str],
) -> None:
    _store("evt_dead", "cus_a", created=1)
    with db.get_engine().begin() as conn:
        assert inbox.finish(conn, "evt_dead", InboxStatus.DEAD, "gave up")
    _store("evt_new", "cus_a", created=2)
    assert _claimed_ids() == ["evt_new"]

    assert [e.id for e in inbox.requeue(db.get_engine(), ids=["evt_dead"])] == [
        "evt_dead"
    ]
    assert _claimed_ids() == []

    _finish("evt_new")
    assert _claimed_ids() == ["evt_dead"]


@ONLY_POSTGRES
def test_a_claim_waits_for_the_claim_before_it(settings_env: dict[str, str]) -> None:
    _store("evt_a1", "cus_a")
    engine = db.get_engine()
    claimed: list[str] = []

    with engine.begin() as holder:
        # Another claim in progress: it holds the claim lock until its commit.
        holder.execute(select(func.pg_advisory_xact_lock(inbox.CLAIM_LOCK)))
        claimer = threading.Thread(target=lambda: claimed.extend(_claimed_ids()))
        claimer.start()
        claimer.join(timeout=0.5)
        assert claimer.is_alive()
        assert claimed == []
    claimer.join(timeout=30)

    assert not claimer.is_alive()
    assert claimed == ["evt_a1"]


# --- concurrent claimers -------------------------------------------------------------


class _Holdings:
    """Which thread holds which keys right now, as the claimers report it. A key is
    entered after its claim committed and left before its events are finished, so a
    key found held by another thread when a claim registers is a real overlap."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[str, str] = {}
        self.seen: set[str] = set()
        self.problems: list[str] = []
        self.finished: dict[str, list[int]] = defaultdict(list)
        self.most_holders = 0

    def enter(self, thread: str, events: list[inbox.ClaimedEvent]) -> None:
        with self.lock:
            for event in events:
                key = _key_of(event)
                if event.id in self.seen:
                    self.problems.append(f"{event.id} claimed twice")
                self.seen.add(event.id)
                holder = self.held.get(key)
                if holder is not None and holder != thread:
                    self.problems.append(f"{key} held by {holder} and {thread}")
                self.held[key] = thread
            self.most_holders = max(self.most_holders, len(set(self.held.values())))

    def leave(self, thread: str, events: list[inbox.ClaimedEvent]) -> None:
        with self.lock:
            for event in events:
                self.finished[_key_of(event)].append(event.created)
                if self.held.get(_key_of(event)) == thread:
                    del self.held[_key_of(event)]


def _key_of(event: inbox.ClaimedEvent) -> str:
    key = inbox.ordering_key(json.loads(event.payload))
    assert key is not None
    return key


@ONLY_POSTGRES
def test_concurrent_claimers_never_hold_one_customer_or_one_event_at_once(
    settings_env: dict[str, str],
) -> None:
    customers, per_customer, threads = 8, 15, 4
    total = customers * per_customer
    for n in range(per_customer):
        for c in range(customers):
            _store(f"evt_c{c}_{n:02d}", f"cus_{c}", created=1000 + n)
    engine = db.get_engine()
    holdings = _Holdings()
    done = threading.Event()
    start = threading.Barrier(threads)

    def claimer(name: str) -> None:
        rng = random.Random(name)
        start.wait()
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            claimed = inbox.claim_due(engine, rng.randint(1, 4), 60)
            if not claimed:
                time.sleep(0.002)
                continue
            holdings.enter(name, claimed)
            time.sleep(0.005)  # the handlers' work
            holdings.leave(name, claimed)
            with engine.begin() as conn:
                for event in claimed:
                    assert inbox.finish(conn, event.id, InboxStatus.DONE)
            with holdings.lock:
                if len(holdings.seen) == total:
                    done.set()

    workers = [
        threading.Thread(target=claimer, args=(f"t{n}",)) for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=90)

    assert not any(worker.is_alive() for worker in workers)
    assert holdings.problems == []
    assert len(holdings.seen) == total
    # Work did overlap (different customers side by side)...
    assert holdings.most_holders >= 2
    # ...and each customer's events were finished in the order they were created.
    for created in holdings.finished.values():
        assert created == sorted(created)
    with engine.connect() as conn:
        statuses = conn.execute(select(inbox.TABLE.c.status)).scalars().all()
    assert sorted(statuses) == [InboxStatus.DONE] * total
