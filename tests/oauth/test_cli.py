"""``codeqr user create`` and ``codeqr oauth-client create``."""

from __future__ import annotations

import io
from typing import Any

import pytest
from sqlmodel import select

from oauth.clients import ClientError, validate_redirect_uri
from oauth.users import authenticate
from server import db
from server.cli import create_workspace
from server.models import Membership, OAuthClient
from server.security import token_hash
from server.settings import reset_settings
from tests.conftest import run_cli


def _run(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, dict[str, Any], str]:
    """:func:`run_cli` for these commands, which print one object (none when refused)."""
    status, lines, err = run_cli(capsys, *argv)
    assert len(lines) <= 1
    return status, (lines[0] if lines else {}), err


def test_cli_user_create_makes_a_member_who_can_log_in(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    create_workspace("acme", plan="business")
    status, out, _ = _run(
        capsys,
        "user",
        "create",
        "--email",
        "Ann@Example.com",
        "--password",
        "long enough secret",
        "--workspace",
        "acme",
    )
    assert status == 0
    assert out["email"] == "ann@example.com"
    assert out["workspace"] == "acme" and out["role"] == "member"
    with db.session_scope() as session:
        assert authenticate(session, "ann@example.com", "long enough secret")
        membership = session.exec(select(Membership)).one()
    assert membership.role == "member"


def test_cli_user_create_as_owner(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    create_workspace("acme")
    status, out, _ = _run(
        capsys,
        "user",
        "create",
        "--email",
        "o@example.com",
        "--password",
        "long enough secret",
        "--workspace",
        "acme",
        "--role",
        "owner",
    )
    assert status == 0 and out["role"] == "owner"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--password", "short"], "8 to 1024 characters"),
        (["--password", "long enough secret", "--workspace", "nope"], "no workspace"),
    ],
)
def test_cli_user_create_refuses_bad_input_and_creates_nothing(
    settings_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    status, out, err = _run(capsys, "user", "create", "--email", "a@example.com", *argv)
    assert status == 2 and out == {}
    assert message in err
    with db.session_scope() as session:
        assert authenticate(session, "a@example.com", "long enough secret") is None


@pytest.mark.parametrize(
    ("stdin", "status", "signs_in_with"),
    [
        ("typed at a prompt\r\nignored\n", 0, "typed at a prompt"),
        ("", 2, None),
    ],
    ids=["first-line", "empty"],
)
def test_cli_user_create_reads_the_password_from_stdin_with_a_dash(
    settings_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: str,
    status: int,
    signs_in_with: str | None,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    args = ["user", "create", "--email", "a@example.com", "--password", "-"]
    result, out, err = _run(capsys, *args)
    assert result == status
    with db.session_scope() as session:
        assert authenticate(session, "a@example.com", "-") is None
        if signs_in_with is None:
            assert out == {} and "standard input was empty" in err
        else:
            assert out["email"] == "a@example.com"
            assert authenticate(session, "a@example.com", signs_in_with)


def test_cli_user_create_twice_is_refused(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["user", "create", "--email", "a@example.com", "--password", "long enough"]
    assert _run(capsys, *args)[0] == 0
    status, _, err = _run(capsys, *args)
    assert status == 2 and "already exists" in err


def test_cli_oauth_client_create_confidential_prints_the_secret_once(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(
        capsys,
        "oauth-client",
        "create",
        "--name",
        "Web app",
        "--redirect-uri",
        "https://app.example.com/cb",
        "https://app.example.com/cb2",
        "--scope",
        "conversions:read",
    )
    assert status == 0
    assert out["client_secret"]
    assert out["redirect_uris"] == [
        "https://app.example.com/cb",
        "https://app.example.com/cb2",
    ]
    assert out["scope"] == "conversions:read"
    assert out["public"] is False
    with db.session_scope() as session:
        client = session.exec(select(OAuthClient)).one()
    assert client.client_id == out["client_id"]
    assert client.client_secret_hash == token_hash(out["client_secret"])
    assert client.check_client_secret(out["client_secret"])


def test_cli_oauth_client_create_public_has_no_secret(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(
        capsys,
        "oauth-client",
        "create",
        "--name",
        "CodeQR for Stripe",
        "--public",
        "--redirect-uri",
        "https://dashboard.stripe.com/test/apps-oauth/com.codeqr.x",
        "--redirect-uri",
        "https://dashboard.stripe.com/apps-oauth/com.codeqr.x",
        "--requires-business-plan",
        "--client-id",
        "stripe-app",
    )
    assert status == 0
    assert "client_secret" not in out
    assert out["client_id"] == "stripe-app"
    assert out["public"] is True and out["token_endpoint_auth_method"] == "none"
    assert out["requires_business_plan"] is True
    assert len(out["redirect_uris"]) == 2
    assert out["scope"] == "conversions:read conversions:write"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://app.example.com/cb", "must use https"),
        ("https://app.example.com/cb#x", "fragment"),
        ("/relative/cb", "must be absolute"),
        ("https://user:pw@app.example.com/cb", "credentials"),
        ("ftp://app.example.com/cb", "must use https"),
        ("https://app.example.com/*", "no wildcards"),
        ("https://*.example.com/cb", "no wildcards"),
        ("https://app.example.com/cb?iss=https://evil.example", "'iss'"),
        ("https://app.example.com/cb?x=1&code=", "'code'"),
        ("https://app.example.com/cb?state=a", "'state'"),
    ],
)
def test_cli_oauth_client_create_refuses_unsafe_redirect_uris(
    settings_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    uri: str,
    reason: str,
) -> None:
    status, out, err = _run(
        capsys, "oauth-client", "create", "--name", "x", "--redirect-uri", uri
    )
    assert status == 2 and out == {}
    assert "redirect URI" in err and reason in err
    with db.session_scope() as session:
        assert session.exec(select(OAuthClient)).first() is None


def test_http_loopback_redirect_uris_only_in_development(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for uri in ("http://127.0.0.1:8765/cb", "http://localhost/cb", "http://[::1]/cb"):
        assert validate_redirect_uri(uri) == uri
    monkeypatch.setenv("CODEQR_ENVIRONMENT", "production")
    reset_settings()
    with pytest.raises(ClientError, match="must use https"):
        validate_redirect_uri("http://127.0.0.1:8765/cb")
    assert validate_redirect_uri("https://app.example.com/cb")
    kept = "https://app.example.com/cb?tenant=acme"  # a query of its own is kept
    assert validate_redirect_uri(kept) == kept
