"""Test helpers for anything that needs a logged-in user or an OAuth access token.

Typical use, with the ``live_server`` fixture (settings and database already set up)::

    from tests.oauth.flow import create_oauth_setup, obtain_tokens

    setup = create_oauth_setup(workspace="acme", plan="business")
    tokens = obtain_tokens(live_server.url, setup)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}

``obtain_tokens`` drives the whole flow over real HTTP the way a browser and the Stripe
App would: Authlib's OAuth2Client builds the authorize URL (PKCE S256), a cookie-keeping
httpx client logs in and consents through the HTML forms (with their CSRF tokens), and
the OAuth2Client exchanges the code."""

from __future__ import annotations

import re
import secrets
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from sqlmodel import select

from oauth.clients import create_client
from oauth.principal import ALL_SCOPES
from oauth.users import add_membership, create_user
from server import db
from server.cli import create_workspace
from server.models import User, Workspace

STRIPE_TEST_REDIRECT = (
    "https://dashboard.stripe.com/test/apps-oauth/com.codeqr.conversions"
)
STRIPE_LIVE_REDIRECT = "https://dashboard.stripe.com/apps-oauth/com.codeqr.conversions"
DEFAULT_PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def oauth2_client_class() -> Any:
    """Authlib's httpx OAuth2Client. Importing it warns that plain ``httpx`` is
    deprecated in favour of ``httpx2`` (not installed here); only that warning is
    silenced, everything else stays an error."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The httpx module is deprecated", category=Warning
        )
        from authlib.integrations.httpx_client import OAuth2Client

    return OAuth2Client


@dataclass
class OAuthSetup:
    """What a test needs to run the flow: who logs in, which workspace, which client."""

    email: str
    password: str
    workspace: str
    client_id: str
    client_secret: str | None
    redirect_uri: str
    redirect_uris: list[str] = field(default_factory=list)
    user_id: int = 0
    workspace_id: int = 0


def ensure_workspace(slug: str, plan: str = "business", **kwargs: Any) -> Workspace:
    with db.session_scope() as session:
        found = session.exec(select(Workspace).where(Workspace.slug == slug)).first()
        if found is not None:
            return found
    return create_workspace(slug, plan=plan, **kwargs)


def create_member(
    email: str,
    workspaces: Sequence[str] = (),
    *,
    password: str = DEFAULT_PASSWORD,
    role: str = "owner",
) -> int:
    """A user who belongs to the given (existing) workspaces; returns the user id."""
    with db.session_scope() as session:
        user = create_user(session, email, password)
        for slug in workspaces:
            workspace = session.exec(
                select(Workspace).where(Workspace.slug == slug)
            ).one()
            add_membership(session, user, workspace, role)
        assert user.id is not None
        return user.id


def create_oauth_client(
    *,
    redirect_uris: Sequence[str] = (STRIPE_TEST_REDIRECT, STRIPE_LIVE_REDIRECT),
    public: bool = True,
    name: str = "CodeQR for Stripe",
    scopes: Sequence[str] = ALL_SCOPES,
    requires_business_plan: bool = True,
    client_secret: str | None = None,
) -> tuple[str, str | None]:
    """Register a client (by default the Stripe App: public, Business plan only)."""
    with db.session_scope() as session:
        registered = create_client(
            session,
            name=name,
            redirect_uris=redirect_uris,
            public=public,
            scopes=scopes,
            requires_business_plan=requires_business_plan,
            client_secret=client_secret,
        )
        return registered.client.client_id, registered.client_secret


def create_oauth_setup(
    *,
    workspace: str = "acme",
    plan: str = "business",
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    public: bool = True,
    redirect_uris: Sequence[str] = (STRIPE_TEST_REDIRECT, STRIPE_LIVE_REDIRECT),
    requires_business_plan: bool = True,
    client_secret: str | None = None,
    stripe_account: str | None = None,
) -> OAuthSetup:
    """A workspace, an owner of it who can log in, and a client (default: the Stripe
    App). Needs the settings of the test (``settings_env`` or ``live_server``)."""
    ws = ensure_workspace(workspace, plan, stripe_account=stripe_account)
    email = email or f"owner-{secrets.token_hex(4)}@example.com"
    user_id = create_member(email, [workspace], password=password)
    client_id, secret = create_oauth_client(
        redirect_uris=redirect_uris,
        public=public,
        requires_business_plan=requires_business_plan,
        client_secret=client_secret,
    )
    assert ws.id is not None
    return OAuthSetup(
        email=email,
        password=password,
        workspace=workspace,
        client_id=client_id,
        client_secret=secret,
        redirect_uri=redirect_uris[0],
        redirect_uris=list(redirect_uris),
        user_id=user_id,
        workspace_id=ws.id,
    )


def user_id_of(email: str) -> int:
    with db.session_scope() as session:
        user = session.exec(select(User).where(User.email == email)).one()
        assert user.id is not None
        return user.id


# --- the browser -----------------------------------------------------------------------


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


class Browser:
    """A cookie-keeping client that follows no redirects by itself."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def login(self, email: str, password: str, next_path: str = "") -> httpx.Response:
        page = self.http.get(
            "/login", params={"next": next_path} if next_path else None
        )
        form = {
            "csrf_token": csrf_of(page.text),
            "email": email,
            "password": password,
            "next": next_path,
        }
        return self.http.post("/login", data=form)

    def open_authorize(self, url: str) -> httpx.Response:
        """GET the authorize URL; when it sends us to log in, that is returned as is."""
        return self.http.get(url)

    def decide(
        self, consent: httpx.Response, decision: str, workspace: str | None = None
    ) -> httpx.Response:
        action = re.search(r'<form method="post" action="([^"]+)"', consent.text)
        assert action, "no consent form in the page"
        form = {"csrf_token": csrf_of(consent.text), "decision": decision}
        if workspace is not None:
            form["workspace"] = workspace
        target = urljoin(self.base_url, action.group(1).replace("&amp;", "&"))
        return self.http.post(target, data=form)

    def authorize(
        self,
        url: str,
        email: str,
        password: str,
        workspace: str,
        decision: str = "allow",
    ) -> httpx.Response:
        """Open the authorize URL, log in when asked, consent; returns the final answer
        (a 303 to the client's redirect URI on success)."""
        response = self.open_authorize(url)
        if response.status_code == 303 and "/login" in response.headers["location"]:
            next_path = parse_qs(urlsplit(response.headers["location"]).query)["next"][
                0
            ]
            logged_in = self.login(email, password, next_path)
            assert logged_in.status_code == 303, logged_in.text
            response = self.http.get(logged_in.headers["location"])
        assert response.status_code == 200, response.text
        return self.decide(response, decision, workspace)


def new_oauth2_client(
    base_url: str, setup: OAuthSetup, scope: str | None = None
) -> Any:
    client_class = oauth2_client_class()
    return client_class(
        client_id=setup.client_id,
        client_secret=setup.client_secret,
        token_endpoint_auth_method=(
            "none" if setup.client_secret is None else "client_secret_basic"
        ),
        redirect_uri=setup.redirect_uri,
        scope=scope,
        code_challenge_method="S256",
        timeout=10,
    )


def authorize_code(
    base_url: str,
    setup: OAuthSetup,
    *,
    workspace: str | None = None,
    scope: str | None = " ".join(ALL_SCOPES),
) -> tuple[Any, str, str, str]:
    """Run authorize + login + consent. Returns (the OAuth2Client, the callback URL
    with ``code`` and ``state``, the code verifier, the state)."""
    client = new_oauth2_client(base_url, setup, scope)
    verifier = secrets.token_urlsafe(48)
    url, state = client.create_authorization_url(
        f"{base_url}/oauth/authorize", code_verifier=verifier
    )
    with Browser(base_url) as browser:
        answer = browser.authorize(
            url, setup.email, setup.password, workspace or setup.workspace
        )
    assert answer.status_code == 303, answer.text
    return client, answer.headers["location"], verifier, state


def obtain_tokens(
    base_url: str,
    setup: OAuthSetup,
    *,
    workspace: str | None = None,
    scope: str | None = " ".join(ALL_SCOPES),
) -> dict[str, Any]:
    """The whole flow against a live server; returns the token response
    (``access_token``, ``refresh_token``, ``expires_in``, ``scope``, ``token_type``)."""
    client, callback, verifier, state = authorize_code(
        base_url, setup, workspace=workspace, scope=scope
    )
    try:
        token = client.fetch_token(
            f"{base_url}/oauth/token",
            authorization_response=callback,
            code_verifier=verifier,
            state=state,
        )
    finally:
        client.close()
    return dict(token)


# --- building blocks for tests of single rules -----------------------------------------


def pkce_pair() -> tuple[str, str]:
    """A fresh (code_verifier, S256 code_challenge)."""
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    verifier = secrets.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


def authorize_query(
    setup: OAuthSetup,
    challenge: str | None,
    *,
    state: str = "state-123",
    omit: Sequence[str] = (),
    extra: Sequence[tuple[str, str]] = (),
    **overrides: str,
) -> httpx.QueryParams:
    """Query parameters of an authorize request; ``omit`` drops some, ``extra`` adds
    (possibly repeated) ones, keyword arguments replace values."""
    params = {
        "response_type": "code",
        "client_id": setup.client_id,
        "redirect_uri": setup.redirect_uri,
        "scope": " ".join(ALL_SCOPES),
        "state": state,
        "code_challenge": challenge or "",
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    pairs: list[tuple[str, str | int | float | bool | None]] = [
        (k, v) for k, v in [*params.items(), *extra] if k not in omit
    ]
    return httpx.QueryParams(pairs)


def logged_in_browser(base_url: str, setup: OAuthSetup) -> Browser:
    browser = Browser(base_url)
    answer = browser.login(setup.email, setup.password)
    assert answer.status_code == 303, answer.text
    return browser


def issue_code(
    base_url: str,
    setup: OAuthSetup,
    *,
    workspace: str | None = None,
    redirect_uri: str | None = None,
    scope: str | None = None,
) -> tuple[str, str]:
    """Log in and consent; returns (code, code_verifier)."""
    verifier, challenge = pkce_pair()
    query = authorize_query(
        setup,
        challenge,
        redirect_uri=redirect_uri or setup.redirect_uri,
        scope=" ".join(ALL_SCOPES) if scope is None else scope,
    )
    with logged_in_browser(base_url, setup) as browser:
        consent = browser.http.get("/oauth/authorize", params=query)
        assert consent.status_code == 200, consent.text
        answer = browser.decide(consent, "allow", workspace or setup.workspace)
    assert answer.status_code == 303, answer.text
    params = parse_qs(urlsplit(answer.headers["location"]).query)
    assert params["state"] == ["state-123"]
    return params["code"][0], verifier


def client_auth(setup: OAuthSetup) -> tuple[dict[str, str], Any]:
    """(form fields, httpx auth) for the client's own way of authenticating."""
    if setup.client_secret is None:
        return {"client_id": setup.client_id}, None
    return {}, httpx.BasicAuth(setup.client_id, setup.client_secret)


def exchange_code(
    http: httpx.Client,
    setup: OAuthSetup,
    code: str,
    verifier: str | None,
    **extra: str,
) -> httpx.Response:
    fields, auth = client_auth(setup)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": setup.redirect_uri,
        **fields,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    form.update(extra)
    return http.post("/oauth/token", data=form, auth=auth)


def refresh_tokens(
    http: httpx.Client, setup: OAuthSetup, refresh_token: str, **extra: str
) -> httpx.Response:
    fields, auth = client_auth(setup)
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, **fields}
    form.update(extra)
    return http.post("/oauth/token", data=form, auth=auth)


def revoke_token(
    http: httpx.Client, setup: OAuthSetup, token: str, **extra: str
) -> httpx.Response:
    fields, auth = client_auth(setup)
    return http.post(
        "/oauth/revoke", data={"token": token, **fields, **extra}, auth=auth
    )


def bearer_principal(access_token: str) -> Any:
    """What the API sees for this access token (None: refused)."""
    from oauth.principal import authenticate_bearer

    with db.session_scope() as session:
        return authenticate_bearer(session, access_token)
