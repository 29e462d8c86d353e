"""POST /stripe/webhook over real HTTP: what is accepted, refused, and stored."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from server.models import InboxStatus
from stripe_app.routes import RejectedWebhook, parse_event
from tests.conftest import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, LiveServer, start_server
from tests.stripe_app.conftest import (
    ACCOUNT,
    deliver,
    event_bytes,
    fixture_bytes,
    inbox_row,
    inbox_rows,
    sign,
)

CUSTOMER_CREATED = "event_customer_created.json"
CUSTOMER_EVENT_ID = "evt_1TestCustomerCreated00001"


@pytest.fixture(autouse=True)
def _customer_created_is_handled(register_handler: Callable[..., object]) -> None:
    # The receiver stores handled types as pending; a test handler stands in for the
    # real one (the worker is off in these tests, so it is never called).
    register_handler("customer.created")


def _v1(body: bytes, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def test_webhook_stores_a_signed_fixture_event_once_as_pending(
    receiver: LiveServer,
) -> None:
    body = fixture_bytes(CUSTOMER_CREATED)

    with receiver.client() as client:
        response = deliver(client, body)

    assert response.status_code == 200
    assert response.json() == {"received": True}
    [row] = inbox_rows()
    assert row.id == CUSTOMER_EVENT_ID
    assert row.type == "customer.created"
    assert row.account == ACCOUNT
    assert row.livemode is False
    assert row.created == 1785412800
    assert row.status == InboxStatus.PENDING
    assert row.attempts == 0
    assert row.payload.encode() == body  # the exact bytes, not a re-serialisation


# --- every refusal is a 400 with its reason, and nothing is stored ---------------------


def _missing_header(body: bytes) -> tuple[bytes, str]:
    return body, ""


def _malformed_header(body: bytes) -> tuple[bytes, str]:
    return body, "this is not a signature"


def _malformed_timestamp(body: bytes) -> tuple[bytes, str]:
    return body, "t=yesterday,v1=" + "0" * 64


def _header_with_spaces(body: bytes) -> tuple[bytes, str]:
    return body, sign(body).replace(",", ", ")


def _stale_timestamp(body: bytes) -> tuple[bytes, str]:
    return body, sign(body, timestamp=int(time.time()) - 301)


def _far_future_timestamp(body: bytes) -> tuple[bytes, str]:
    return body, sign(body, timestamp=int(time.time()) + 3600)


def _wrong_secret(body: bytes) -> tuple[bytes, str]:
    return body, sign(body, secret="whsec_not_configured_" + "e" * 24)


def _reserialised_after_signing(body: bytes) -> tuple[bytes, str]:
    return json.dumps(json.loads(body)).encode(), sign(body)


def _v0_only(body: bytes) -> tuple[bytes, str]:
    timestamp = int(time.time())
    return body, f"t={timestamp},v0={_v1(body, WEBHOOK_SECRET, timestamp)}"


def _signed(body: bytes) -> tuple[bytes, str]:
    return body, sign(body)


def _signed_raw(body: bytes) -> tuple[bytes, str]:
    # The SDK's helper signs text; bytes that are not UTF-8 are signed by hand.
    timestamp = int(time.time())
    return body, f"t={timestamp},v1={_v1(body, WEBHOOK_SECRET, timestamp)}"


BadCase = tuple[str, Callable[[bytes], tuple[bytes, str]], bytes | None, str]

BAD_CASES: list[BadCase] = [
    ("missing header", _missing_header, None, "missing Stripe-Signature header"),
    ("malformed header", _malformed_header, None, "no timestamp"),
    ("malformed timestamp", _malformed_timestamp, None, "malformed timestamp"),
    ("header with spaces", _header_with_spaces, None, "no v1 signature"),
    ("v0 signature only", _v0_only, None, "no v1 signature"),
    ("stale timestamp", _stale_timestamp, None, "outside the tolerance"),
    ("far future timestamp", _far_future_timestamp, None, "outside the tolerance"),
    ("wrong secret", _wrong_secret, None, "no v1 signature matches"),
    (
        "body re-serialised",
        _reserialised_after_signing,
        None,
        "no v1 signature matches",
    ),
    (
        "not JSON",
        _signed,
        b"evt_1 is not json {",
        "body is not JSON: Expecting value at line 1, column 1",
    ),
    (
        "not UTF-8",
        _signed_raw,
        b'{"id": "evt_\xff"}',
        "body is not JSON: it is not UTF-8",
    ),
    (
        "byte order mark",
        _signed,
        b'\xef\xbb\xbf{"id": "evt_1"}',
        "body is not JSON: it starts with a byte order mark",
    ),
    (
        "integer of 5,000 digits",
        _signed,
        b'{"id": "evt_1", "n": ' + b"9" * 5000 + b"}",
        "body is not JSON we accept: Exceeds the limit (4300 digits) for integer "
        "string conversion: value has 5000 digits",
    ),
    (
        "JSON array",
        _signed,
        b'[{"id": "evt_1", "type": "customer.created"}]',
        "not a Stripe event object",
    ),
    ("JSON string", _signed, b'"evt_1"', "not a Stripe event object"),
    (
        "no object: event",
        _signed,
        b'{"id": "evt_1", "type": "customer.created", "data": {"object": {}}}',
        'object is not "event"',
    ),
    (
        "id not evt_",
        _signed,
        event_bytes(CUSTOMER_CREATED, id="cus_123"),
        "does not start with evt_",
    ),
    (
        "no type",
        _signed,
        event_bytes(CUSTOMER_CREATED, type=None),
        "event type is missing",
    ),
    (
        "no data.object",
        _signed,
        event_bytes(CUSTOMER_CREATED, data={}),
        "no data.object",
    ),
    (
        "thin v2 event",
        _signed,
        json.dumps(
            {
                "id": "evt_test_65R9Ijk8",
                "object": "v2.core.event",
                "type": "v1.billing.meter.error_report_triggered",
                "related_object": {"id": "mtr_test_1", "type": "billing.meter"},
            }
        ).encode(),
        "thin (v2) events are not supported",
    ),
]


@pytest.mark.parametrize(
    ("make", "payload", "reason"),
    [case[1:] for case in BAD_CASES],
    ids=[case[0] for case in BAD_CASES],
)
def test_webhook_refuses_bad_input_with_400_and_stores_nothing(
    receiver: LiveServer,
    make: Callable[[bytes], tuple[bytes, str]],
    payload: bytes | None,
    reason: str,
) -> None:
    body, header = make(
        payload if payload is not None else fixture_bytes(CUSTOMER_CREATED)
    )

    with receiver.client() as client:
        response = deliver(client, body, header)

    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert "\n" not in response.json()["error"]
    assert inbox_rows() == []


def test_webhook_refuses_a_body_over_the_limit_by_content_length(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEQR_WEBHOOK_MAX_BODY_BYTES", "1024")
    monkeypatch.setenv("CODEQR_WORKER_ENABLED", "false")
    server = start_server()
    body = event_bytes(CUSTOMER_CREATED, padding="x" * 2048)
    try:
        with server.client() as client:
            response = deliver(client, body)
    finally:
        server.stop()

    assert response.status_code == 400
    assert response.json() == {"error": "body too large: over the limit of 1024 bytes"}
    assert inbox_rows() == []


def test_webhook_refuses_a_streamed_body_over_the_limit(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEQR_WEBHOOK_MAX_BODY_BYTES", "1024")
    monkeypatch.setenv("CODEQR_WORKER_ENABLED", "false")
    server = start_server()
    body = event_bytes(CUSTOMER_CREATED, padding="x" * 2048)

    def chunks() -> list[bytes]:  # no Content-Length: sent chunked
        return [body[:700], body[700:1400], body[1400:]]

    try:
        with server.client() as client:
            response = client.post(
                "/stripe/webhook",
                content=iter(chunks()),
                headers={"Stripe-Signature": sign(body)},
            )
    finally:
        server.stop()

    assert response.status_code == 400
    assert "body too large" in response.json()["error"]
    assert inbox_rows() == []


def test_webhook_is_off_without_configured_secrets(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEQR_STRIPE_WEBHOOK_SECRETS", "")
    server = start_server()
    body = fixture_bytes(CUSTOMER_CREATED)
    try:
        with server.client() as client:
            response = deliver(client, body)
    finally:
        server.stop()

    assert response.status_code == 503
    assert response.json() == {"error": "webhook receiver is not configured"}
    assert inbox_rows() == []


def test_webhook_answers_405_to_get(receiver: LiveServer) -> None:
    with receiver.client() as client:
        response = client.get("/stripe/webhook")

    assert response.status_code == 405


# --- secrets, rotation and clocks ------------------------------------------------------


def test_webhook_accepts_the_second_configured_secret(receiver: LiveServer) -> None:
    body = fixture_bytes(CUSTOMER_CREATED)

    with receiver.client() as client:
        response = deliver(client, body, sign(body, secret=OLD_WEBHOOK_SECRET))

    assert response.status_code == 200
    assert [row.id for row in inbox_rows()] == [CUSTOMER_EVENT_ID]


def test_webhook_accepts_a_rolled_secret_header_with_two_v1_and_a_v0(
    receiver: LiveServer,
) -> None:
    # Stripe signs with the new secret and the old one while the old one is still live;
    # here only the old one is deployed on our side.
    body = fixture_bytes(CUSTOMER_CREATED)
    timestamp = int(time.time())
    new_secret = "whsec_rolled_not_deployed_" + "f" * 20
    header = (
        f"t={timestamp},v1={_v1(body, new_secret, timestamp)},"
        f"v1={_v1(body, OLD_WEBHOOK_SECRET, timestamp)},v0=deadbeef"
    )

    with receiver.client() as client:
        response = deliver(client, body, header)

    assert response.status_code == 200
    assert [row.id for row in inbox_rows()] == [CUSTOMER_EVENT_ID]


def test_webhook_accepts_a_timestamp_slightly_in_the_future(
    receiver: LiveServer,
) -> None:
    body = fixture_bytes(CUSTOMER_CREATED)

    with receiver.client() as client:
        response = deliver(client, body, sign(body, timestamp=int(time.time()) + 120))

    assert response.status_code == 200
    assert [row.id for row in inbox_rows()] == [CUSTOMER_EVENT_ID]


def test_webhook_accepts_a_timestamp_just_within_the_tolerance(
    receiver: LiveServer,
) -> None:
    body = fixture_bytes(CUSTOMER_CREATED)

    with receiver.client() as client:
        response = deliver(client, body, sign(body, timestamp=int(time.time()) - 290))

    assert response.status_code == 200


# --- redelivery and types --------------------------------------------------------------


def test_webhook_redelivery_is_acknowledged_as_duplicate_and_stored_once(
    receiver: LiveServer,
) -> None:
    body = fixture_bytes(CUSTOMER_CREATED)

    with receiver.client() as client:
        first = deliver(client, body)
        second = deliver(client, body)  # Stripe signs every attempt afresh

    assert first.json() == {"received": True}
    assert second.status_code == 200
    assert second.json() == {"received": True, "duplicate": True}
    assert len(inbox_rows()) == 1


def test_webhook_twenty_concurrent_deliveries_store_one_row(
    receiver: LiveServer,
) -> None:
    body = fixture_bytes(CUSTOMER_CREATED)

    def one(_: int) -> tuple[int, dict[str, bool]]:
        with receiver.client() as client:
            response = deliver(client, body)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))

    assert [status for status, _ in results] == [200] * 20
    assert sum("duplicate" not in answer for _, answer in results) == 1
    assert [row.id for row in inbox_rows()] == [CUSTOMER_EVENT_ID]


def test_webhook_stores_an_unhandled_event_type_as_skipped(
    receiver: LiveServer,
) -> None:
    body = fixture_bytes("event.json")  # plan.created, no account

    with receiver.client() as client:
        response = deliver(client, body)

    assert response.status_code == 200
    row = inbox_row("evt_1Pgc76B7WZ01zgkWwyRHS12y")
    assert row is not None
    assert row.status == InboxStatus.SKIPPED
    assert row.reason == "unhandled event type plan.created"
    assert row.account is None
    assert row.processed_at is not None


def test_webhook_keeps_livemode_of_live_events(receiver: LiveServer) -> None:
    body = event_bytes(CUSTOMER_CREATED, livemode=True)

    with receiver.client() as client:
        assert deliver(client, body).status_code == 200

    [row] = inbox_rows()
    assert row.livemode is True


# --- the parser alone ------------------------------------------------------------------


def test_parse_event_takes_the_inbox_fields_of_every_fixture_event() -> None:
    names = [
        "event_customer_created.json",
        "event_customer_updated.json",
        "event_checkout_session_completed.json",
        "event_invoice_paid.json",
        "event_charge_refunded.json",
        "event_account_application_deauthorized.json",
    ]
    for name in names:
        body = fixture_bytes(name)
        expected = json.loads(body)

        event = parse_event(body)

        assert (event.id, event.type, event.account) == (
            expected["id"],
            expected["type"],
            expected["account"],
        )
        assert event.created == expected["created"]
        assert event.payload == body.decode()


@pytest.mark.parametrize("created", [10**12, -5, 0, "1700000000", None])
def test_parse_event_dates_an_event_without_a_usable_time_when_it_arrives(
    created: object,
) -> None:
    before = int(time.time())
    event = parse_event(event_bytes(CUSTOMER_CREATED, created=created))
    assert before <= event.created <= int(time.time())


def test_parse_event_refuses_an_account_that_is_not_a_string() -> None:
    with pytest.raises(
        RejectedWebhook, match="account is not a short printable string"
    ):
        parse_event(event_bytes(CUSTOMER_CREATED, account={"id": ACCOUNT}))


def test_webhook_logs_neither_the_signature_header_nor_the_secret(
    receiver: LiveServer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    body = fixture_bytes(CUSTOMER_CREATED)
    good = sign(body)
    stale = sign(body, timestamp=int(time.time()) - 600)

    with caplog.at_level("INFO"), receiver.client() as client:
        assert deliver(client, body, good).status_code == 200
        assert deliver(client, body, stale).status_code == 400

    logged = caplog.text + capfd.readouterr().err
    assert "webhook.accepted" in logged
    assert "webhook.rejected" in logged
    for secret in (good.split("v1=")[1], stale.split("v1=")[1], WEBHOOK_SECRET):
        assert secret not in logged
