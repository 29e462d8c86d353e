"""Login and logout pages, the session cookie, CSRF and the login rate limit."""

from __future__ import annotations

import pytest
from sqlmodel import select
from starlette.responses import Response

from oauth import sessions
from oauth.ratelimit import ACCOUNT_LIMIT, ADDRESS_LIMIT, FailureWindow
from oauth.routes import LOGIN_BLOCKED, LOGIN_FAILED
from server import db
from server.models import User
from server.settings import reset_settings
from tests.conftest import LiveServer
from tests.oauth.flow import (
    Browser,
    OAuthSetup,
    authorize_query,
    create_member,
    csrf_of,
    pkce_pair,
)


def _login_form(browser: Browser) -> dict[str, str]:
    page = browser.http.get("/login")
    assert page.status_code == 200
    return {"csrf_token": csrf_of(page.text), "next": ""}


def test_login_success_sets_an_httponly_samesite_lax_session_cookie(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    with Browser(live_server.url) as browser:
        answer = browser.login(stripe_app.email, stripe_app.password)
        cookie = answer.headers["set-cookie"]
        page = browser.http.get("/login")
    assert answer.status_code == 303
    assert cookie.startswith(sessions.COOKIE_NAME + "=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # local development over http
    assert f"Signed in as <strong>{stripe_app.email}</strong>" in page.text


def test_session_cookie_is_secure_outside_development(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEQR_ENVIRONMENT", "production")
    reset_settings()
    response = Response()
    sessions.write(response, sessions.anonymous())
    cookie = response.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()


@pytest.mark.parametrize(
    "email_and_password",
    [
        ("nobody@example.com", "whatever-password"),
        ("{email}", "wrong-password"),
        ("{email}", ""),
        ("", ""),
    ],
    ids=["unknown-email", "wrong-password", "no-password", "nothing"],
)
def test_login_failure_says_the_same_thing_whatever_was_wrong(
    live_server: LiveServer,
    stripe_app: OAuthSetup,
    email_and_password: tuple[str, str],
) -> None:
    email, password = email_and_password
    with Browser(live_server.url) as browser:
        form = {
            **_login_form(browser),
            "email": email.replace("{email}", stripe_app.email),
            "password": password,
        }
        answer = browser.http.post("/login", data=form)
    assert answer.status_code == 400
    assert LOGIN_FAILED in answer.text
    assert (
        "set-cookie" not in answer.headers or "uid" not in answer.headers["set-cookie"]
    )
    for revealing in ("unknown", "no such", "not found", "wrong password"):
        assert revealing not in answer.text.lower()


def test_login_without_or_with_a_foreign_csrf_token_is_forbidden(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    credentials = {"email": stripe_app.email, "password": stripe_app.password}
    with Browser(live_server.url) as other:
        foreign = _login_form(other)["csrf_token"]
    with Browser(live_server.url) as browser:
        _login_form(browser)
        missing = browser.http.post("/login", data=credentials)
        wrong = browser.http.post("/login", data={**credentials, "csrf_token": foreign})
    for answer in (missing, wrong):
        assert answer.status_code == 403
        assert "location" not in answer.headers


def test_login_is_blocked_per_account_after_repeated_failures(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    with Browser(live_server.url) as browser:
        form = _login_form(browser)
        for _ in range(ACCOUNT_LIMIT):
            wrong = {**form, "email": stripe_app.email, "password": "wrong-password"}
            assert browser.http.post("/login", data=wrong).status_code == 400
        right = {**form, "email": stripe_app.email, "password": stripe_app.password}
        blocked = browser.http.post("/login", data=right)
    assert blocked.status_code == 429
    assert LOGIN_BLOCKED in blocked.text
    assert "location" not in blocked.headers

    create_member("second@example.com", [stripe_app.workspace])
    with Browser(live_server.url) as browser:
        other = browser.login("second@example.com", stripe_app.password)
    assert other.status_code == 303  # the address is still below its own limit


def test_login_is_blocked_per_address_after_failures_on_many_accounts(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    with Browser(live_server.url) as browser:
        form = _login_form(browser)
        for n in range(ADDRESS_LIMIT):
            wrong = {**form, "email": f"guess{n}@example.com", "password": "guess-pass"}
            assert browser.http.post("/login", data=wrong).status_code == 400
        right = {**form, "email": stripe_app.email, "password": stripe_app.password}
        blocked = browser.http.post("/login", data=right)
    assert blocked.status_code == 429
    assert LOGIN_BLOCKED in blocked.text


def test_failure_window_forgets_old_failures_and_stays_bounded() -> None:
    now = [1000.0]
    window = FailureWindow(limit=2, window=60, max_keys=3, clock=lambda: now[0])
    window.record_failure("a")
    window.record_failure("a")
    assert window.is_blocked("a")
    now[0] += 61
    assert not window.is_blocked("a")

    for key in "bcdefg":
        window.record_failure(key)
    assert len(window) == 3
    assert not window.is_blocked("b")


def test_login_redirects_only_to_local_paths(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    targets = [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:x",
    ]
    for target in targets:
        with Browser(live_server.url) as browser:
            answer = browser.login(stripe_app.email, stripe_app.password, target)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login"


def test_logout_needs_the_csrf_token_and_ends_the_session(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    query = authorize_query(stripe_app, pkce_pair()[1])
    with Browser(live_server.url) as browser:
        browser.login(stripe_app.email, stripe_app.password)
        page = browser.http.get("/login")
        refused = browser.http.post("/logout", data={})
        assert refused.status_code == 403
        assert browser.http.get("/oauth/authorize", params=query).status_code == 200

        answer = browser.http.post("/logout", data={"csrf_token": csrf_of(page.text)})
        assert answer.status_code == 303
        assert sessions.COOKIE_NAME in answer.headers["set-cookie"]
        after = browser.http.get("/oauth/authorize", params=query)
    assert after.status_code == 303
    assert after.headers["location"].startswith("/login?next=")


def test_session_ends_when_the_password_changes(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    from oauth.users import hash_password

    query = authorize_query(stripe_app, pkce_pair()[1])
    with Browser(live_server.url) as browser:
        browser.login(stripe_app.email, stripe_app.password)
        assert browser.http.get("/oauth/authorize", params=query).status_code == 200
        with db.session_scope() as session:
            user = session.exec(
                select(User).where(User.email == stripe_app.email)
            ).one()
            user.password_hash = hash_password("a brand new password")
            session.add(user)
        after = browser.http.get("/oauth/authorize", params=query)
    assert after.status_code == 303


def test_tampered_session_cookie_is_ignored(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    query = authorize_query(stripe_app, pkce_pair()[1])
    with Browser(live_server.url) as browser:
        browser.login(stripe_app.email, stripe_app.password)
        value = browser.http.cookies[sessions.COOKIE_NAME]
        browser.http.cookies.set(sessions.COOKIE_NAME, value[:-2] + "xx")
        after = browser.http.get("/oauth/authorize", params=query)
    assert after.status_code == 303


def test_passwords_are_stored_as_argon2id_hashes(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    with db.session_scope() as session:
        user = session.exec(select(User).where(User.email == stripe_app.email)).one()
    assert user.password_hash.startswith("$argon2id$")
    assert stripe_app.password not in user.password_hash


def test_changing_the_password_revokes_the_users_oauth_tokens(
    live_server: LiveServer, stripe_app: OAuthSetup
) -> None:
    from oauth.users import change_password
    from tests.oauth.flow import bearer_principal, obtain_tokens

    tokens = obtain_tokens(live_server.url, stripe_app)
    assert bearer_principal(tokens["access_token"]) is not None
    with db.session_scope() as session:
        user = session.exec(select(User).where(User.email == stripe_app.email)).one()
        assert change_password(session, user, "a brand new password") == 1
    assert bearer_principal(tokens["access_token"]) is None
    with Browser(live_server.url) as browser:
        assert browser.login(stripe_app.email, stripe_app.password).status_code == 400
        assert (
            browser.login(stripe_app.email, "a brand new password").status_code == 303
        )


@pytest.mark.parametrize("path", ["/login", "/logout"])
def test_login_form_over_the_size_bounds_is_a_400_page(
    live_server: LiveServer, path: str
) -> None:
    """A form is read within 50 fields of 16 KiB (Starlette alone allows 1000 of 1 MB)."""
    with Browser(live_server.url) as browser:
        form = _login_form(browser)
        form["password"] = "x" * 20_000
        response = browser.http.post(path, data=form)

    assert response.status_code == 400
    assert "invalid_request" in response.text
    assert response.headers["x-frame-options"] == "DENY"
    assert sessions.COOKIE_NAME not in response.headers.get("set-cookie", "")
