"""Secrets at rest: client secrets, codes, access and refresh tokens are stored only as
keyed hashes; a bearer check is one indexed query."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from oauth.principal import authenticate_bearer
from server import db
from tests.conftest import LiveServer, recorded_statements
from tests.oauth.flow import (
    OAuthSetup,
    exchange_code,
    issue_code,
    refresh_tokens,
)


def _database_text(url: str) -> str:
    """Every value of every table, as text."""
    engine = create_engine(db.normalise_url(url))
    chunks: list[str] = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                chunks.extend(str(value) for value in row)
    engine.dispose()
    return "\n".join(chunks)


def test_secrets_codes_and_tokens_are_never_stored_in_clear(
    live_server: LiveServer, web_client: OAuthSetup, settings_env: dict[str, str]
) -> None:
    code, verifier = issue_code(live_server.url, web_client)
    with live_server.client() as http:
        first = exchange_code(http, web_client, code, verifier).json()
        second = refresh_tokens(http, web_client, first["refresh_token"]).json()
    secrets = [
        web_client.client_secret or "",
        code,
        first["access_token"],
        first["refresh_token"],
        second["access_token"],
        second["refresh_token"],
    ]
    stored = _database_text(settings_env["CODEQR_DATABASE_URL"])
    assert web_client.client_id in stored  # the dump does see the OAuth tables
    for value in secrets:
        assert value not in stored
        assert value[8:40] not in stored

    url = settings_env["CODEQR_DATABASE_URL"]
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        for value in secrets:
            assert value.encode() not in raw


def test_bearer_check_of_an_oauth_token_is_one_query(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app)
    with live_server.client() as http:
        token = exchange_code(http, stripe_app, code, verifier).json()["access_token"]

    with (
        recorded_statements(this_thread_only=True) as statements,
        db.session_scope() as session,
    ):
        principal = authenticate_bearer(session, token)
    assert principal is not None
    assert len(statements) == 1
    assert "access_token_hash" in statements[0]


def test_api_keys_still_resolve_and_are_never_looked_up_among_oauth_tokens(
    settings_env: dict[str, str],
) -> None:
    from server.cli import create_api_key, create_workspace

    workspace = create_workspace("acme", plan="business")
    key = create_api_key("acme")
    with (
        recorded_statements(this_thread_only=True) as statements,
        db.session_scope() as session,
    ):
        principal = authenticate_bearer(session, key)
        unknown = authenticate_bearer(session, "cqo_at_" + "x" * 43)
    assert principal is not None and principal.kind == "api_key"
    assert principal.workspace_id == workspace.id
    assert unknown is None
    assert len(statements) == 2
    assert "api_key" in statements[0] and "oauth_token" not in statements[0]
    assert "oauth_token" in statements[1] and "api_key" not in statements[1]
