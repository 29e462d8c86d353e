"""The authorization endpoint and the consent page, over real HTTP (uvicorn on loopback)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select

from server import db
from server.models import OAuthCode
from tests.conftest import LiveServer
from tests.oauth.flow import (
    STRIPE_LIVE_REDIRECT,
    STRIPE_TEST_REDIRECT,
    Browser,
    OAuthSetup,
    authorize_query,
    create_member,
    create_oauth_client,
    csrf_of,
    ensure_workspace,
    logged_in_browser,
    pkce_pair,
)


def _code_count() -> int:
    with db.session_scope() as session:
        return int(session.exec(select(func.count()).select_from(OAuthCode)).one())


def _redirect_params(response: httpx.Response) -> dict[str, list[str]]:
    location = response.headers["location"]
    return parse_qs(urlsplit(location).query)


def _assert_error_page(
    response: httpx.Response, error: str = "invalid_request"
) -> None:
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert error in response.text


def _open(
    live_server: LiveServer, stripe_app: OAuthSetup, **kwargs: object
) -> tuple[Browser, httpx.Response]:
    """A logged-in browser and its GET of an authorize URL built from ``kwargs``."""
    _, challenge = pkce_pair()
    browser = logged_in_browser(live_server.url, stripe_app)
    query = authorize_query(stripe_app, challenge, **kwargs)  # type: ignore[arg-type]
    return browser, browser.http.get("/oauth/authorize", params=query)


# --- client and redirect URI ------------------------------------------------------------


def test_authorize_unknown_client_gets_error_page_never_redirect(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    browser, response = _open(live_server, stripe_app, client_id="cqc_no_such_client")
    with browser:
        _assert_error_page(response)
        assert "not registered" in response.text


def test_authorize_missing_client_id_gets_error_page(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    browser, response = _open(live_server, stripe_app, omit=["client_id"])
    with browser:
        _assert_error_page(response)


@pytest.mark.parametrize(
    "variant",
    [
        STRIPE_TEST_REDIRECT + "/",  # trailing slash
        STRIPE_TEST_REDIRECT.replace("apps-oauth", "Apps-Oauth"),  # case of the path
        STRIPE_TEST_REDIRECT.replace("dashboard", "DASHBOARD"),  # case of the host
        STRIPE_TEST_REDIRECT + "?x=1",  # extra query
        STRIPE_TEST_REDIRECT + "#frag",  # fragment
        STRIPE_TEST_REDIRECT + "/extra",  # extra path
        STRIPE_TEST_REDIRECT.replace("https://", "http://"),  # other scheme
        STRIPE_TEST_REDIRECT.replace("dashboard.stripe.com", "evil.example"),  # host
        STRIPE_TEST_REDIRECT.replace(".com/", ".com:8443/"),  # port
    ],
)
def test_authorize_redirect_uri_not_registered_exactly_gets_error_page(
    live_server: LiveServer, stripe_app: OAuthSetup, variant: str
) -> None:
    browser, response = _open(live_server, stripe_app, redirect_uri=variant)
    with browser:
        _assert_error_page(response)
        assert _code_count() == 0


def test_authorize_without_redirect_uri_when_several_registered_gets_error_page(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    assert len(stripe_app.redirect_uris) == 2
    browser, response = _open(live_server, stripe_app, omit=["redirect_uri"])
    with browser:
        _assert_error_page(response)


def test_authorize_without_redirect_uri_uses_the_only_registered_one(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    client_id, _ = create_oauth_client(redirect_uris=[STRIPE_LIVE_REDIRECT])
    stripe_app.client_id = client_id
    browser, consent = _open(live_server, stripe_app, omit=["redirect_uri"])
    with browser:
        assert consent.status_code == 200
        answer = browser.decide(consent, "allow", stripe_app.workspace)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(STRIPE_LIVE_REDIRECT + "?code=")


def test_authorize_bad_redirect_uri_wins_over_other_errors(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    """Even an unsupported response type is never sent to an unregistered URI."""
    browser, response = _open(
        live_server,
        stripe_app,
        response_type="token",
        redirect_uri="https://evil.example/cb",
    )
    with browser:
        _assert_error_page(response)
        assert "redirect address" in response.text


# --- request validation after the redirect URI ---------------------------------------


def test_authorize_response_type_token_redirects_unsupported_response_type(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    browser, response = _open(live_server, stripe_app, response_type="token")
    with browser:
        assert response.status_code == 302
        assert response.headers["location"].startswith(STRIPE_TEST_REDIRECT + "?")
        params = _redirect_params(response)
        assert params["error"] == ["unsupported_response_type"]
        assert params["state"] == ["state-123"]
        assert params["iss"] == [live_server.url]
        assert "code" not in params


def test_authorize_without_code_challenge_redirects_invalid_request_and_stores_no_code(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    browser, response = _open(
        live_server, stripe_app, omit=["code_challenge", "code_challenge_method"]
    )
    with browser:
        params = _redirect_params(response)
        assert params["error"] == ["invalid_request"]
        assert params["state"] == ["state-123"]
        assert params["iss"] == [live_server.url]
        assert "code_challenge" in params["error_description"][0]
        assert _code_count() == 0


def test_authorize_consent_post_without_code_challenge_issues_no_code(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    """Even a forged consent POST (with a valid CSRF token) cannot skip PKCE."""
    _, challenge = pkce_pair()
    with logged_in_browser(live_server.url, stripe_app) as browser:
        good = authorize_query(stripe_app, challenge)
        consent = browser.http.get("/oauth/authorize", params=good)
        bad = authorize_query(
            stripe_app, None, omit=["code_challenge", "code_challenge_method"]
        )
        answer = browser.http.post(
            "/oauth/authorize",
            params=bad,
            data={
                "csrf_token": csrf_of(consent.text),
                "decision": "allow",
                "workspace": stripe_app.workspace,
            },
        )
        assert answer.status_code == 303
        assert _redirect_params(answer)["error"] == ["invalid_request"]
        assert _code_count() == 0


@pytest.mark.parametrize(
    ("query_overrides", "form_extra", "error"),
    [
        ({"response_type": "token"}, [], "unsupported_response_type"),
        ({"omit": ["response_type"]}, [], "invalid_request"),
        ({}, [("decision", "allow")], "invalid_request"),  # decision sent twice
    ],
    ids=["response-type-token", "no-response-type", "repeated-decision"],
)
def test_every_redirect_answering_the_consent_post_is_a_303(
    live_server: LiveServer,
    stripe_app: OAuthSetup,
    query_overrides: dict[str, object],
    form_extra: list[tuple[str, str]],
    error: str,
) -> None:
    """Errors found before Authlib reads the request are redirected with 303 too, never
    a 302 that a browser may answer by POSTing the form again (RFC 9700 §4.12)."""
    _, challenge = pkce_pair()
    with logged_in_browser(live_server.url, stripe_app) as browser:
        consent = browser.http.get(
            "/oauth/authorize", params=authorize_query(stripe_app, challenge)
        )
        query = authorize_query(stripe_app, challenge, **query_overrides)  # type: ignore[arg-type]
        form = [
            ("csrf_token", csrf_of(consent.text)),
            ("decision", "deny"),
            ("workspace", stripe_app.workspace),
            *form_extra,
        ]
        answer = browser.http.post(
            "/oauth/authorize",
            params=query,
            content=urlencode(form),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 303
    params = _redirect_params(answer)
    assert params["error"] == [error]
    assert params["iss"] == [live_server.url]
    assert _code_count() == 0


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"code_challenge_method": "plain"}, "must be 'S256'"),
        ({"code_challenge_method": "s256"}, "must be 'S256' (upper case)"),
        ({"code_challenge_method": "S512"}, "must be 'S256'"),
        # absent means plain (RFC 7636 §4.3)
        ({"omit": ["code_challenge_method"]}, "Missing 'code_challenge_method'"),
        ({"code_challenge": "too-short"}, "43 to 128 characters"),
        ({"code_challenge": "x" * 42 + "!"}, "43 to 128 characters"),
    ],
    ids=[
        "plain",
        "lower-case",
        "unknown-method",
        "no-method",
        "short",
        "bad-characters",
    ],
)
def test_authorize_challenge_that_is_not_s256_redirects_invalid_request(
    live_server: LiveServer,
    stripe_app: OAuthSetup,
    overrides: dict[str, object],
    why: str,
) -> None:
    browser, response = _open(live_server, stripe_app, **overrides)
    with browser:
        assert response.status_code == 302
        params = _redirect_params(response)
        assert params["error"] == ["invalid_request"]
        assert params["state"] == ["state-123"]
        assert why in params["error_description"][0]
        assert _code_count() == 0


@pytest.mark.parametrize("name", ["code_challenge", "scope", "response_type"])
def test_authorize_repeated_parameter_redirects_invalid_request(
    live_server: LiveServer, stripe_app: OAuthSetup, name: str
) -> None:
    value = dict(authorize_query(stripe_app, pkce_pair()[1]))[name]
    browser, response = _open(live_server, stripe_app, extra=[(name, value)])
    with browser:
        assert response.status_code == 302
        params = _redirect_params(response)
        assert params["error"] == ["invalid_request"]
        assert params["state"] == ["state-123"]
        assert name in params["error_description"][0]


@pytest.mark.parametrize("name", ["state", "client_id", "redirect_uri"])
def test_authorize_repeated_client_redirect_or_state_gets_error_page(
    live_server: LiveServer, stripe_app: OAuthSetup, name: str
) -> None:
    """No single value to trust: which client, which URI, which state to echo."""
    value = dict(authorize_query(stripe_app, pkce_pair()[1]))[name]
    browser, response = _open(live_server, stripe_app, extra=[(name, value)])
    with browser:
        _assert_error_page(response)


@pytest.mark.parametrize("scope", ["conversions:admin", "conversions:read openid"])
def test_authorize_unknown_scope_redirects_invalid_scope_with_state(
    live_server: LiveServer, stripe_app: OAuthSetup, scope: str
) -> None:
    browser, response = _open(live_server, stripe_app, scope=scope)
    with browser:
        params = _redirect_params(response)
        assert params["error"] == ["invalid_scope"]
        assert params["state"] == ["state-123"]


def test_authorize_scope_outside_the_clients_scopes_redirects_invalid_scope(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    client_id, _ = create_oauth_client(scopes=["conversions:read"])
    stripe_app.client_id = client_id
    browser, response = _open(live_server, stripe_app, scope="conversions:write")
    with browser:
        assert _redirect_params(response)["error"] == ["invalid_scope"]


# --- login and the consent page --------------------------------------------------------


def test_authorize_sends_an_anonymous_visitor_to_login_and_back(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    query = authorize_query(stripe_app, pkce_pair()[1])
    with Browser(live_server.url) as browser:
        first = browser.http.get("/oauth/authorize", params=query)
        assert first.status_code == 303
        login_url = urlsplit(first.headers["location"])
        assert login_url.path == "/login"
        next_path = parse_qs(login_url.query)["next"][0]
        assert next_path.startswith("/oauth/authorize?")

        answer = browser.login(stripe_app.email, stripe_app.password, next_path)
        assert answer.status_code == 303
        assert answer.headers["location"] == next_path
        consent = browser.http.get(answer.headers["location"])
        assert consent.status_code == 200
        assert "Allow" in consent.text


def test_authorize_get_never_grants(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    browser, consent = _open(live_server, stripe_app)
    with browser:
        assert consent.status_code == 200
        assert "location" not in consent.headers
        assert "code=" not in consent.text
        assert _code_count() == 0


def test_consent_page_shows_client_scopes_in_words_and_only_the_users_workspaces(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    ensure_workspace("second", plan="enterprise")
    ensure_workspace("foreign", plan="business")
    create_member("other@example.com", ["foreign"])
    with db.session_scope() as session:
        from oauth.users import add_membership
        from server.models import User, Workspace

        user = session.get(User, stripe_app.user_id)
        second = session.exec(select(Workspace).where(Workspace.slug == "second")).one()
        assert user is not None
        add_membership(session, user, second, "member")

    browser, consent = _open(live_server, stripe_app)
    with browser:
        page = consent.text
    assert "CodeQR for Stripe" in page
    assert "See the workspace&#39;s conversion data" in page
    assert "Record leads and sales" in page
    assert 'value="acme"' in page
    assert 'value="second"' in page
    assert 'value="foreign"' not in page


def test_consent_for_the_stripe_app_offers_only_business_plan_workspaces(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    ensure_workspace("hobby", plan="pro")
    with db.session_scope() as session:
        from oauth.users import add_membership
        from server.models import User, Workspace

        user = session.get(User, stripe_app.user_id)
        hobby = session.exec(select(Workspace).where(Workspace.slug == "hobby")).one()
        assert user is not None
        add_membership(session, user, hobby, "owner")

    browser, consent = _open(live_server, stripe_app)
    with browser:
        assert 'value="acme"' in consent.text
        assert 'value="hobby"' not in consent.text
        answer = browser.decide(consent, "allow", "hobby")
        assert answer.status_code == 400
        assert "location" not in answer.headers
        assert _code_count() == 0


def test_consent_with_a_workspace_of_someone_else_is_refused(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    ensure_workspace("foreign", plan="business")
    create_member("other@example.com", ["foreign"])
    browser, consent = _open(live_server, stripe_app)
    with browser:
        answer = browser.decide(consent, "allow", "foreign")
        assert answer.status_code == 400
        assert "location" not in answer.headers
        assert _code_count() == 0


def test_consent_post_without_or_with_a_foreign_csrf_token_is_forbidden(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    create_member("other@example.com", [stripe_app.workspace])
    with logged_in_browser(live_server.url, stripe_app) as other:
        other_page = other.http.get(
            "/oauth/authorize", params=authorize_query(stripe_app, pkce_pair()[1])
        )
        foreign_token = csrf_of(other_page.text)

    query = authorize_query(stripe_app, pkce_pair()[1])
    with logged_in_browser(live_server.url, stripe_app) as browser:
        browser.http.get("/oauth/authorize", params=query)
        form = {"decision": "allow", "workspace": stripe_app.workspace}
        missing = browser.http.post("/oauth/authorize", params=query, data=form)
        foreign = browser.http.post(
            "/oauth/authorize", params=query, data={**form, "csrf_token": foreign_token}
        )
    for answer in (missing, foreign):
        assert answer.status_code == 403
        assert "location" not in answer.headers
    assert _code_count() == 0


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"decision": "allow"}', "application/json"),
        (b"--x--\r\n", "multipart/form-data; boundary=x"),
        (b"decision=allow", "text/plain"),
    ],
)
def test_consent_post_that_is_not_a_form_is_400_saying_so(
    live_server: LiveServer, stripe_app: OAuthSetup, body: bytes, content_type: str
) -> None:
    browser, _ = _open(live_server, stripe_app)
    with browser:
        answer = browser.http.post(
            "/oauth/authorize",
            params=authorize_query(stripe_app, pkce_pair()[1]),
            content=body,
            headers={"content-type": content_type},
        )
    assert answer.status_code == 400
    assert "application/x-www-form-urlencoded" in answer.text
    assert "location" not in answer.headers
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert _code_count() == 0


def test_consent_post_without_a_session_is_forbidden(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    browser, consent = _open(live_server, stripe_app)
    token = csrf_of(consent.text)
    browser.close()
    query = authorize_query(stripe_app, pkce_pair()[1])
    with httpx.Client(base_url=live_server.url) as anonymous:
        answer = anonymous.post(
            "/oauth/authorize",
            params=query,
            data={"csrf_token": token, "decision": "allow", "workspace": "acme"},
        )
    assert answer.status_code == 403
    assert _code_count() == 0


def test_consent_deny_redirects_access_denied_with_state_as_303(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    browser, consent = _open(live_server, stripe_app)
    with browser:
        answer = browser.decide(consent, "deny")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(STRIPE_TEST_REDIRECT + "?")
    params = _redirect_params(answer)
    assert params["error"] == ["access_denied"]
    assert params["state"] == ["state-123"]
    assert params["iss"] == [live_server.url]
    assert _code_count() == 0


def test_consent_allow_redirects_with_code_and_state_as_303(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    browser, consent = _open(live_server, stripe_app)
    with browser:
        answer = browser.decide(consent, "allow", stripe_app.workspace)
    assert answer.status_code == 303
    params = _redirect_params(answer)
    assert len(params["code"][0]) >= 43
    assert params["state"] == ["state-123"]
    assert params["iss"] == [live_server.url]
    assert answer.headers["referrer-policy"] == "no-referrer"
    with db.session_scope() as session:
        code = session.exec(select(OAuthCode)).one()
    assert code.workspace_id == stripe_app.workspace_id
    assert code.user_id == stripe_app.user_id
    assert code.client_id == stripe_app.client_id
    assert code.redirect_uri == STRIPE_TEST_REDIRECT
    assert code.code_challenge_method == "S256"
    assert (code.expires_at - code.created_at).total_seconds() <= 60


# --- headers -----------------------------------------------------------------------------


def _assert_anti_framing(response: httpx.Response) -> None:
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "default-src 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_consent_login_and_error_pages_cannot_be_framed_or_leak_referrers(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    browser, consent = _open(live_server, stripe_app)
    with browser:
        error = browser.http.get("/oauth/authorize", params={"client_id": "nope"})
        redirect = browser.http.get(
            "/oauth/authorize",
            params=authorize_query(stripe_app, None, response_type="token"),
        )
    with Browser(live_server.url) as anonymous:
        login = anonymous.http.get("/login")
        to_login = anonymous.http.get(
            "/oauth/authorize", params=authorize_query(stripe_app, pkce_pair()[1])
        )
    for response in (consent, error, redirect, login, to_login):
        _assert_anti_framing(response)
    assert "https://dashboard.stripe.com" in consent.headers["content-security-policy"]
    assert "<script" not in consent.text and "<link" not in consent.text
    assert "<script" not in login.text and "<link" not in login.text


def test_authorize_answers_no_cors(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    origin = {"Origin": "https://dashboard.stripe.com"}
    with live_server.client() as http:
        preflight = http.options(
            "/oauth/authorize",
            headers={**origin, "Access-Control-Request-Method": "POST"},
        )
        get = http.get(
            "/oauth/authorize",
            params=authorize_query(stripe_app, pkce_pair()[1]),
            headers=origin,
        )
    for response in (preflight, get):
        assert "access-control-allow-origin" not in response.headers


def test_authorize_missing_response_type_redirects_invalid_request(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    browser, response = _open(live_server, stripe_app, omit=["response_type"])
    with browser:
        assert response.status_code == 302
        params = _redirect_params(response)
        assert params["error"] == ["invalid_request"]
        assert params["state"] == ["state-123"]


def test_plain_http_from_a_non_loopback_host_is_refused_not_crashed(
    settings_env: dict[str, str],
) -> None:
    """Behind a proxy that does not forward the scheme, Authlib sees http: the answer
    is a clear 400, never a 500 (and never an insecure exchange)."""
    import asyncio

    from server.app import create_app

    async def call() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(
            transport=transport, base_url="http://codeqr.example"
        ) as http:
            page = await http.get("/oauth/authorize", params={"client_id": "x"})
            token = await http.post("/oauth/token", data={"grant_type": "x"})
        return page, token

    page, token = asyncio.run(call())
    assert page.status_code == 400
    assert "https" in page.text
    assert token.status_code == 400
    assert token.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "extra",
    [
        {"response_type": 'to"ken'},
        {"response_type": "jeton-\u00e9"},
        {"extra": [('we"ird', "1"), ('we"ird', "2")]},
        {"extra": [("\u00e9", "1"), ("\u00e9", "2")]},
        {"scope": 'conversions:read "x"'},
    ],
    ids=["quote-type", "non-ascii-type", "quote-name", "non-ascii-name", "quote-scope"],
)
def test_authorize_hostile_values_get_a_clean_ascii_error(
    live_server: LiveServer, stripe_app: OAuthSetup, extra: dict[str, object]
) -> None:
    browser, response = _open(live_server, stripe_app, **extra)
    with browser:
        assert response.status_code == 302, response.text
        params = _redirect_params(response)
        assert params["error"][0] in {
            "invalid_request",
            "unsupported_response_type",
            "invalid_scope",
        }
        assert params["state"] == ["state-123"]
        assert all(v.isascii() for v in params.get("error_description", []))
