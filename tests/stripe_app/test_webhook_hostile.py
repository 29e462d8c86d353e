"""POST /stripe/webhook under hostile input found by testing: every case is a 400 with a
one-line reason and nothing stored, never a 500."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.conftest import LiveServer
from tests.stripe_app.conftest import ACCOUNT, inbox_rows, sign


@pytest.fixture(autouse=True)
def _customer_created_is_handled(register_handler: Callable[..., object]) -> None:
    register_handler("customer.created")


def _event(**changes: object) -> bytes:
    event: dict[str, object] = {
        "id": "evt_hostile_1",
        "object": "event",
        "type": "customer.created",
        "account": ACCOUNT,
        "livemode": False,
        "created": 1_700_000_000,
        "data": {"object": {"id": "cus_1", "object": "customer", "metadata": {}}},
    }
    event.update(changes)
    return json.dumps(event).encode()


def _post(server: LiveServer, body: bytes, header: bytes | str) -> tuple[int, str]:
    raw_header = header if isinstance(header, bytes) else header.encode()
    with server.client() as client:
        response = client.post(
            "/stripe/webhook",
            content=body,
            headers={
                b"Content-Type": b"application/json",
                b"Stripe-Signature": raw_header,
            },
        )
    assert response.status_code != 500, response.text
    error = response.json().get("error", "") if response.status_code == 400 else ""
    return response.status_code, error


@pytest.mark.parametrize("digit", [b"\xb2", b"\xb9", b"1\xb3"])
def test_webhook_timestamp_of_non_ascii_digits_is_a_400(
    receiver: LiveServer, digit: bytes
) -> None:
    # Latin-1 superscripts are str.isdigit() but not int(): an unsigned request got a 500.
    status, error = _post(receiver, _event(), b"t=" + digit + b",v1=" + b"a" * 64)

    assert (status, error) == (400, "Stripe-Signature header has a malformed timestamp")
    assert inbox_rows() == []


def test_webhook_signed_body_nested_too_deeply_is_a_400(receiver: LiveServer) -> None:
    nested = b"[" * 5000 + b"]" * 5000
    body = _event(padding="PLACEHOLDER").replace(b'"PLACEHOLDER"', nested)

    status, error = _post(receiver, body, sign(body))

    assert (status, error) == (400, "body is not JSON we accept: nested too deeply")
    assert inbox_rows() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "evt_nul\u0000"),
        ("type", "customer.created\u0000"),
        ("account", "acct_\u0000"),
        ("id", "evt_\ud800"),
        ("account", "acct_\udfff"),
        ("type", "customer.created\n"),
    ],
)
def test_webhook_event_fields_with_unprintable_characters_are_a_400(
    receiver: LiveServer, field: str, value: str
) -> None:
    # NUL cannot be stored in PostgreSQL text, unpaired surrogates in no UTF-8 store.
    body = _event(**{field: value})

    status, error = _post(receiver, body, sign(body))

    assert status == 400
    assert error.startswith(f"event {field} ")
    assert inbox_rows() == []
