"""The batched click writer: nothing acknowledged is lost (shutdown, full buffer, failing
database), flush() means committed, and rows the database refuses are isolated."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session, func, select

from server import db
from server.clicks import ClickWriter, PendingClick, get_click_writer
from server.models import Click, RollupHourly, utcnow
from server.redirects import new_click_id
from tests.conftest import start_server
from tests.server.conftest import BROWSER_UA, LinkFactory


def _count_clicks() -> int:
    with Session(db.get_engine()) as session:
        return session.exec(select(func.count()).select_from(Click)).one()


def _click(link: dict[str, Any], workspace_id: int, **fields: Any) -> PendingClick:
    values: dict[str, Any] = {
        "id": new_click_id(),
        "workspace_id": workspace_id,
        "link_id": link["id"],
        "timestamp": utcnow(),
    }
    values.update(fields)
    return PendingClick(**values)


def _workspace_id() -> int:
    from server.models import Workspace

    with Session(db.get_engine()) as session:
        workspace = session.exec(select(Workspace)).one()
        assert workspace.id is not None
        return workspace.id


def test_clicks_survive_a_clean_shutdown(
    settings_env: dict[str, str],
    make_link: LinkFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The writer would wait 60 s for a batch to fill: only the shutdown writes them.
    monkeypatch.setenv("CODEQR_CLICK_FLUSH_INTERVAL_SECONDS", "60")
    monkeypatch.setenv("CODEQR_CLICK_FLUSH_BATCH_SIZE", "100000")
    server = start_server()
    try:
        make_link("https://shop.example/", key="shutdown")
        with server.client(headers={"user-agent": BROWSER_UA}) as client:
            statuses = [client.get("/shutdown").status_code for _ in range(40)]
        assert statuses == [302] * 40
    finally:
        server.stop()

    assert _count_clicks() == 40
    with Session(db.get_engine()) as session:
        assert session.exec(select(RollupHourly.clicks)).all() == [40]


def test_click_buffer_full_slows_intake_and_loses_nothing(
    settings_env: dict[str, str],
    make_link: LinkFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODEQR_CLICK_BUFFER_SIZE", "2")
    monkeypatch.setenv("CODEQR_CLICK_FLUSH_BATCH_SIZE", "3")
    monkeypatch.setenv("CODEQR_CLICK_FLUSH_INTERVAL_SECONDS", "0.2")
    server = start_server()
    try:
        make_link("https://shop.example/", key="crowd", track_conversion=True)

        def click(_: int) -> str:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                response = client.get("/crowd", headers={"user-agent": BROWSER_UA})
            assert response.status_code == 302
            return response.headers["location"].split("cq_id=")[1]

        with ThreadPoolExecutor(max_workers=20) as pool:
            click_ids = list(pool.map(click, range(60)))
        writer = get_click_writer()
        assert writer.full_waits > 0
    finally:
        server.stop()

    with Session(db.get_engine()) as session:
        stored = set(session.exec(select(Click.id)).all())
    assert stored == set(click_ids)
    assert len(stored) == 60


def test_click_writer_flush_commits_everything_acknowledged(
    settings_env: dict[str, str], make_link: LinkFactory
) -> None:
    link = make_link("https://shop.example/")
    workspace_id = _workspace_id()

    async def scenario() -> tuple[int, int]:
        writer = ClickWriter(buffer_size=100, batch_size=1000, flush_interval=60)
        await writer.start()
        for _ in range(5):
            await writer.record(_click(link, workspace_id))
        await writer.flush()  # cuts the 60 s wait for a fuller batch short
        counted = _count_clicks()
        pending = writer.pending
        await writer.stop()
        return counted, pending

    assert asyncio.run(scenario()) == (5, 0)


def test_click_writer_retries_a_failing_batch_until_it_is_written(
    settings_env: dict[str, str], make_link: LinkFactory
) -> None:
    link = make_link("https://shop.example/")
    workspace_id = _workspace_id()
    engine = db.get_engine()

    async def scenario() -> ClickWriter:
        writer = ClickWriter(buffer_size=10, batch_size=10, flush_interval=0.01)
        await writer.start()
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE click RENAME TO click_away"))
        await writer.record(_click(link, workspace_id))
        await writer.record(_click(link, workspace_id))
        for _ in range(500):
            if writer.failed_batches:
                break
            await asyncio.sleep(0.02)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE click_away RENAME TO click"))
        await writer.flush()
        await writer.stop()
        return writer

    writer = asyncio.run(scenario())

    assert writer.failed_batches >= 1
    assert (writer.written, writer.dropped) == (2, 0)
    assert _count_clicks() == 2


def test_click_writer_drops_only_the_rows_the_database_refuses(
    settings_env: dict[str, str], make_link: LinkFactory
) -> None:
    link = make_link("https://shop.example/")
    workspace_id = _workspace_id()
    good = [_click(link, workspace_id) for _ in range(3)]
    orphan = _click(
        {"id": 999_999}, workspace_id
    )  # no such link: a foreign-key refusal

    async def scenario() -> ClickWriter:
        writer = ClickWriter(buffer_size=10, batch_size=10, flush_interval=0.5)
        await writer.start()
        for click in [good[0], orphan, *good[1:]]:
            await writer.record(click)
        await writer.stop()
        return writer

    writer = asyncio.run(scenario())

    assert (writer.written, writer.dropped) == (3, 1)
    with Session(db.get_engine()) as session:
        assert set(session.exec(select(Click.id)).all()) == {c.id for c in good}
        assert session.exec(select(RollupHourly.clicks)).all() == [3]


def test_click_writer_rejects_a_zero_buffer() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        ClickWriter(buffer_size=0, batch_size=10, flush_interval=0.1)


def test_click_ids_are_url_safe_long_and_sortable_by_time() -> None:
    first = new_click_id()
    ids = [new_click_id() for _ in range(1000)]

    assert len(set(ids)) == 1000
    assert all(
        len(i) == 30 and i.replace("-", "").replace("_", "").isalnum() for i in ids
    )
    assert all(first[:8] <= i[:8] for i in ids)
