"""Revocation (RFC 7009): public and confidential clients, access and refresh tokens."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import LiveServer
from tests.oauth.flow import (
    OAuthSetup,
    bearer_principal,
    create_oauth_client,
    exchange_code,
    issue_code,
    refresh_tokens,
    revoke_token,
)


def _tokens(live_server: LiveServer, setup: OAuthSetup) -> dict[str, Any]:
    code, verifier = issue_code(live_server.url, setup)
    with live_server.client() as http:
        body: dict[str, Any] = exchange_code(http, setup, code, verifier).json()
    return body


def _assert_ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {}
    assert response.headers["cache-control"] == "no-store"


def test_revoke_unknown_token_answers_200(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    with live_server.client() as http:
        _assert_ok(revoke_token(http, stripe_app, "cqo_rt_no-such-token"))
        _assert_ok(revoke_token(http, stripe_app, "whatever"))


def test_revoke_refresh_token_by_public_client_revokes_its_access_tokens(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    first = _tokens(live_server, stripe_app)
    with live_server.client() as http:
        second = refresh_tokens(http, stripe_app, first["refresh_token"]).json()
        _assert_ok(
            revoke_token(
                http,
                stripe_app,
                second["refresh_token"],
                token_type_hint="refresh_token",
            )
        )
        again = refresh_tokens(http, stripe_app, second["refresh_token"])
        _assert_ok(revoke_token(http, stripe_app, second["refresh_token"]))
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert bearer_principal(second["access_token"]) is None
    assert bearer_principal(first["access_token"]) is None


def test_revoke_access_token_ends_only_that_access_token(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    first = _tokens(live_server, stripe_app)
    with live_server.client() as http:
        _assert_ok(revoke_token(http, stripe_app, first["access_token"]))
        refreshed = refresh_tokens(http, stripe_app, first["refresh_token"])
    assert bearer_principal(first["access_token"]) is None
    assert refreshed.status_code == 200, refreshed.text
    assert bearer_principal(refreshed.json()["access_token"]) is not None


def test_revoke_with_a_misleading_hint_still_revokes(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    first = _tokens(live_server, stripe_app)
    with live_server.client() as http:
        _assert_ok(
            revoke_token(
                http, stripe_app, first["access_token"], token_type_hint="refresh_token"
            )
        )
    assert bearer_principal(first["access_token"]) is None


def test_revoke_unsupported_token_type_hint_is_refused(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    first = _tokens(live_server, stripe_app)
    with live_server.client() as http:
        response = revoke_token(
            http, stripe_app, first["access_token"], token_type_hint="id_token"
        )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_token_type"
    assert "'access_token' or 'refresh_token'" in response.json()["error_description"]
    assert bearer_principal(first["access_token"]) is not None


def test_revoke_token_of_another_client_is_refused_and_kept(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    first = _tokens(live_server, stripe_app)
    other_id, _ = create_oauth_client()
    other = OAuthSetup(**{**stripe_app.__dict__, "client_id": other_id})
    with live_server.client() as http:
        response = revoke_token(http, other, first["access_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.json()["error_description"] == (
        "The token was issued to another client."
    )
    assert bearer_principal(first["access_token"]) is not None


def test_revoke_by_confidential_client_needs_its_secret(
    live_server: LiveServer, web_client: OAuthSetup
) -> None:
    first = _tokens(live_server, web_client)
    with live_server.client() as http:
        anonymous = http.post(
            "/oauth/revoke",
            data={"token": first["access_token"], "client_id": web_client.client_id},
        )
        wrong = http.post(
            "/oauth/revoke",
            data={"token": first["access_token"]},
            auth=(web_client.client_id, "wrong"),
        )
        assert anonymous.json()["error"] == "invalid_client"
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        assert bearer_principal(first["access_token"]) is not None

        _assert_ok(revoke_token(http, web_client, first["refresh_token"]))
    assert bearer_principal(first["access_token"]) is None


def test_revoke_without_token_is_invalid_request(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    with live_server.client() as http:
        response = http.post("/oauth/revoke", data={"client_id": stripe_app.client_id})
        empty = http.post(
            "/oauth/revoke", data={"token": "", "client_id": stripe_app.client_id}
        )
        as_json = http.post(
            "/oauth/revoke", json={"token": "x", "client_id": stripe_app.client_id}
        )
    for missing in (response, empty):
        assert missing.status_code == 400
        assert missing.json() == {
            "error": "invalid_request",
            "error_description": "Missing 'token': the token to revoke.",
        }
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"
