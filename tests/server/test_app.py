from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from server import db
from tests.conftest import LiveServer


def test_healthz_answers_over_real_http(live_server: LiveServer) -> None:
    with live_server.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_migrations_match_the_models(database_url: str) -> None:
    import server.models  # noqa: F401

    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    engine.dispose()
    assert diff == [], f"models changed without a migration: {diff}"
