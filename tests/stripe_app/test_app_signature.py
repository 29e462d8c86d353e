from __future__ import annotations

import time

import pytest
import stripe

from stripe_app.app_signature import (
    AppSignatureError,
    SignedCaller,
    check_ids,
    signed_payload,
    verify_app_signature,
)
from tests.conftest import APP_SECRET

CALLER = SignedCaller(user_id="usr_K2Fh3tQ1", account_id="acct_1Nv0FGQ9RKHgCVdK")
OTHER_SECRET = "absec_test_" + "e" * 32


def _header(
    payload: str, secret: str = APP_SECRET, timestamp: int | None = None
) -> str:
    return str(
        stripe.WebhookSignature.generate_signature_header(
            payload, secret, timestamp=timestamp
        )
    )


def test_signed_payload_is_compact_json_with_user_id_first() -> None:
    assert (
        signed_payload("usr_1", "acct_2") == '{"user_id":"usr_1","account_id":"acct_2"}'
    )


def test_verify_accepts_a_fresh_signature_over_the_compact_json() -> None:
    header = _header(signed_payload(CALLER.user_id, CALLER.account_id))

    assert verify_app_signature(header, CALLER, APP_SECRET) == CALLER


def test_verify_accepts_any_v1_while_the_secret_is_rolled() -> None:
    payload = signed_payload(CALLER.user_id, CALLER.account_id)
    old = _header(payload, OTHER_SECRET)
    new_v1 = _header(payload, APP_SECRET, timestamp=int(old.split(",")[0][2:]))
    header = f"{old},{new_v1.split(',')[1]},v0=deadbeef"

    assert verify_app_signature(header, CALLER, APP_SECRET) == CALLER


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("v1=abc", "malformed"),
        ("t=notanumber,v1=abc", "malformed"),
        ("t=1700000000", "no v1"),
        ("t=1700000000,v0=abc", "no v1"),
    ],
)
def test_verify_refuses_a_missing_or_malformed_header(
    header: str | None, reason: str
) -> None:
    with pytest.raises(AppSignatureError) as info:
        verify_app_signature(header, CALLER, APP_SECRET)

    assert reason in info.value.reason


def test_verify_refuses_a_signature_older_than_300_seconds() -> None:
    payload = signed_payload(CALLER.user_id, CALLER.account_id)
    header = _header(payload, timestamp=int(time.time()) - 301)

    with pytest.raises(AppSignatureError) as info:
        verify_app_signature(header, CALLER, APP_SECRET)

    assert "older than 300 seconds" in info.value.reason


def test_verify_refuses_a_signature_dated_in_the_future() -> None:
    """The SDK only checks age; a timestamp beyond the tolerance ahead of our clock
    would stay valid for that long, so it is refused as well."""
    payload = signed_payload(CALLER.user_id, CALLER.account_id)
    header = _header(payload, timestamp=int(time.time()) + 301)

    with pytest.raises(AppSignatureError) as info:
        verify_app_signature(header, CALLER, APP_SECRET)

    assert "in the future" in info.value.reason


def test_verify_accepts_a_signature_just_inside_the_tolerance() -> None:
    payload = signed_payload(CALLER.user_id, CALLER.account_id)
    header = _header(payload, timestamp=int(time.time()) - 240)

    assert verify_app_signature(header, CALLER, APP_SECRET) == CALLER


@pytest.mark.parametrize(
    "payload",
    [
        '{"user_id": "usr_K2Fh3tQ1", "account_id": "acct_1Nv0FGQ9RKHgCVdK"}',
        '{"account_id":"acct_1Nv0FGQ9RKHgCVdK","user_id":"usr_K2Fh3tQ1"}',
        '{"user_id":"usr_K2Fh3tQ1","account_id":"acct_OTHER"}',
    ],
    ids=["spaces", "key-order", "other-account"],
)
def test_verify_refuses_a_signature_over_other_text(payload: str) -> None:
    with pytest.raises(AppSignatureError) as info:
        verify_app_signature(_header(payload), CALLER, APP_SECRET)

    assert "does not match" in info.value.reason


def test_verify_refuses_another_secret_and_never_repeats_the_header() -> None:
    header = _header(signed_payload(CALLER.user_id, CALLER.account_id), OTHER_SECRET)

    with pytest.raises(AppSignatureError) as info:
        verify_app_signature(header, CALLER, APP_SECRET)

    assert "does not match" in info.value.reason
    assert header.split("v1=")[1] not in str(info.value)


def test_verify_refuses_to_run_without_an_age_check() -> None:
    header = _header(signed_payload(CALLER.user_id, CALLER.account_id))

    with pytest.raises(ValueError, match="tolerance"):
        verify_app_signature(header, CALLER, APP_SECRET, tolerance=0)


@pytest.mark.parametrize(
    ("user_id", "account_id", "field"),
    [
        (None, "acct_1", "user_id"),
        ("acct_1", "acct_1", "user_id"),
        ("usr_1", 12, "account_id"),
        ("usr_1", "acct_1\u00e9", "account_id"),
        ("usr_1", "acct_1 ", "account_id"),
    ],
)
def test_check_ids_refuses_values_that_are_not_stripe_ids(
    user_id: object, account_id: object, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        check_ids(user_id, account_id)
