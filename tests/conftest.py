"""Shared fixtures: a migrated database on SQLite and (when CODEQR_TEST_DATABASE_URL is set)
PostgreSQL, settings pointed at it, and a real uvicorn server on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from server import db
from server.settings import reset_settings

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stripe"
WEBHOOK_SECRET = "whsec_test_" + "a" * 32
OLD_WEBHOOK_SECRET = "whsec_test_" + "b" * 32
APP_SECRET = "absec_test_" + "c" * 32
TEST_SECRET_KEY = "test-secret-key-" + "d" * 32

_PG_URL = os.environ.get("CODEQR_TEST_DATABASE_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def fixture_path(name: str) -> Path:
    """A file of ../shared/fixtures/stripe (tests may read it; the product never does)."""
    return FIXTURES / name


# --- databases -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[str]:
    if not _PG_URL:
        pytest.skip("CODEQR_TEST_DATABASE_URL is not set")
    name = f"codeqr_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(db.normalise_url(_PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = (
        make_url(db.normalise_url(_PG_URL))
        .set(database=name)
        .render_as_string(hide_password=False)
    )
    db.upgrade(url)
    yield url
    db.dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_postgres(url: str) -> None:
    from sqlmodel import SQLModel

    import server.models  # noqa: F401

    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A freshly migrated, empty database: every storage test runs once per backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "codeqr.db"
        shutil.copy(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("_postgres_database")
    _truncate_postgres(url)
    return url


def reset_process_state() -> None:
    """Forget every cached singleton so the next use reads the current settings."""
    from server import bus, security

    reset_settings()
    db.dispose_engines()
    security.secret_key.cache_clear()
    bus.set_bus(None)
    for hook in RESET_HOOKS:
        hook()


# Packages append their own singleton resets here (click writer, worker, ...).
RESET_HOOKS: list[Callable[[], None]] = []


@pytest.fixture
def settings_env(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """Environment for the product under test; returns the values it set."""
    env = {
        "CODEQR_DATABASE_URL": database_url,
        "CODEQR_STRIPE_WEBHOOK_SECRETS": f"{WEBHOOK_SECRET},{OLD_WEBHOOK_SECRET}",
        "CODEQR_STRIPE_APP_SECRET": APP_SECRET,
        "CODEQR_SECRET_KEY": TEST_SECRET_KEY,
        "CODEQR_PUBLIC_URL": "http://127.0.0.1",
        "CODEQR_BROKER_URL": "memory://",
        "CODEQR_ENVIRONMENT": "test",
        "CODEQR_STRIPE_API_BASE": "http://127.0.0.1:9",  # nothing listens: tests start a fake
        "CODEQR_STRIPE_API_KEY": "sk_test_dummy",
        "CODEQR_WORKER_POLL_SECONDS": "0.05",
        "CODEQR_WORKER_BACKOFF_BASE_SECONDS": "0.05",
        # Cheap argon2 for tests only: a login costs a millisecond instead of 0.7 s.
        "CODEQR_PASSWORD_HASH_TIME_COST": "1",
        "CODEQR_PASSWORD_HASH_MEMORY_KIB": "1024",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    reset_process_state()
    yield env
    reset_process_state()


# --- a real server on loopback --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def start_server(env_overrides: dict[str, str] | None = None) -> LiveServer:
    """Start uvicorn with a freshly built app in a thread; settings come from the env."""
    from server.app import create_app
    from server.http_protocol import HTTP_PROTOCOL

    port = free_port()
    if env_overrides:
        os.environ.update(env_overrides)
    os.environ["CODEQR_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    reset_process_state()
    config = uvicorn.Config(
        create_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        http=HTTP_PROTOCOL,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", server, thread)


@pytest.fixture
def live_server(settings_env: dict[str, str]) -> Iterator[LiveServer]:
    server = start_server()
    yield server
    server.stop()


# --- the CLI and the SQL, observed ---------------------------------------------------


def run_cli(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, list[dict[str, Any]], str]:
    """Run ``codeqr argv`` in this process (its real parser and handlers, against the
    test's database): the exit status, the JSON lines it printed, its standard error."""
    from server.cli import main

    status = main(list(argv))
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    return status, lines, captured.err


@contextmanager
def recorded_statements(*, this_thread_only: bool) -> Iterator[list[str]]:
    """The SQL sent on the settings' engine while the block runs. A live server shares
    that engine from its own threads: ``this_thread_only`` leaves out its statements
    (its worker's polls among them), or keeps them for a test that asks it to query."""
    statements: list[str] = []
    me = threading.get_ident()

    def record(*args: Any) -> None:
        if not this_thread_only or threading.get_ident() == me:
            statements.append(str(args[2]))

    engine = db.get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
