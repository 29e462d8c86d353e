"""Builders for the Stripe App endpoint tests: signed calls, workspaces, members and
tokens written straight into the database the live server uses."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import httpx
import stripe
from sqlmodel import select

from oauth.tokens import ACCESS_TOKEN_PREFIX
from server.db import session_scope
from server.models import (
    ApiKey,
    Membership,
    OAuthClient,
    OAuthToken,
    StripeEvent,
    User,
    Workspace,
    utcnow,
)
from server.security import new_token, token_hash
from stripe_app.app_signature import signed_payload
from tests.conftest import APP_SECRET, WEBHOOK_SECRET, fixture_path

APP_ID = "com.codeqr.conversions"
DASHBOARD_REDIRECT_URIS = [
    f"https://dashboard.stripe.com/test/apps-oauth/{APP_ID}",
    f"https://dashboard.stripe.com/apps-oauth/{APP_ID}",
]
USER_ID = "usr_K2Fh3tQ1xYz"
ACCOUNT = "acct_1Nv0FGQ9RKHgCVdK"
OTHER_ACCOUNT = "acct_1OtherAccount00"
APP_CLIENT_ID = "stripe-app-test-client"


def sign(
    user_id: str,
    account_id: str,
    *,
    secret: str = APP_SECRET,
    timestamp: int | None = None,
) -> str:
    """What ``fetchStripeSignature()`` returns for this Dashboard user and account."""
    return str(
        stripe.WebhookSignature.generate_signature_header(
            signed_payload(user_id, account_id), secret, timestamp=timestamp
        )
    )


def call(
    client: httpx.Client,
    path: str,
    account_id: str = ACCOUNT,
    *,
    user_id: str = USER_ID,
    token: str | None = None,
    signature: str | None = None,
    origin: str | None = "null",
) -> httpx.Response:
    """A call of the settings view: JSON body with both ids, signed unless told
    (``signature=""`` sends no signature header at all)."""
    headers = {"Content-Type": "application/json"}
    if signature is None:
        signature = sign(user_id, account_id)
    if signature:
        headers["Stripe-Signature"] = signature
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if origin is not None:
        headers["Origin"] = origin
    body = json.dumps({"user_id": user_id, "account_id": account_id})
    return client.post(path, content=body, headers=headers)


def create_workspace(
    slug: str, plan: str = "business", account: str | None = None
) -> int:
    with session_scope() as session:
        workspace = Workspace(
            slug=slug,
            name=f"{slug.title()} Inc.",
            plan=plan,
            stripe_account_id=account,
            stripe_connected_at=utcnow() if account else None,
        )
        session.add(workspace)
        session.flush()
        assert workspace.id is not None
        return workspace.id


def create_member(workspace_id: int, email: str | None = None) -> int:
    with session_scope() as session:
        user = User(
            email=email or f"{uuid.uuid4().hex[:10]}@example.com",
            password_hash="not-a-password-hash",
        )
        session.add(user)
        session.flush()
        assert user.id is not None
        session.add(
            Membership(user_id=user.id, workspace_id=workspace_id, role="owner")
        )
        return user.id


def remove_member(workspace_id: int, user_id: int) -> None:
    with session_scope() as session:
        membership = session.exec(
            select(Membership)
            .where(Membership.user_id == user_id)
            .where(Membership.workspace_id == workspace_id)
        ).one()
        session.delete(membership)


def ensure_app_client(client_id: str = APP_CLIENT_ID) -> None:
    with session_scope() as session:
        exists = session.exec(
            select(OAuthClient).where(OAuthClient.client_id == client_id)
        ).first()
        if exists is None:
            session.add(
                OAuthClient(
                    client_id=client_id,
                    name="CodeQR for Stripe",
                    redirect_uris=json.dumps(DASHBOARD_REDIRECT_URIS),
                    scope="conversions:read conversions:write",
                    is_public=True,
                    requires_business_plan=True,
                )
            )


def issue_access_token(
    workspace_id: int,
    user_id: int,
    *,
    expires_in: int = 3600,
    revoked: bool = False,
    client_id: str = APP_CLIENT_ID,
    scope: str = "conversions:read conversions:write",
) -> str:
    """An OAuth access token as the authorization server stores it (hashed)."""
    ensure_app_client(client_id)
    token = new_token(ACCESS_TOKEN_PREFIX)
    now = utcnow()
    with session_scope() as session:
        session.add(
            OAuthToken(
                family_id=uuid.uuid4().hex,
                client_id=client_id,
                user_id=user_id,
                workspace_id=workspace_id,
                scope=scope,
                access_token_hash=token_hash(token),
                refresh_token_hash=token_hash(new_token("cqrt_")),
                issued_at=now,
                access_expires_at=now + timedelta(seconds=expires_in),
                refresh_expires_at=now + timedelta(days=30),
                revoked_at=now if revoked else None,
            )
        )
    return token


def create_api_key(workspace_id: int) -> str:
    token = new_token("cq_")
    with session_scope() as session:
        session.add(
            ApiKey(
                workspace_id=workspace_id, token_hash=token_hash(token), prefix="cq_"
            )
        )
    return token


def workspace(workspace_id: int) -> Workspace:
    with session_scope() as session:
        found = session.get(Workspace, workspace_id)
        assert found is not None
        return found


def token_row(token: str) -> OAuthToken:
    with session_scope() as session:
        return session.exec(
            select(OAuthToken).where(OAuthToken.access_token_hash == token_hash(token))
        ).one()


def api_key_row(token: str) -> ApiKey:
    with session_scope() as session:
        return session.exec(
            select(ApiKey).where(ApiKey.token_hash == token_hash(token))
        ).one()


def send_event(
    client: httpx.Client, fixture_name: str, account: str, event_id: str | None = None
) -> str:
    """POST a Stripe event (a fixture envelope, re-addressed to ``account``) to the
    webhook, signed like Stripe does; returns its id."""
    event = json.loads(fixture_path(fixture_name).read_text())
    event["id"] = event_id or f"evt_{uuid.uuid4().hex[:24]}"
    event["account"] = account
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
    response = client.post(
        "/stripe/webhook",
        content=body.encode(),
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return str(event["id"])


def processed_event(event_id: str, wait_seconds: float = 15) -> StripeEvent:
    """The inbox row once the worker has finished with it (bounded wait)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        with session_scope() as session:
            row = session.get(StripeEvent, event_id)
        if row is not None and row.status != "pending":
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"event {event_id} was not processed: {row}")
        time.sleep(0.05)
