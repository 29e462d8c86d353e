"""Refresh tokens: rotation on every use, reuse detection, binding to the client,
expiry and revocation, and scope that can narrow but never widen."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlmodel import col, select

from server import db
from server.models import OAuthToken, utcnow
from server.security import token_hash
from tests.conftest import LiveServer
from tests.oauth.flow import (
    OAuthSetup,
    bearer_principal,
    create_oauth_client,
    exchange_code,
    issue_code,
    refresh_tokens,
)


def _tokens(live_server: LiveServer, setup: OAuthSetup) -> dict[str, Any]:
    code, verifier = issue_code(live_server.url, setup)
    with live_server.client() as http:
        response = exchange_code(http, setup, code, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _assert_invalid_grant(response: httpx.Response, why: str = "") -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"
    assert why in response.json().get("error_description", "")


def _set_on_refresh_row(refresh_token: str, **values: Any) -> None:
    with db.session_scope() as session:
        session.exec(
            update(OAuthToken)
            .where(col(OAuthToken.refresh_token_hash) == token_hash(refresh_token))
            .values(**values)
        )


def test_refresh_rotates_the_refresh_token_on_every_use(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    first = _tokens(live_server, stripe_app)
    with live_server.client() as http:
        second = refresh_tokens(http, stripe_app, first["refresh_token"])
        assert second.status_code == 200, second.text
        assert second.headers["cache-control"] == "no-store"
        body = second.json()
        assert body["refresh_token"] != first["refresh_token"]
        assert body["access_token"] != first["access_token"]
        assert body["expires_in"] == 3600

        old_again = refresh_tokens(http, stripe_app, first["refresh_token"])
    _assert_invalid_grant(old_again)


def test_refresh_reuse_of_a_rotated_token_revokes_the_whole_family(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    r1 = _tokens(live_server, stripe_app)
    with live_server.client() as http:
        r2 = refresh_tokens(http, stripe_app, r1["refresh_token"]).json()
        assert bearer_principal(r2["access_token"]) is not None

        _assert_invalid_grant(
            refresh_tokens(http, stripe_app, r1["refresh_token"]), "already used once"
        )
        _assert_invalid_grant(
            refresh_tokens(http, stripe_app, r2["refresh_token"]), "was revoked"
        )
    assert bearer_principal(r2["access_token"]) is None
    assert bearer_principal(r1["access_token"]) is None


def test_refresh_reuse_two_generations_back_is_refused_too(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    r1 = _tokens(live_server, stripe_app)
    with live_server.client() as http:
        r2 = refresh_tokens(http, stripe_app, r1["refresh_token"]).json()
        r3 = refresh_tokens(http, stripe_app, r2["refresh_token"]).json()
        _assert_invalid_grant(refresh_tokens(http, stripe_app, r1["refresh_token"]))
        _assert_invalid_grant(refresh_tokens(http, stripe_app, r3["refresh_token"]))
    assert bearer_principal(r3["access_token"]) is None


def test_refresh_keeps_the_workspace_and_user_of_the_grant(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    first = _tokens(live_server, stripe_app)
    with live_server.client() as http:
        second = refresh_tokens(http, stripe_app, first["refresh_token"]).json()
    principal = bearer_principal(second["access_token"])
    assert principal.workspace_id == stripe_app.workspace_id
    assert principal.user_id == stripe_app.user_id
    with db.session_scope() as session:
        rows = session.exec(select(OAuthToken)).all()
    assert len({row.family_id for row in rows}) == 1


def test_refresh_expired_token_is_invalid_grant(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    first = _tokens(live_server, stripe_app)
    _set_on_refresh_row(
        first["refresh_token"], refresh_expires_at=utcnow() - timedelta(seconds=1)
    )
    with live_server.client() as http:
        _assert_invalid_grant(
            refresh_tokens(http, stripe_app, first["refresh_token"]),
            "expired unused",
        )


def test_refresh_revoked_token_is_invalid_grant(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    first = _tokens(live_server, stripe_app)
    _set_on_refresh_row(first["refresh_token"], revoked_at=utcnow())
    with live_server.client() as http:
        _assert_invalid_grant(refresh_tokens(http, stripe_app, first["refresh_token"]))


def test_refresh_token_of_another_client_is_invalid_grant_and_stays_valid(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    first = _tokens(live_server, stripe_app)
    other_id, _ = create_oauth_client()
    other = OAuthSetup(**{**stripe_app.__dict__, "client_id": other_id})
    with live_server.client() as http:
        _assert_invalid_grant(
            refresh_tokens(http, other, first["refresh_token"]),
            "unknown, or was issued to another client",
        )
        own = refresh_tokens(http, stripe_app, first["refresh_token"])
    assert own.status_code == 200, own.text


def test_refresh_can_narrow_the_scope(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    first = _tokens(live_server, stripe_app)
    with live_server.client() as http:
        narrow = refresh_tokens(
            http, stripe_app, first["refresh_token"], scope="conversions:read"
        )
    assert narrow.status_code == 200, narrow.text
    assert narrow.json()["scope"] == "conversions:read"
    assert bearer_principal(narrow.json()["access_token"]).scopes == {
        "conversions:read"
    }


def test_refresh_cannot_widen_the_scope_and_does_not_burn_the_token(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app, scope="conversions:read")
    with live_server.client() as http:
        first = exchange_code(http, stripe_app, code, verifier).json()
        wider = refresh_tokens(
            http,
            stripe_app,
            first["refresh_token"],
            scope="conversions:read conversions:write",
        )
        assert wider.status_code == 400
        assert wider.json()["error"] == "invalid_scope"
        same = refresh_tokens(http, stripe_app, first["refresh_token"])
    assert same.status_code == 200, same.text
    assert same.json()["scope"] == "conversions:read"
    assert bearer_principal(first["access_token"]) is not None


def test_refresh_after_the_user_left_the_workspace_is_invalid_grant(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    from server.models import Membership

    first = _tokens(live_server, stripe_app)
    with db.session_scope() as session:
        membership = session.exec(
            select(Membership).where(Membership.user_id == stripe_app.user_id)
        ).one()
        session.delete(membership)
    with live_server.client() as http:
        _assert_invalid_grant(refresh_tokens(http, stripe_app, first["refresh_token"]))
    assert bearer_principal(first["access_token"]) is None


def test_access_token_expires_after_its_lifetime(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    first = _tokens(live_server, stripe_app)
    assert bearer_principal(first["access_token"]) is not None
    with db.session_scope() as session:
        session.exec(
            update(OAuthToken).values(access_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert bearer_principal(first["access_token"]) is None
