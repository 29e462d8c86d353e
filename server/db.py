"""Engines and sessions. Storage is synchronous SQLAlchemy: the async app calls it
through a thread pool, and Authlib (synchronous) uses it directly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from server.settings import get_settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept the usual ``postgresql://`` spelling and use the psycopg 3 driver for it."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    return make_engine(url or get_settings().database_url)


def dispose_engines() -> None:
    for engine in _cached_engines():
        engine.dispose()
    get_engine.cache_clear()


def _cached_engines() -> list[Engine]:
    # lru_cache keeps no public list of values; rebuild cheaply from its state.
    return [get_engine()] if get_engine.cache_info().currsize else []


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back on any error."""
    session = Session(engine or get_engine(), expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _alembic_config(url: str | None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option(
        "sqlalchemy.url", normalise_url(url or get_settings().database_url)
    )
    config.attributes["configure_logger"] = False
    return config


def upgrade(url: str | None = None) -> None:
    """Apply every Alembic migration to the database at ``url`` (default: settings)."""
    from alembic import command

    command.upgrade(_alembic_config(url), "head")


def schema_problem(url: str | None = None) -> str | None:
    """Why the database at ``url`` (default: settings) cannot serve this version of the
    code, or None when it is at the latest migration. Creates no SQLite file."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = _alembic_config(url)
    target = make_url(config.get_main_option("sqlalchemy.url"))
    file = target.database if target.get_backend_name() == "sqlite" else None
    if file and file != ":memory:" and not Path(file).exists():
        return f"the SQLite database {file} does not exist"
    heads = set(ScriptDirectory.from_config(config).get_heads())
    engine = create_engine(target)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
    if not current:
        return "the database has no CodeQR tables yet"
    if current != heads:
        return (
            f"the database is at migration {', '.join(sorted(current))}; this "
            f"version needs {', '.join(sorted(heads))}"
        )
    return None


__all__ = [
    "IntegrityError",
    "dispose_engines",
    "get_engine",
    "is_sqlite",
    "make_engine",
    "normalise_url",
    "schema_problem",
    "session_scope",
    "upgrade",
]
