"""The token endpoint: code exchange, PKCE checks, client authentication, and its
request and error rules, over real HTTP."""

from __future__ import annotations

import base64
import threading
from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col, select

from oauth.principal import ALL_SCOPES
from server import db
from server.models import OAuthCode, OAuthToken, utcnow
from tests.conftest import LiveServer
from tests.oauth.flow import (
    OAuthSetup,
    bearer_principal,
    create_oauth_client,
    exchange_code,
    issue_code,
    refresh_tokens,
)

RFC6749_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
}


def _assert_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


# --- success --------------------------------------------------------------------------


def test_token_code_exchange_returns_a_bearer_pair_bound_to_the_workspace(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app)
    with live_server.client() as http:
        response = exchange_code(http, stripe_app, code, verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == " ".join(ALL_SCOPES)
    assert body["access_token"] != body["refresh_token"]

    principal = bearer_principal(body["access_token"])
    assert principal.kind == "oauth"
    assert principal.workspace_id == stripe_app.workspace_id
    assert principal.scopes == frozenset(ALL_SCOPES)
    assert principal.user_id == stripe_app.user_id
    remaining = (principal.expires_at - utcnow()).total_seconds()
    assert 3500 < remaining <= 3600


def test_token_scope_narrowed_at_authorize_is_the_tokens_scope(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app, scope="conversions:read")
    with live_server.client() as http:
        body = exchange_code(http, stripe_app, code, verifier).json()
    assert body["scope"] == "conversions:read"
    assert bearer_principal(body["access_token"]).scopes == {"conversions:read"}


# --- codes ----------------------------------------------------------------------------


def test_token_expired_code_is_invalid_grant(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app)
    with db.session_scope() as session:
        session.exec(
            update(OAuthCode).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with live_server.client() as http:
        response = exchange_code(http, stripe_app, code, verifier)
    _assert_error(response, 400, "invalid_grant")


def test_token_code_of_another_client_is_invalid_grant(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app)
    other_id, _ = create_oauth_client()
    other = OAuthSetup(**{**stripe_app.__dict__, "client_id": other_id})
    with live_server.client() as http:
        stolen = exchange_code(http, other, code, verifier)
        own = exchange_code(http, stripe_app, code, verifier)
    _assert_error(stolen, 400, "invalid_grant")
    assert own.status_code == 200  # the failed attempt did not burn the code


def test_token_redirect_uri_other_than_the_authorized_one_is_invalid_grant(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app)
    live_uri = stripe_app.redirect_uris[1]  # registered too, but not the one used
    with live_server.client() as http:
        other = exchange_code(http, stripe_app, code, verifier, redirect_uri=live_uri)
        missing = http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "client_id": stripe_app.client_id,
            },
        )
    _assert_error(other, 400, "invalid_grant")
    _assert_error(missing, 400, "invalid_grant")


def test_token_code_replay_is_refused_and_revokes_what_the_code_issued(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app)
    with live_server.client() as http:
        first = exchange_code(http, stripe_app, code, verifier).json()
        refreshed = refresh_tokens(http, stripe_app, first["refresh_token"]).json()
        replay = exchange_code(http, stripe_app, code, verifier)
        _assert_error(replay, 400, "invalid_grant")
        after = refresh_tokens(http, stripe_app, refreshed["refresh_token"])
    _assert_error(after, 400, "invalid_grant")
    assert bearer_principal(first["access_token"]) is None
    assert bearer_principal(refreshed["access_token"]) is None


def test_token_code_replay_with_a_wrong_verifier_revokes_nothing(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app)
    with live_server.client() as http:
        first = exchange_code(http, stripe_app, code, verifier).json()
        replay = exchange_code(http, stripe_app, code, "w" * 43)
    _assert_error(replay, 400, "invalid_grant")
    assert bearer_principal(first["access_token"]) is not None


def test_token_concurrent_redemptions_of_one_code_let_exactly_one_win(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app)
    barrier = threading.Barrier(4)
    results: list[httpx.Response] = []

    def redeem() -> None:
        with live_server.client() as http:
            barrier.wait()
            results.append(exchange_code(http, stripe_app, code, verifier))

    threads = [threading.Thread(target=redeem) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(r.status_code for r in results) == [200, 400, 400, 400]
    for response in results:
        if response.status_code == 400:
            assert response.json()["error"] == "invalid_grant"
    with db.session_scope() as session:
        pairs = session.exec(select(OAuthToken)).all()
    assert len(pairs) == 1


# --- PKCE -------------------------------------------------------------------------------


def test_token_wrong_verifier_is_invalid_grant(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, _ = issue_code(live_server.url, stripe_app)
    with live_server.client() as http:
        response = exchange_code(http, stripe_app, code, "v" * 43)
    _assert_error(response, 400, "invalid_grant")


@pytest.mark.parametrize("public", [True, False], ids=["public", "confidential"])
def test_token_missing_verifier_is_invalid_request(
    live_server: LiveServer,
    stripe_app: OAuthSetup,
    web_client: OAuthSetup,
    public: bool,
) -> None:
    setup = stripe_app if public else web_client
    code, _ = issue_code(live_server.url, setup)
    with live_server.client() as http:
        response = exchange_code(http, setup, code, None)
    _assert_error(response, 400, "invalid_request")


def _plant_code_without_challenge(setup: OAuthSetup, code: str) -> None:
    from server.security import token_hash

    with db.session_scope() as session:
        session.add(
            OAuthCode(
                code_hash=token_hash(code),
                client_id=setup.client_id,
                redirect_uri=setup.redirect_uri,
                scope=" ".join(ALL_SCOPES),
                user_id=setup.user_id,
                workspace_id=setup.workspace_id,
                code_challenge="",
                code_challenge_method="",
                expires_at=utcnow() + timedelta(seconds=60),
            )
        )


@pytest.mark.parametrize("verifier", ["v" * 43, None], ids=["verifier", "none"])
def test_token_code_issued_without_a_challenge_is_refused(
    live_server: LiveServer, web_client: OAuthSetup, verifier: str | None
) -> None:
    """Our /authorize never issues such a code; one planted in storage (an older
    version, a bug) is still never redeemed, with a verifier (the RFC 9700 §4.8
    downgrade) or without."""
    _plant_code_without_challenge(web_client, "planted-code-" + "x" * 40)
    with live_server.client() as http:
        response = exchange_code(http, web_client, "planted-code-" + "x" * 40, verifier)
    _assert_error(response, 400, "invalid_request")
    with db.session_scope() as session:
        assert session.exec(select(OAuthToken)).first() is None


# --- request shape ------------------------------------------------------------------------


def test_token_get_is_method_not_allowed(live_server: LiveServer) -> None:
    with live_server.client() as http:
        response = http.get(
            "/oauth/token", params={"grant_type": "authorization_code", "code": "x"}
        )
    assert response.status_code == 405


def test_token_json_body_is_invalid_request(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app)
    with live_server.client() as http:
        response = http.post(
            "/oauth/token",
            json={
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": stripe_app.redirect_uri,
                "client_id": stripe_app.client_id,
            },
        )
    _assert_error(response, 400, "invalid_request")


def test_token_multipart_body_is_invalid_request(live_server: LiveServer) -> None:
    with live_server.client() as http:
        response = http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token"},
            files={"refresh_token": ("t", b"x")},
        )
    _assert_error(response, 400, "invalid_request")


def test_token_parameters_in_the_query_string_are_invalid_request(
    live_server: LiveServer, web_client: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, web_client)
    with live_server.client() as http:
        response = http.post(
            "/oauth/token",
            params={"client_secret": web_client.client_secret},
            data={
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": web_client.redirect_uri,
                "client_id": web_client.client_id,
            },
        )
    _assert_error(response, 400, "invalid_request")


def test_token_repeated_parameter_is_invalid_request(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app)
    body = (
        f"grant_type=authorization_code&code={code}&code={code}"
        f"&code_verifier={verifier}&client_id={stripe_app.client_id}"
        f"&redirect_uri={quote(stripe_app.redirect_uri, safe='')}"
    )
    with live_server.client() as http:
        response = http.post(
            "/oauth/token",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    _assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("grant_type", ["password", "implicit", "client_credentials"])
def test_token_grants_other_than_code_and_refresh_are_unsupported(
    live_server: LiveServer, web_client: OAuthSetup, grant_type: str
) -> None:
    with live_server.client() as http:
        response = http.post(
            "/oauth/token",
            data={
                "grant_type": grant_type,
                "username": web_client.email,
                "password": web_client.password,
            },
            auth=(web_client.client_id, web_client.client_secret or ""),
        )
    _assert_error(response, 400, "unsupported_grant_type")


def test_token_missing_grant_type_is_invalid_request(live_server: LiveServer) -> None:
    with live_server.client() as http:
        response = http.post("/oauth/token", data={"code": "x"})
    _assert_error(response, 400, "invalid_request")


# --- client authentication ----------------------------------------------------------------


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _code_form(setup: OAuthSetup, code: str, verifier: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": setup.redirect_uri,
    }


@pytest.mark.parametrize("encoding", ["raw", "percent-encoded"])
def test_token_basic_client_authentication_accepts_secrets_with_plus_slash_equals(
    live_server: LiveServer, web_client: OAuthSetup, encoding: str
) -> None:
    secret = web_client.client_secret
    assert secret is not None and {"+", "/", "="} <= set(secret)
    sent = secret if encoding == "raw" else quote(secret, safe="")
    code, verifier = issue_code(live_server.url, web_client)
    with live_server.client() as http:
        response = http.post(
            "/oauth/token",
            data=_code_form(web_client, code, verifier),
            headers=_basic(quote(web_client.client_id, safe=""), sent),
        )
    assert response.status_code == 200, response.text


def test_token_client_secret_post_is_accepted(
    live_server: LiveServer, web_client: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, web_client)
    form = {
        **_code_form(web_client, code, verifier),
        "client_id": web_client.client_id,
        "client_secret": web_client.client_secret or "",
    }
    with live_server.client() as http:
        response = http.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text


def test_token_wrong_secret_by_basic_is_401_invalid_client_with_www_authenticate(
    live_server: LiveServer, web_client: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, web_client)
    with live_server.client() as http:
        response = http.post(
            "/oauth/token",
            data=_code_form(web_client, code, verifier),
            headers=_basic(web_client.client_id, "not-the-secret"),
        )
        still_good = http.post(
            "/oauth/token",
            data=_code_form(web_client, code, verifier),
            headers=_basic(web_client.client_id, web_client.client_secret or ""),
        )
    _assert_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")
    assert still_good.status_code == 200


def test_token_wrong_secret_by_post_is_invalid_client(
    live_server: LiveServer, web_client: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, web_client)
    form = {
        **_code_form(web_client, code, verifier),
        "client_id": web_client.client_id,
        "client_secret": "not-the-secret",
    }
    with live_server.client() as http:
        response = http.post("/oauth/token", data=form)
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_description"].startswith(
        "Client authentication failed: unknown client, wrong secret"
    )


def test_token_confidential_client_without_its_secret_is_invalid_client(
    live_server: LiveServer, web_client: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, web_client)
    form = {**_code_form(web_client, code, verifier), "client_id": web_client.client_id}
    with live_server.client() as http:
        response = http.post("/oauth/token", data=form)
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_description"].startswith(
        "Client authentication failed: unknown client, wrong secret"
    )


def test_token_basic_and_client_secret_together_is_invalid_request(
    live_server: LiveServer, web_client: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, web_client)
    secret = web_client.client_secret or ""
    form = {
        **_code_form(web_client, code, verifier),
        "client_id": web_client.client_id,
        "client_secret": secret,
    }
    with live_server.client() as http:
        response = http.post(
            "/oauth/token", data=form, headers=_basic(web_client.client_id, secret)
        )
    _assert_error(response, 400, "invalid_request")


def test_token_basic_with_another_client_id_in_the_body_is_invalid_request(
    live_server: LiveServer, web_client: OAuthSetup
) -> None:
    """Which client is asking must be unambiguous: Basic names one client, so a
    ``client_id`` naming another is refused rather than silently ignored."""
    stripe_client_id, _ = create_oauth_client()
    code, verifier = issue_code(live_server.url, web_client)
    secret = web_client.client_secret or ""
    form = {**_code_form(web_client, code, verifier), "client_id": stripe_client_id}
    with live_server.client() as http:
        response = http.post(
            "/oauth/token", data=form, headers=_basic(web_client.client_id, secret)
        )
        same = http.post(
            "/oauth/token",
            data={**form, "client_id": web_client.client_id},
            headers=_basic(web_client.client_id, secret),
        )
    _assert_error(response, 400, "invalid_request")
    assert same.status_code == 200, same.text


def test_token_unknown_client_is_invalid_client(live_server: LiveServer) -> None:
    with live_server.client() as http:
        response = http.post(
            "/oauth/token",
            data={"grant_type": "authorization_code", "code": "x", "client_id": "nope"},
        )
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"


# --- errors only from RFC 6749 §5.2 --------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"grant_type": "authorization_code"},
        {"grant_type": "authorization_code", "client_id": "{client}"},
        {"grant_type": "authorization_code", "client_id": "{client}", "code": "nope"},
        {"grant_type": "refresh_token", "client_id": "{client}"},
        {"grant_type": "refresh_token", "client_id": "{client}", "refresh_token": "x"},
        {"grant_type": "urn:ietf:params:oauth:grant-type:device_code"},
        {"grant_type": "authorization_code", "client_id": "{client}", "code": "é"},
    ],
)
def test_token_errors_come_only_from_rfc6749_section_5_2(
    live_server: LiveServer, stripe_app: OAuthSetup, form: dict[str, str]
) -> None:
    form = {k: v.replace("{client}", stripe_app.client_id) for k, v in form.items()}
    with live_server.client() as http:
        response = http.post("/oauth/token", data=form)
    assert response.status_code in (400, 401)
    body = response.json()
    assert body["error"] in RFC6749_ERRORS
    assert body.get("error_description", "").isascii()
    assert response.headers["cache-control"] == "no-store"


# --- CORS --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke"])
@pytest.mark.parametrize("origin", ["https://dashboard.stripe.com", "null"])
def test_token_and_revoke_allow_cors_for_the_stripe_dashboard(
    live_server: LiveServer, path: str, origin: str
) -> None:
    with live_server.client() as http:
        preflight = http.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        post = http.post(path, data={"grant_type": "x"}, headers={"Origin": origin})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    assert post.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke"])
def test_token_and_revoke_refuse_cors_for_other_origins(
    live_server: LiveServer, path: str
) -> None:
    origin = {"Origin": "https://evil.example"}
    with live_server.client() as http:
        preflight = http.options(
            path, headers={**origin, "Access-Control-Request-Method": "POST"}
        )
        post = http.post(path, data={"grant_type": "x"}, headers=origin)
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in post.headers


def test_token_pairs_are_one_row_per_exchange(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    code, verifier = issue_code(live_server.url, stripe_app)
    with live_server.client() as http:
        exchange_code(http, stripe_app, code, verifier)
    with db.session_scope() as session:
        rows = session.exec(
            select(OAuthToken).where(col(OAuthToken.code_id).is_not(None))
        ).all()
    assert len(rows) == 1
    assert rows[0].workspace_id == stripe_app.workspace_id


@pytest.mark.parametrize(
    "body",
    [
        "grant_type=gr%22ant%C3%A9",
        "grant_type=refresh_token&%C3%A9=1&%C3%A9=2",
        "grant_type=refresh_token&we%22ird=1&we%22ird=2",
    ],
    ids=["hostile-grant-type", "non-ascii-repeat", "quote-repeat"],
)
def test_token_hostile_values_get_a_clean_ascii_error(
    live_server: LiveServer, body: str
) -> None:
    with live_server.client() as http:
        response = http.post(
            "/oauth/token",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] in RFC6749_ERRORS
    assert payload["error_description"].isascii()


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke"])
@pytest.mark.parametrize(
    "body",
    [b"grant_type=refresh_token&refresh_token=" + b"a" * 100_000, b"a=1&" * 2000],
    ids=["long-field", "many-fields"],
)
def test_token_oversized_form_is_a_json_invalid_request(
    live_server: LiveServer, path: str, body: bytes
) -> None:
    with live_server.client() as http:
        response = http.post(
            path,
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    _assert_error(response, 400, "invalid_request")
    assert response.json()["error_description"].isascii()


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke"])
@pytest.mark.parametrize(
    "credentials",
    [base64.b64encode(b"\xff\xfe:secret").decode(), "%%%not-base64", "YWJj"],
    ids=["not-utf8", "not-base64", "no-colon"],
)
def test_token_malformed_basic_credentials_are_401_invalid_client(
    live_server: LiveServer, path: str, credentials: str
) -> None:
    with live_server.client() as http:
        response = http.post(
            path,
            data={"grant_type": "refresh_token", "refresh_token": "x", "token": "x"},
            headers={"Authorization": f"Basic {credentials}"},
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
