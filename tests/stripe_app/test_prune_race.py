"""``codeqr events prune`` racing ``codeqr events replay`` on PostgreSQL: an event the
replay made pending while prune waited for its row stays in the inbox."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server import db
from server.models import InboxStatus, utcnow
from stripe_app import inbox


def _waiting_on_a_lock(engine: sa.Engine, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"expected {count} sessions waiting on a lock")


def test_prune_keeps_an_event_that_replay_made_pending_while_it_waited(
    settings_env: dict[str, str], database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: no interleaving to arrange")
    engine = db.get_engine()
    body = '{"data": {"object": {}}}'
    event = inbox.IncomingEvent(
        "evt_old_dead", "invoice.paid", "acct_x", False, 1, body
    )
    assert inbox.store(engine, event)
    old = utcnow() - timedelta(days=40)
    with engine.begin() as conn:
        conn.execute(
            inbox.TABLE.update().values(
                status=InboxStatus.DEAD, processed_at=old, next_attempt_at=old
            )
        )

    # A holder of the row lines the two commands up behind it: replay first, then prune.
    blocker = engine.connect()
    held = blocker.begin()
    blocker.execute(
        sa.select(inbox.TABLE.c.id)
        .where(inbox.TABLE.c.id == "evt_old_dead")
        .with_for_update()
    )
    results: dict[str, object] = {}
    replay = threading.Thread(
        target=lambda: results.update(replayed=inbox.requeue(engine, ["evt_old_dead"]))
    )
    prune = threading.Thread(
        target=lambda: results.update(
            pruned=inbox.prune(
                engine, timedelta(days=30), (InboxStatus.DONE, InboxStatus.DEAD)
            )
        )
    )
    try:
        replay.start()
        _waiting_on_a_lock(engine, 1)
        prune.start()
        _waiting_on_a_lock(engine, 2)
    finally:
        held.commit()
        blocker.close()
        replay.join(10)
        prune.join(10)

    assert [e.id for e in results["replayed"]] == ["evt_old_dead"]  # type: ignore[attr-defined]
    assert results["pruned"] == 0
    kept = inbox.get_event(engine, "evt_old_dead")
    assert kept is not None and kept.status == InboxStatus.PENDING
