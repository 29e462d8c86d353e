"""RFC 8414 authorization server metadata."""

from __future__ import annotations

from authlib.oauth2 import rfc9207
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from tests.conftest import LiveServer


def test_metadata_describes_the_server_and_validates(live_server: LiveServer) -> None:
    with live_server.client() as http:
        response = http.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    body = response.json()
    issuer = live_server.url
    assert body["issuer"] == issuer
    assert body["authorization_endpoint"] == f"{issuer}/oauth/authorize"
    assert body["token_endpoint"] == f"{issuer}/oauth/token"
    assert body["revocation_endpoint"] == f"{issuer}/oauth/revoke"
    assert body["response_types_supported"] == ["code"]
    assert body["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert set(body["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }
    assert body["scopes_supported"] == ["conversions:read", "conversions:write"]
    assert body["authorization_response_iss_parameter_supported"] is True

    AuthorizationServerMetadata(body).validate(
        metadata_classes=[rfc9207.AuthorizationServerMetadata]
    )
