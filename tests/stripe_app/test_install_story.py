"""The whole install story over real HTTP against uvicorn on loopback, the way a
merchant and the Stripe Dashboard go through it:

the operator sets CodeQR up with the ``codeqr`` command; the app's settings view signs
the user in with a real OAuth client library (Authlib, PKCE S256), the user logs in and
picks a Business workspace on the consent page; the code comes back in the 303 to the
Dashboard's callback (read, not followed); the client exchanges it and refreshes; the
view connects the Stripe account with a signed request; Stripe's webhooks for that
account land in the workspace; uninstalling (or Disconnect) unlinks it and revokes
the tokens."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.integrations.base_client import OAuthError

from oauth.principal import authenticate_bearer
from server.cli import build_parser
from server.db import session_scope
from tests.conftest import LiveServer
from tests.oauth.flow import Browser, oauth2_client_class
from tests.stripe_app.app_helpers import (
    ACCOUNT,
    APP_ID,
    DASHBOARD_REDIRECT_URIS,
    call,
    processed_event,
    send_event,
    token_row,
    workspace,
)

EMAIL = "owner@acme.example"
PASSWORD = "correct horse battery staple"
TEST_MODE_CALLBACK = f"https://dashboard.stripe.com/test/apps-oauth/{APP_ID}"


def codeqr(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """Run a ``codeqr`` command (its real parser and handler, in this process, against
    the test's database); its JSON answer."""
    parsed = build_parser().parse_args(args)
    assert parsed.handler(parsed) == 0
    answer: dict[str, Any] = json.loads(capsys.readouterr().out)
    return answer


def operator_sets_up_codeqr(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """A Business workspace and a free one, their owner, the Stripe App's client."""
    acme = codeqr(
        capsys, "workspace", "create", "acme", "--name", "Acme", "--plan", "business"
    )
    codeqr(capsys, "workspace", "create", "hobby", "--plan", "free")
    codeqr(capsys, "user", "create", "--email", EMAIL, "--password", PASSWORD, "--workspace", "acme", "--role", "owner")  # fmt: skip
    codeqr(
        capsys,
        "user",
        "create",
        "--email",
        "other@acme.example",
        "--password",
        PASSWORD,
    )
    client = codeqr(
        capsys,
        "oauth-client", "create",
        "--name", "CodeQR for Stripe",
        "--public",
        "--requires-business-plan",
        "--client-id", "stripe-app",
        "--redirect-uri", *DASHBOARD_REDIRECT_URIS,
    )  # fmt: skip
    assert "client_secret" not in client or client["client_secret"] is None
    assert sorted(client["redirect_uris"]) == sorted(DASHBOARD_REDIRECT_URIS)
    return int(acme["id"]), str(client["client_id"])


def member_of_hobby_too() -> None:
    """The owner is also in a free workspace, which the Stripe App must not offer."""
    from sqlmodel import select

    from oauth.users import add_membership
    from server.models import User, Workspace

    with session_scope() as session:
        user = session.exec(select(User).where(User.email == EMAIL)).one()
        hobby = session.exec(select(Workspace).where(Workspace.slug == "hobby")).one()
        add_membership(session, user, hobby, "owner")


def sign_in_and_consent(base_url: str, authorize_url: str) -> str:
    """The user's part in a browser: log in when asked, pick acme, allow. Returns
    the Location of the final 303 (the Dashboard's callback, not followed)."""
    with Browser(base_url) as browser:
        first = browser.open_authorize(authorize_url)
        assert first.status_code == 303
        login_location = first.headers["location"]
        assert urlsplit(login_location).path == "/login"
        next_path = parse_qs(urlsplit(login_location).query)["next"][0]

        logged_in = browser.login(EMAIL, PASSWORD, next_path)
        assert logged_in.status_code == 303
        consent = browser.http.get(logged_in.headers["location"])
        assert consent.status_code == 200
        offered = re.findall(r'<option value="([^"]+)"', consent.text)
        assert offered == ["acme"], offered

        answer = browser.decide(consent, "allow", "acme")
    assert answer.status_code == 303
    location: str = answer.headers["location"]
    return location


def authorize(oauth: Any, base: str) -> dict[str, Any]:
    """The settings view's OAuth round trip: authorize URL with PKCE S256, the user's
    sign-in and consent, then the code exchange. Returns the token response."""
    verifier = secrets.token_urlsafe(48)
    url, state = oauth.create_authorization_url(
        f"{base}/oauth/authorize", code_verifier=verifier
    )
    assert "code_challenge_method=S256" in url

    callback = sign_in_and_consent(base, url)
    assert callback.startswith(TEST_MODE_CALLBACK + "?")
    returned = parse_qs(urlsplit(callback).query)
    assert returned["state"] == [state]
    assert returned["code"][0]
    # RFC 9207: the view checks whose answer this is against the server's metadata.
    assert returned["iss"] == [base]

    token = oauth.fetch_token(
        f"{base}/oauth/token", authorization_response=callback, code_verifier=verifier
    )
    return dict(token)


@pytest.mark.parametrize("ending", ["uninstalled", "disconnected"])
def test_install_story_from_sign_in_to_uninstall(
    live_server: LiveServer, capsys: pytest.CaptureFixture[str], ending: str
) -> None:
    base = live_server.url
    acme_id, client_id = operator_sets_up_codeqr(capsys)
    member_of_hobby_too()

    # The settings view signs the user in, then refreshes (refresh tokens rotate; a
    # reused one revokes its family, so the view starts over).
    oauth = oauth2_client_class()(
        client_id=client_id,
        token_endpoint_auth_method="none",
        redirect_uri=TEST_MODE_CALLBACK,
        scope="conversions:read conversions:write",
        code_challenge_method="S256",
        timeout=10,
    )
    try:
        first = authorize(oauth, base)
        assert first["token_type"].lower() == "bearer"
        assert first["expires_in"] > 0
        rotated = oauth.refresh_token(
            f"{base}/oauth/token", refresh_token=first["refresh_token"]
        )
        assert rotated["refresh_token"] != first["refresh_token"]
        assert rotated["access_token"] != first["access_token"]
        with pytest.raises(OAuthError) as reused:
            oauth.refresh_token(
                f"{base}/oauth/token", refresh_token=first["refresh_token"]
            )
        assert reused.value.error == "invalid_grant"

        tokens = oauth.refresh_token(
            f"{base}/oauth/token", refresh_token=authorize(oauth, base)["refresh_token"]
        )
    finally:
        oauth.close()
    access_token = tokens["access_token"]

    with live_server.client() as http:
        # Before connecting, Stripe's events for the account belong to no workspace.
        early = processed_event(
            send_event(http, "event_customer_created.json", ACCOUNT)
        )
        assert early.workspace_id is None

        # The settings view connects: the signature says which account, the token
        # which workspace.
        assert call(http, "/stripe-app/status").json()["connected"] is False
        connected = call(http, "/stripe-app/connect", token=access_token)
        assert connected.status_code == 200, connected.text
        status = call(http, "/stripe-app/status").json()
        assert status["connected"] is True
        assert status["workspace"] == {"slug": "acme", "name": "Acme"}
        assert status["tracking_active"] is True
        assert workspace(acme_id).stripe_account_id == ACCOUNT

        # From now on the account's events are the workspace's.
        event = processed_event(
            send_event(http, "event_customer_created.json", ACCOUNT)
        )
        assert event.workspace_id == acme_id

        # The merchant uninstalls the app (Stripe's webhook) or presses Disconnect.
        if ending == "uninstalled":
            gone = processed_event(
                send_event(http, "event_account_application_deauthorized.json", ACCOUNT)
            )
            assert gone.status == "done", gone.reason
        else:
            assert call(http, "/stripe-app/disconnect").status_code == 200

        assert call(http, "/stripe-app/status").json()["connected"] is False
        late = processed_event(send_event(http, "event_customer_created.json", ACCOUNT))

    assert workspace(acme_id).stripe_account_id is None
    assert late.workspace_id is None
    assert token_row(access_token).revoked_at is not None
    with session_scope() as session:
        assert authenticate_bearer(session, access_token) is None
    assert refresh_error(base, client_id, tokens["refresh_token"]) == "invalid_grant"


def refresh_error(base: str, client_id: str, refresh_token: str) -> str | None:
    """The OAuth error a refresh with this token gets (None: it worked)."""
    client = oauth2_client_class()(
        client_id=client_id, token_endpoint_auth_method="none", timeout=10
    )
    try:
        client.refresh_token(f"{base}/oauth/token", refresh_token=refresh_token)
    except OAuthError as exc:
        return str(exc.error)
    finally:
        client.close()
    return None
