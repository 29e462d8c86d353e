"""The whole flow through a real OAuth client library (Authlib's httpx OAuth2Client,
PKCE S256), a browser-like client for the HTML forms, and the GraphQL API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.oauth.flow import OAuthSetup, authorize_code, bearer_principal

WORKSPACE_QUERY = {"query": "{ workspace { slug plan } }"}


def _graphql(live_server: LiveServer, access_token: str) -> httpx.Response:
    with live_server.client() as http:
        return http.post(
            "/graphql",
            json=WORKSPACE_QUERY,
            headers={"Authorization": f"Bearer {access_token}"},
        )


@pytest.mark.parametrize("client", ["stripe_app", "web_client"])
def test_library_flow_login_consent_exchange_refresh_call_revoke(
    live_server: LiveServer, request: pytest.FixtureRequest, client: str
) -> None:
    setup: OAuthSetup = request.getfixturevalue(client)
    oauth, callback, verifier, state = authorize_code(live_server.url, setup)
    try:
        token: dict[str, Any] = oauth.fetch_token(
            f"{live_server.url}/oauth/token",
            authorization_response=callback,
            code_verifier=verifier,
            state=state,
        )
        assert token["token_type"] == "Bearer"
        answer = _graphql(live_server, token["access_token"])
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["workspace"]["slug"] == setup.workspace

        refreshed: dict[str, Any] = oauth.refresh_token(
            f"{live_server.url}/oauth/token", refresh_token=token["refresh_token"]
        )
        assert refreshed["refresh_token"] != token["refresh_token"]
        answer = _graphql(live_server, refreshed["access_token"])
        assert answer.json()["data"]["workspace"]["slug"] == setup.workspace

        revoked = oauth.revoke_token(
            f"{live_server.url}/oauth/revoke",
            token=refreshed["refresh_token"],
            token_type_hint="refresh_token",
        )
        assert revoked.status_code == 200
    finally:
        oauth.close()

    assert bearer_principal(refreshed["access_token"]) is None
    refused = _graphql(live_server, refreshed["access_token"])
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
