"""The settings view's endpoints over real HTTP: signatures, CORS, connect, status and
disconnect, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
import stripe

from oauth.tokens import ACCESS_TOKEN_PREFIX
from tests.conftest import APP_SECRET, LiveServer, start_server
from tests.stripe_app.app_helpers import (
    ACCOUNT,
    OTHER_ACCOUNT,
    USER_ID,
    api_key_row,
    call,
    create_api_key,
    create_member,
    create_workspace,
    issue_access_token,
    processed_event,
    remove_member,
    send_event,
    sign,
    token_row,
    workspace,
)

ENDPOINTS = ["/stripe-app/status", "/stripe-app/connect", "/stripe-app/disconnect"]
OTHER_APP_SECRET = "absec_test_" + "f" * 32


def _linked_business_workspace(slug: str = "acme") -> tuple[int, str]:
    """A Business workspace linked to ACCOUNT, with a live OAuth token of its owner."""
    workspace_id = create_workspace(slug, "business", account=ACCOUNT)
    token = issue_access_token(workspace_id, create_member(workspace_id))
    return workspace_id, token


def _member_token(slug: str, plan: str = "business") -> tuple[int, str]:
    workspace_id = create_workspace(slug, plan)
    return workspace_id, issue_access_token(workspace_id, create_member(workspace_id))


def _error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- CORS ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_preflight_from_the_null_origin_allows_the_signature_header(
    live_server: LiveServer, path: str
) -> None:
    with live_server.client() as client:
        response = client.options(
            path,
            headers={
                "Origin": "null",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "stripe-signature, content-type, authorization",
            },
        )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    allowed = {
        h.strip().lower()
        for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"stripe-signature", "content-type", "authorization"} <= allowed
    methods = {
        m.strip() for m in response.headers["access-control-allow-methods"].split(",")
    }
    assert {"GET", "POST", "OPTIONS"} <= methods
    assert int(response.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in response.headers


def test_preflight_refuses_a_header_that_is_not_on_the_list(
    live_server: LiveServer,
) -> None:
    with live_server.client() as client:
        response = client.options(
            "/stripe-app/status",
            headers={
                "Origin": "null",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-forwarded-host",
            },
        )

    assert response.status_code == 400


def test_answers_and_refusals_carry_the_cors_header(live_server: LiveServer) -> None:
    with live_server.client() as client:
        answered = call(client, "/stripe-app/status")
        refused = call(client, "/stripe-app/status", signature="t=1,v1=00")

    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == "*"
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("path", ["/healthz", "/stripe/webhook", "/oauth/authorize"])
def test_routes_outside_the_app_endpoints_get_no_cors(
    live_server: LiveServer, path: str
) -> None:
    with live_server.client() as client:
        response = client.options(
            path,
            headers={
                "Origin": "null",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "stripe-signature",
            },
        )
        plain = client.get("/healthz", headers={"Origin": "null"})

    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in plain.headers


# --- configuration, body and signature ------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_endpoints_are_off_without_an_app_secret(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.setenv("CODEQR_STRIPE_APP_SECRET", "")
    server = start_server()
    try:
        with server.client() as client:
            response = call(client, path)
    finally:
        server.stop()

    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "code": "NOT_CONFIGURED",
            "message": "Stripe App endpoints are not configured",
        }
    }


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"user_id": "usr_1"}',
        b'{"user_id": 1, "account_id": "acct_1"}',
        b"[" * 8000 + b"]" * 8000,
    ],
    ids=["empty", "not-json", "array", "no-account", "number", "deeply-nested"],
)
def test_a_body_without_both_stripe_ids_is_a_400(
    live_server: LiveServer, body: bytes
) -> None:
    with live_server.client() as client:
        response = client.post(
            "/stripe-app/status",
            content=body,
            headers={"Stripe-Signature": sign(USER_ID, ACCOUNT)},
        )

    assert response.status_code == 400
    assert _error_code(response) == "INVALID_REQUEST"


def test_a_body_over_the_limit_is_a_413(live_server: LiveServer) -> None:
    with live_server.client() as client:
        response = client.post(
            "/stripe-app/status",
            content=b'{"pad": "' + b"x" * 20_000 + b'"}',
            headers={"Stripe-Signature": sign(USER_ID, ACCOUNT)},
        )

    assert response.status_code == 413
    assert _error_code(response) == "PAYLOAD_TOO_LARGE"


def _bad_signatures() -> dict[str, Callable[[], str]]:
    now = int(time.time())
    return {
        "missing": lambda: "",
        "stale": lambda: sign(USER_ID, ACCOUNT, timestamp=now - 301),
        "future": lambda: sign(USER_ID, ACCOUNT, timestamp=now + 3600),
        "wrong-secret": lambda: sign(USER_ID, ACCOUNT, secret=OTHER_APP_SECRET),
        "tampered-account": lambda: sign(USER_ID, OTHER_ACCOUNT),
        "tampered-user": lambda: sign("usr_SomeoneElse", ACCOUNT),
        "spaces-in-json": lambda: _sign_text(
            f'{{"user_id": "{USER_ID}", "account_id": "{ACCOUNT}"}}'
        ),
        "key-order": lambda: _sign_text(
            f'{{"account_id":"{ACCOUNT}","user_id":"{USER_ID}"}}'
        ),
    }


def _sign_text(text: str) -> str:
    return str(stripe.WebhookSignature.generate_signature_header(text, APP_SECRET))


@pytest.mark.parametrize("case", list(_bad_signatures()))
def test_connect_with_a_bad_signature_is_a_401_and_links_nothing(
    live_server: LiveServer, case: str
) -> None:
    workspace_id, token = _member_token("acme")
    signature = _bad_signatures()[case]()

    with live_server.client() as client:
        response = client.post(
            "/stripe-app/connect",
            json={"user_id": USER_ID, "account_id": ACCOUNT},
            headers={"Stripe-Signature": signature, "Authorization": f"Bearer {token}"},
        )

    assert response.status_code == 401
    assert _error_code(response) == "INVALID_SIGNATURE"
    if "v1=" in signature:
        assert signature.partition("v1=")[2] not in response.text
    assert workspace(workspace_id).stripe_account_id is None


@pytest.mark.parametrize("case", list(_bad_signatures()))
def test_disconnect_with_a_bad_signature_is_a_401_and_unlinks_nothing(
    live_server: LiveServer, case: str
) -> None:
    workspace_id, token = _linked_business_workspace()

    with live_server.client() as client:
        response = call(
            client, "/stripe-app/disconnect", signature=_bad_signatures()[case]()
        )

    assert response.status_code == 401
    assert _error_code(response) == "INVALID_SIGNATURE"
    assert workspace(workspace_id).stripe_account_id == ACCOUNT
    assert token_row(token).revoked_at is None


@pytest.mark.parametrize("case", ["stale", "wrong-secret", "tampered-account"])
def test_status_with_a_bad_signature_is_a_401_and_reveals_nothing(
    live_server: LiveServer, case: str
) -> None:
    _linked_business_workspace()

    with live_server.client() as client:
        response = call(
            client, "/stripe-app/status", signature=_bad_signatures()[case]()
        )

    assert response.status_code == 401
    assert "acme" not in response.text.lower()


def test_a_rolled_app_secret_is_accepted_during_the_grace_period(
    live_server: LiveServer,
) -> None:
    old = sign(USER_ID, ACCOUNT, secret=OTHER_APP_SECRET)
    timestamp = int(old.split(",")[0].removeprefix("t="))
    new_v1 = sign(USER_ID, ACCOUNT, timestamp=timestamp).split(",")[1]

    with live_server.client() as client:
        response = call(client, "/stripe-app/status", signature=f"{old},{new_v1}")

    assert response.status_code == 200


def test_a_rejected_signature_is_logged_without_the_header(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    signature = sign(USER_ID, ACCOUNT, secret=OTHER_APP_SECRET)

    with live_server.client() as client:
        response = call(client, "/stripe-app/status", signature=signature)

    assert response.status_code == 401
    logged = [str(record.msg) for record in caplog.records]
    assert any("stripe_app.signature_rejected" in line for line in logged)
    assert not any(signature.partition("v1=")[2] in line for line in logged)


# --- status ----------------------------------------------------------------------------


def test_status_of_an_account_that_is_not_linked(live_server: LiveServer) -> None:
    with live_server.client() as client:
        response = call(client, "/stripe-app/status")

    assert response.status_code == 200
    assert response.json() == {"connected": False, "account_id": ACCOUNT}


@pytest.mark.parametrize(("plan", "active"), [("business", True), ("pro", False)])
def test_status_of_a_linked_account_names_workspace_plan_and_tracking(
    live_server: LiveServer, plan: str, active: bool
) -> None:
    create_workspace("acme", plan, account=ACCOUNT)

    with live_server.client() as client:
        body = call(client, "/stripe-app/status").json()

    assert body["connected"] is True
    assert body["account_id"] == ACCOUNT
    assert body["workspace"] == {"slug": "acme", "name": "Acme Inc."}
    assert body["plan"] == plan
    assert body["tracking_active"] is active
    assert body["connected_since"].endswith("Z")


# --- connect ---------------------------------------------------------------------------


def test_connect_links_the_signed_account_to_the_tokens_workspace(
    live_server: LiveServer,
) -> None:
    workspace_id, token = _member_token("acme")

    with live_server.client() as client:
        before = call(client, "/stripe-app/status").json()
        response = call(client, "/stripe-app/connect", token=token)
        after = call(client, "/stripe-app/status").json()

    assert before["connected"] is False
    assert response.status_code == 200
    assert response.json()["changed"] is True
    assert response.json()["workspace"]["slug"] == "acme"
    assert after["connected"] is True
    assert after["workspace"]["slug"] == "acme"
    assert after["tracking_active"] is True
    linked = workspace(workspace_id)
    assert linked.stripe_account_id == ACCOUNT
    assert linked.stripe_connected_at is not None


def test_connect_again_from_the_same_workspace_changes_nothing(
    live_server: LiveServer,
) -> None:
    workspace_id, token = _member_token("acme")

    with live_server.client() as client:
        first = call(client, "/stripe-app/connect", token=token)
        since = workspace(workspace_id).stripe_connected_at
        second = call(client, "/stripe-app/connect", token=token)

    assert first.status_code == second.status_code == 200
    assert second.json()["changed"] is False
    assert second.json()["connected_since"] == first.json()["connected_since"]
    assert workspace(workspace_id).stripe_connected_at == since


def test_connect_without_a_bearer_token_is_a_401(live_server: LiveServer) -> None:
    workspace_id, _token = _member_token("acme")

    with live_server.client() as client:
        response = call(client, "/stripe-app/connect")

    assert response.status_code == 401
    assert _error_code(response) == "UNAUTHENTICATED"
    assert workspace(workspace_id).stripe_account_id is None


def test_connect_with_an_api_key_is_refused(live_server: LiveServer) -> None:
    workspace_id = create_workspace("acme", "business")
    api_key = create_api_key(workspace_id)

    with live_server.client() as client:
        response = call(client, "/stripe-app/connect", token=api_key)

    assert response.status_code == 403
    assert _error_code(response) == "FORBIDDEN"
    assert "api_key" in response.json()["error"]["message"]
    assert workspace(workspace_id).stripe_account_id is None


def test_connect_with_a_read_only_token_is_refused(live_server: LiveServer) -> None:
    # Linking an account lets its Stripe events record sales: it needs the write scope.
    workspace_id = create_workspace("acme", "business")
    user_id = create_member(workspace_id)
    token = issue_access_token(workspace_id, user_id, scope="conversions:read")

    with live_server.client() as client:
        response = call(client, "/stripe-app/connect", token=token)

    assert response.status_code == 403
    assert _error_code(response) == "FORBIDDEN"
    assert "conversions:write" in response.json()["error"]["message"]
    assert workspace(workspace_id).stripe_account_id is None


@pytest.mark.parametrize("case", ["expired", "revoked", "unknown"])
def test_connect_with_a_dead_access_token_is_a_401(
    live_server: LiveServer, case: str
) -> None:
    workspace_id = create_workspace("acme", "business")
    user_id = create_member(workspace_id)
    token = {
        "expired": lambda: issue_access_token(workspace_id, user_id, expires_in=-1),
        "revoked": lambda: issue_access_token(workspace_id, user_id, revoked=True),
        "unknown": lambda: ACCESS_TOKEN_PREFIX + "x" * 43,
    }[case]()

    with live_server.client() as client:
        response = call(client, "/stripe-app/connect", token=token)

    assert response.status_code == 401
    assert _error_code(response) == "UNAUTHENTICATED"
    assert workspace(workspace_id).stripe_account_id is None


def test_connect_with_the_token_of_a_former_member_is_refused(
    live_server: LiveServer,
) -> None:
    workspace_id = create_workspace("acme", "business")
    user_id = create_member(workspace_id)
    token = issue_access_token(workspace_id, user_id)
    remove_member(workspace_id, user_id)

    with live_server.client() as client:
        response = call(client, "/stripe-app/connect", token=token)

    # The token stops resolving (401) or resolves and fails the membership check (403).
    assert (response.status_code, _error_code(response)) in {
        (401, "UNAUTHENTICATED"),
        (403, "FORBIDDEN"),
    }
    assert workspace(workspace_id).stripe_account_id is None


@pytest.mark.parametrize("plan", ["free", "pro"])
def test_connect_below_the_business_plan_is_plan_required(
    live_server: LiveServer, plan: str
) -> None:
    workspace_id, token = _member_token("acme", plan)

    with live_server.client() as client:
        response = call(client, "/stripe-app/connect", token=token)

    assert response.status_code == 403
    assert _error_code(response) == "PLAN_REQUIRED"
    assert "Business" in response.json()["error"]["message"]
    assert workspace(workspace_id).stripe_account_id is None


def test_a_second_workspace_claiming_a_linked_account_gets_a_conflict(
    live_server: LiveServer,
) -> None:
    first_id, _ = _linked_business_workspace("acme")
    second_id, token = _member_token("globex")

    with live_server.client() as client:
        response = call(client, "/stripe-app/connect", token=token)

    assert response.status_code == 409
    assert _error_code(response) == "ACCOUNT_ALREADY_CONNECTED"
    message = response.json()["error"]["message"]
    assert ACCOUNT in message
    assert "acme" not in message.lower()
    assert workspace(first_id).stripe_account_id == ACCOUNT
    assert workspace(second_id).stripe_account_id is None


def test_a_workspace_linked_to_another_account_gets_a_conflict(
    live_server: LiveServer,
) -> None:
    workspace_id = create_workspace("acme", "business", account=OTHER_ACCOUNT)
    token = issue_access_token(workspace_id, create_member(workspace_id))

    with live_server.client() as client:
        response = call(client, "/stripe-app/connect", token=token)

    assert response.status_code == 409
    assert _error_code(response) == "WORKSPACE_ALREADY_CONNECTED"
    assert "disconnect" in response.json()["error"]["message"]
    assert workspace(workspace_id).stripe_account_id == OTHER_ACCOUNT


def test_workspaces_racing_for_one_account_end_with_exactly_one_link(
    live_server: LiveServer,
) -> None:
    tokens = [_member_token(f"racer{i}")[1] for i in range(4)]
    barrier = threading.Barrier(len(tokens))
    statuses: list[int] = []

    def connect(token: str) -> None:
        with live_server.client() as client:
            barrier.wait()
            statuses.append(
                call(client, "/stripe-app/connect", token=token).status_code
            )

    threads = [threading.Thread(target=connect, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 409, 409, 409]
    with live_server.client() as client:
        assert call(client, "/stripe-app/status").json()["connected"] is True


# --- disconnect ------------------------------------------------------------------------


def test_disconnect_unlinks_and_revokes_the_workspace_tokens(
    live_server: LiveServer,
) -> None:
    workspace_id, token = _member_token("acme")
    api_key = create_api_key(workspace_id)

    with live_server.client() as client:
        assert call(client, "/stripe-app/connect", token=token).status_code == 200
        response = call(client, "/stripe-app/disconnect")
        status = call(client, "/stripe-app/status").json()
        reconnect = call(client, "/stripe-app/connect", token=token)

    assert response.status_code == 200
    assert response.json()["changed"] is True
    assert response.json()["revoked_tokens"] == 1
    assert status == {"connected": False, "account_id": ACCOUNT}
    assert workspace(workspace_id).stripe_account_id is None
    assert workspace(workspace_id).stripe_connected_at is None
    assert token_row(token).revoked_at is not None
    assert reconnect.status_code == 401
    assert api_key_row(api_key).revoked_at is None


def test_disconnect_of_an_account_that_is_not_linked_changes_nothing(
    live_server: LiveServer,
) -> None:
    other_id, token = _member_token("acme")

    with live_server.client() as client:
        response = call(client, "/stripe-app/disconnect")

    assert response.status_code == 200
    assert response.json() == {
        "connected": False,
        "account_id": ACCOUNT,
        "changed": False,
        "revoked_tokens": 0,
    }
    assert token_row(token).revoked_at is None
    assert workspace(other_id).stripe_account_id is None


def test_after_disconnect_another_workspace_can_connect_the_account(
    live_server: LiveServer,
) -> None:
    _linked_business_workspace("acme")
    second_id, token = _member_token("globex")

    with live_server.client() as client:
        assert call(client, "/stripe-app/disconnect").status_code == 200
        response = call(client, "/stripe-app/connect", token=token)

    assert response.status_code == 200
    assert workspace(second_id).stripe_account_id == ACCOUNT


# --- webhooks follow the link ---------------------------------------------------------


def test_after_connect_the_accounts_webhook_events_belong_to_the_workspace(
    live_server: LiveServer,
) -> None:
    workspace_id, token = _member_token("acme")

    with live_server.client() as client:
        before = send_event(client, "event_customer_created.json", ACCOUNT)
        before_row = processed_event(before)
        assert call(client, "/stripe-app/connect", token=token).status_code == 200
        after = send_event(client, "event_customer_created.json", ACCOUNT)
        after_row = processed_event(after)

    assert before_row.account == ACCOUNT
    assert before_row.workspace_id is None
    assert before_row.status == "skipped"
    assert "unknown account" in (before_row.reason or "")
    assert after_row.account == ACCOUNT
    assert after_row.workspace_id == workspace_id


def test_after_disconnect_the_accounts_webhook_events_belong_to_no_workspace(
    live_server: LiveServer,
) -> None:
    _linked_business_workspace("acme")

    with live_server.client() as client:
        assert call(client, "/stripe-app/disconnect").status_code == 200
        row = processed_event(
            send_event(client, "event_customer_created.json", ACCOUNT)
        )

    assert row.workspace_id is None
    assert row.status == "skipped"
