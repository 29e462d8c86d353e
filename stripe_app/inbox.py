"""The webhook inbox: verified Stripe events stored by event id, then taken by workers.

Every statement here is plain SQL through SQLAlchemy Core on the ``stripe_event`` table,
written once for SQLite and PostgreSQL:

- storing is ``INSERT ... ON CONFLICT (id) DO NOTHING``: a redelivery is a no-op;
- claiming sets a lease (``locked_until``) on a batch of due events in one
  ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``, so two
  workers (threads, processes or hosts) never take the same event; on SQLite the same
  single statement is atomic under the database's write lock;
- a claim also keeps one customer's events with one worker: it skips an event whose
  ordering key (see :func:`ordering_key`) has another event leased to someone else
  right now, and claims run one at a time (on PostgreSQL a transaction-scoped advisory
  lock, on SQLite the write lock), so two claims cannot each take an event of one key;
- marking an event done is conditional on its still being pending, and happens inside
  the transaction of the handler's own writes (see :mod:`stripe_app.worker`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    Insert,
    Table,
    Update,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from server.models import InboxStatus, StripeEvent, utcnow

TABLE: Table = StripeEvent.__table__  # type: ignore[attr-defined]
REASON_MAX = 500  # the width of stripe_event.reason
REPLAYABLE = (InboxStatus.DEAD, InboxStatus.SKIPPED)
KEY_MAX = 255  # the width of stripe_event.ordering_key
# pg_advisory_xact_lock's key for "a claim is running" (any constant; per database).
CLAIM_LOCK = 0x636F_6465_7172_0001
CUSTOMER_EVENTS = frozenset(
    {"customer.created", "customer.updated", "customer.deleted"}
)


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """The fields the receiver takes from a verified body, and the body itself."""

    id: str
    type: str
    account: str | None
    livemode: bool
    created: int
    payload: str
    ordering_key: str | None = None  # None: claimed with no ordering constraint


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    id: str
    type: str
    account: str | None
    livemode: bool
    created: int
    payload: str
    attempts: int
    received_at: datetime


@contextmanager
def transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """A transaction on a new pooled connection (an engine) or on the given one."""
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            yield conn
    else:
        with bind.begin():
            yield bind


def clip(reason: str) -> str:
    return reason if len(reason) <= REASON_MAX else reason[: REASON_MAX - 1] + "…"


# --- storing -------------------------------------------------------------------------


def ordering_key(event: Mapping[str, Any]) -> str | None:
    """The key that keeps related events in order across workers: the event's account,
    then the Stripe customer the event is about (a customer event's own object, else
    ``data.object.customer`` as an id or an expanded object), else the object's id.

    Stripe sends one customer's events (customer.created, checkout.session.completed,
    invoice.paid, charge.refunded) close together; a handler of a later one needs the
    rows of the earlier ones, so two workers must not take them side by side. The
    account comes first so that two accounts never share a key. A key that does not
    fit the column, or holds text it cannot store, is replaced by its SHA-256."""
    account = event.get("account")
    subject = _subject(event)
    if subject is None and not isinstance(account, str):
        return None
    key = f"{account if isinstance(account, str) else ''}:{subject or ''}"
    if len(key) <= KEY_MAX and key.isprintable():
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256:{digest}"


def _subject(event: Mapping[str, Any]) -> str | None:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        return None
    own_id = _id_of(obj)
    if obj.get("object") == "customer" or event.get("type") in CUSTOMER_EVENTS:
        return own_id
    return _id_of(obj.get("customer")) or own_id


def _id_of(value: object) -> str | None:
    """An id given as a string or as an expanded object (``{"id": ...}``)."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


@cache
def _insert_statement(dialect: str) -> Insert:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement: Insert = (
        module.insert(TABLE)
        .on_conflict_do_nothing(index_elements=[TABLE.c.id])
        .returning(TABLE.c.id)  # a row back = inserted (rowcount is not reliable here)
    )
    return statement


def store(engine: Engine, event: IncomingEvent, skip_reason: str | None = None) -> bool:
    """Insert the event unless its id is already stored; True when this call stored it.

    With ``skip_reason`` the event is stored as skipped (nothing will handle it)."""
    now = utcnow()
    row = {
        "id": event.id,
        "type": event.type,
        "account": event.account,
        "ordering_key": event.ordering_key,
        "livemode": event.livemode,
        "created": event.created,
        "payload": event.payload,
        "status": InboxStatus.SKIPPED if skip_reason else InboxStatus.PENDING,
        "reason": clip(skip_reason) if skip_reason else None,
        "attempts": 0,
        "next_attempt_at": now,
        "received_at": now,
        "processed_at": now if skip_reason else None,
    }
    with engine.begin() as conn:
        inserted = conn.execute(_insert_statement(engine.dialect.name), row).first()
    return inserted is not None


# --- claiming ------------------------------------------------------------------------


def claim_due(
    bind: Engine | Connection, limit: int, lease_seconds: float
) -> list[ClaimedEvent]:
    """Lease up to ``limit`` due pending events (oldest first) to the caller.

    An event is left out while its ordering key has another pending event under a live
    lease (another worker holds that customer). On PostgreSQL claims take turns on a
    transaction-scoped advisory lock, so each one sees the leases of the claims before
    it; on SQLite the claim is one statement under the database's write lock, which
    serialises claims of several processes (``serve --workers N``) the same way. A
    lease that ran out (its worker died or stalled) no longer holds its key, and an
    event without a key (stored before keys existed) is never held back."""
    now = utcnow()
    dialect = bind.dialect.name
    due = (
        select(TABLE.c.id)
        .where(
            TABLE.c.status == InboxStatus.PENDING,
            TABLE.c.next_attempt_at <= now,
            or_(TABLE.c.locked_until.is_(None), TABLE.c.locked_until < now),
        )
        .order_by(TABLE.c.next_attempt_at)
        .limit(limit)
        .where(or_(TABLE.c.ordering_key.is_(None), ~_key_held(now)))
        .with_for_update(skip_locked=True)  # rendered as nothing on SQLite
    )
    statement = (
        update(TABLE)
        .where(TABLE.c.id.in_(due))
        .values(locked_until=now + timedelta(seconds=lease_seconds))
        .returning(
            TABLE.c.id,
            TABLE.c.type,
            TABLE.c.account,
            TABLE.c.livemode,
            TABLE.c.created,
            TABLE.c.payload,
            TABLE.c.attempts,
            TABLE.c.received_at,
        )
    )
    with transaction(bind) as conn:
        if dialect == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK)))
        rows = conn.execute(statement).all()

    claimed = [ClaimedEvent(*row) for row in rows]
    # RETURNING has no order: handle events in the order Stripe created them.
    claimed.sort(key=lambda event: (event.created, event.received_at, event.id))
    return claimed


def _key_held(now: datetime) -> Any:
    """``EXISTS`` another event of the candidate's key under a live lease. Only pending
    events have one: every way out of pending (done, skipped, dead, retry, release)
    clears ``locked_until``. Testing the status too made SQLite plan this look-up on the
    status index, reading every pending event for each candidate."""
    other = TABLE.alias("held")
    return exists().where(
        other.c.ordering_key == TABLE.c.ordering_key,
        other.c.locked_until >= now,
    )


def release(bind: Engine | Connection, ids: Sequence[str]) -> None:
    """Give back leased events that were not handled (the worker is stopping)."""
    if not ids:
        return
    with transaction(bind) as conn:
        conn.execute(
            update(TABLE)
            .where(TABLE.c.id.in_(ids), TABLE.c.status == InboxStatus.PENDING)
            .values(locked_until=None)
        )


# --- finishing (inside the caller's transaction) -------------------------------------


def _param(name: str, column: str) -> BindParameter[Any]:
    return bindparam(name, type_=TABLE.c[column].type)


def _update_pending(**values: Any) -> Update:
    """``UPDATE stripe_event SET ... WHERE id = :event_id AND status = 'pending'``,
    built once: these run for every event."""
    return (
        update(TABLE)
        .where(
            TABLE.c.id == bindparam("event_id"), TABLE.c.status == InboxStatus.PENDING
        )
        .values(**values)
    )


_MARK_DONE = _update_pending(
    status=InboxStatus.DONE,
    reason=None,
    workspace_id=_param("new_workspace_id", "workspace_id"),
    processed_at=_param("now", "processed_at"),
    locked_until=None,
).returning(TABLE.c.attempts)

_FINISH = _update_pending(
    status=_param("new_status", "status"),
    reason=_param("new_reason", "reason"),
    workspace_id=_param("new_workspace_id", "workspace_id"),
    processed_at=_param("now", "processed_at"),
    locked_until=None,
)

_SCHEDULE_RETRY = _update_pending(
    attempts=_param("new_attempts", "attempts"),
    next_attempt_at=_param("due_at", "next_attempt_at"),
    reason=_param("new_reason", "reason"),
    workspace_id=_param("new_workspace_id", "workspace_id"),
    locked_until=None,
)


def mark_done(conn: Connection, event_id: str, workspace_id: int | None) -> int | None:
    """The first write of an event's transaction: mark the event done if it is still
    pending, which also locks its row until the commit (or the write lock on SQLite).
    The handler's writes follow in the same transaction; if it fails, the rollback
    undoes this mark too. Returns the attempts so far, or None when the event is no
    longer pending (another worker finished it after our lease ran out)."""
    row = conn.execute(
        _MARK_DONE,
        {"event_id": event_id, "new_workspace_id": workspace_id, "now": utcnow()},
    ).first()
    return None if row is None else int(row[0])


def finish(
    conn: Connection,
    event_id: str,
    status: InboxStatus,
    reason: str | None = None,
    workspace_id: int | None = None,
) -> bool:
    """Mark a pending event done, skipped or dead; False when it was not pending."""
    result = conn.execute(
        _FINISH,
        {
            "event_id": event_id,
            "new_status": status,
            "new_reason": clip(reason) if reason else None,
            "new_workspace_id": workspace_id,
            "now": utcnow(),
        },
    )
    return bool(result.rowcount == 1)


def schedule_retry(
    conn: Connection,
    event_id: str,
    attempts: int,
    next_attempt_at: datetime,
    reason: str,
    workspace_id: int | None = None,
) -> bool:
    """Count a failed attempt and make the event due again at ``next_attempt_at``."""
    result = conn.execute(
        _SCHEDULE_RETRY,
        {
            "event_id": event_id,
            "new_attempts": attempts,
            "due_at": next_attempt_at,
            "new_reason": clip(reason),
            "new_workspace_id": workspace_id,
        },
    )
    return bool(result.rowcount == 1)


# --- operators: list and replay ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventSummary:
    id: str
    type: str
    account: str | None
    livemode: bool
    status: str
    reason: str | None
    attempts: int
    received_at: datetime
    processed_at: datetime | None  # when it was done, skipped or dead (prune's clock)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "account": self.account,
            "livemode": self.livemode,
            "status": self.status,
            "reason": self.reason,
            "failedAttempts": self.attempts,
            "receivedAt": self.received_at.isoformat(),
            "processedAt": self.processed_at.isoformat() if self.processed_at else None,
        }


_SUMMARY_COLUMNS = (
    TABLE.c.id,
    TABLE.c.type,
    TABLE.c.account,
    TABLE.c.livemode,
    TABLE.c.status,
    TABLE.c.reason,
    TABLE.c.attempts,
    TABLE.c.received_at,
    TABLE.c.processed_at,
)


def list_events(
    engine: Engine, status: str | None = None, limit: int = 100
) -> list[EventSummary]:
    """The most recently received events, optionally of one status."""
    query = select(*_SUMMARY_COLUMNS).order_by(TABLE.c.received_at.desc(), TABLE.c.id)
    if status:
        query = query.where(TABLE.c.status == status)
    with engine.connect() as conn:
        rows = conn.execute(query.limit(limit)).all()
    return [EventSummary(*row) for row in rows]


def get_event(engine: Engine, event_id: str) -> EventSummary | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(*_SUMMARY_COLUMNS).where(TABLE.c.id == event_id)
        ).first()
    return None if row is None else EventSummary(*row)


def requeue(
    engine: Engine,
    ids: Sequence[str] = (),
    statuses: Sequence[InboxStatus] = (),
) -> list[EventSummary]:
    """Make dead or skipped events pending again with a fresh count of attempts.

    Picks the given ids and/or every event of the given statuses; only dead and skipped
    events move. Returns them as they were before."""
    wanted = [status for status in statuses if status in REPLAYABLE]
    conditions = []
    if ids:
        conditions.append(TABLE.c.id.in_(ids))
    if wanted:
        conditions.append(TABLE.c.status.in_(wanted))
    if not conditions:
        return []

    now = utcnow()
    with engine.begin() as conn:
        rows = conn.execute(
            select(*_SUMMARY_COLUMNS)
            .where(or_(*conditions), TABLE.c.status.in_(REPLAYABLE))
            .with_for_update()
        ).all()
        before = [EventSummary(*row) for row in rows]
        if before:
            conn.execute(
                update(TABLE)
                .where(
                    TABLE.c.id.in_([event.id for event in before]),
                    TABLE.c.status.in_(REPLAYABLE),
                )
                .values(
                    status=InboxStatus.PENDING,
                    attempts=0,
                    reason=None,
                    next_attempt_at=now,
                    locked_until=None,
                    processed_at=None,
                )
            )
    return before


# --- retention -----------------------------------------------------------------------

# Stripe redelivers an event for up to three days; while its row is kept, a redelivery
# is a no-op. Pruning younger rows would let a late redelivery be handled a second time
# (harmless for the handlers, which are idempotent, but counted as work again).
MIN_RETENTION = timedelta(days=7)
PRUNE_BATCH = 5_000


def prune(
    engine: Engine,
    older_than: timedelta,
    statuses: Sequence[InboxStatus] = (InboxStatus.DONE,),
) -> int:
    """Delete finished events (done by default) handled more than ``older_than`` ago,
    in batches so no transaction holds many row locks; returns how many went. Pending
    events are never deleted, whatever ``statuses`` says."""
    if older_than < MIN_RETENTION:
        raise ValueError(
            f"events are kept at least {MIN_RETENTION.days} days: Stripe redelivers "
            "for up to three, and a kept event makes its redelivery a no-op"
        )
    finished = [status for status in statuses if status != InboxStatus.PENDING]
    if not finished:
        return 0
    cutoff = utcnow() - older_than
    finished_long_ago = (
        TABLE.c.status.in_(finished),
        # Implied by the next condition (an event is due before it is handled), and
        # what lets the (status, next_attempt_at) index find the old rows.
        TABLE.c.next_attempt_at < cutoff,
        TABLE.c.processed_at < cutoff,
    )
    old = select(TABLE.c.id).where(*finished_long_ago).limit(PRUNE_BATCH)
    # The conditions again on the DELETE itself: PostgreSQL re-checks only those after
    # waiting for a row, and a replay may have made it pending meanwhile.
    statement = delete(TABLE).where(TABLE.c.id.in_(old), *finished_long_ago)
    deleted = 0
    while True:
        with engine.begin() as conn:
            gone = conn.execute(statement).rowcount
        deleted += gone
        if gone < PRUNE_BATCH:
            return deleted
