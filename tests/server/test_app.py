from __future__ import annotations

from pathlib import Path

import pytest
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


def test_cli_refuses_bad_slugs_keys_and_accounts(settings_env: dict[str, str]) -> None:
    from server.cli import main

    db.upgrade()
    assert main(["workspace", "create", "Bad Slug!"]) == 2
    assert main(["workspace", "create", "acme", "--stripe-account", "nope"]) == 2
    assert main(["workspace", "create", "acme", "--plan", "business"]) == 0
    for key in ("graphql", "../admin", "a/b"):
        assert (
            main(
                [
                    "link",
                    "create",
                    "--workspace",
                    "acme",
                    "--url",
                    "https://a.example/",
                    "--key",
                    key,
                ]
            )
            == 2
        )
    assert (
        main(
            [
                "link",
                "create",
                "--workspace",
                "acme",
                "--url",
                "https://a.example/",
                "--partner",
                "nope",
            ]
        )
        == 2
    )


def test_cli_names_db_upgrade_when_the_schema_is_missing(
    settings_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from server.cli import main
    from tests.conftest import reset_process_state

    monkeypatch.setenv("CODEQR_DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    reset_process_state()
    assert main(["workspace", "create", "acme"]) == 2
    assert "codeqr db upgrade" in capsys.readouterr().err


def test_dev_secret_key_lives_beside_the_sqlite_database(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from server import security
    from tests.conftest import reset_process_state

    database = tmp_path / "data" / "shop.db"
    database.parent.mkdir()
    monkeypatch.setenv("CODEQR_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.delenv("CODEQR_SECRET_KEY")
    reset_process_state()
    first = security.token_hash("cq_live_x")

    monkeypatch.chdir(tmp_path)  # another folder, same database: same key
    security.secret_key.cache_clear()
    assert security.token_hash("cq_live_x") == first
    key_file = database.with_name("shop.db.codeqr_secret_key")
    assert key_file.stat().st_mode & 0o777 == 0o600


@pytest.fixture
def uvicorn_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``codeqr serve`` with uvicorn.run recorded instead of run."""
    import uvicorn

    started: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_options: started.append(app))
    return started


def test_serve_refuses_a_database_never_migrated_and_creates_no_file(
    settings_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    uvicorn_runs: list[str],
) -> None:
    from server.cli import main
    from tests.conftest import reset_process_state

    missing = tmp_path / "missing.db"
    monkeypatch.setenv("CODEQR_DATABASE_URL", f"sqlite:///{missing}")
    reset_process_state()
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert f"the SQLite database {missing} does not exist" in err
    assert "codeqr db upgrade" in err
    assert not missing.exists()

    missing.touch()  # a file, but no tables
    assert main(["serve"]) == 2
    assert "no CodeQR tables yet" in capsys.readouterr().err
    assert uvicorn_runs == []


def test_serve_refuses_a_database_at_another_migration(
    settings_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    uvicorn_runs: list[str],
) -> None:
    import sqlalchemy as sa

    from server.cli import main

    with db.get_engine().begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0000'"))
    try:
        assert main(["serve"]) == 2
    finally:
        with db.get_engine().begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    assert "is at migration 0000; this version needs 0001" in capsys.readouterr().err
    assert uvicorn_runs == []


def test_serve_in_production_without_a_secret_key_refuses_to_start(
    settings_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    uvicorn_runs: list[str],
) -> None:
    from server.cli import main
    from tests.conftest import reset_process_state

    monkeypatch.setenv("CODEQR_ENVIRONMENT", "production")
    monkeypatch.delenv("CODEQR_SECRET_KEY")
    reset_process_state()
    assert main(["serve"]) == 2
    assert "CODEQR_SECRET_KEY must be set" in capsys.readouterr().err
    assert uvicorn_runs == []

    monkeypatch.setenv("CODEQR_SECRET_KEY", "x" * 48)
    reset_process_state()
    assert main(["serve"]) == 0
    assert uvicorn_runs == ["server.app:app"]


def test_workspace_create_sets_a_reporting_currency_the_rate_table_quotes(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from server.cli import main
    from server.models import Workspace

    capsys.readouterr()
    assert main(["workspace", "create", "euro", "--currency", "eur"]) == 0
    assert json.loads(capsys.readouterr().out)["reportingCurrency"] == "EUR"
    assert main(["workspace", "create", "plain"]) == 0
    assert json.loads(capsys.readouterr().out)["reportingCurrency"] == "USD"

    assert main(["workspace", "create", "odd", "--currency", "XYZ"]) == 2
    err = capsys.readouterr().err
    assert "--currency 'XYZ' is not a currency of the ECB rate table" in err
    assert "JPY" in err
    with db.session_scope() as session:
        from sqlmodel import select

        slugs = {w.slug: w.reporting_currency for w in session.exec(select(Workspace))}
    assert slugs == {"euro": "EUR", "plain": "USD"}


def test_a_misspelt_environment_is_refused_not_half_applied(
    settings_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from server.cli import main
    from server.settings import get_settings
    from tests.conftest import reset_process_state

    monkeypatch.setenv("CODEQR_ENVIRONMENT", "prod")
    reset_process_state()
    assert main(["workspace", "create", "acme"]) == 2
    err = capsys.readouterr().err
    assert "bad setting: CODEQR_ENVIRONMENT:" in err
    assert "'development', 'test' or 'production'" in err

    monkeypatch.setenv("CODEQR_ENVIRONMENT", " Production ")
    reset_process_state()
    assert get_settings().environment == "production"
