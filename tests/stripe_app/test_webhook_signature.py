"""stripe_app.signature agrees with the SDK's verify_header, header for header."""

from __future__ import annotations

import time

import pytest
import stripe

from stripe_app.signature import SignatureError, parse_header, verify
from tests.conftest import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET
from tests.stripe_app.conftest import fixture_bytes, sign

BODY = fixture_bytes("event_checkout_session_completed.json")
OTHER_SECRET = "whsec_other_" + "9" * 30


def _sdk_accepts(body: bytes, header: str, secret: str) -> bool:
    try:
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance=300)
    except stripe.SignatureVerificationError:
        return False
    return True


def _ours_accepts(body: bytes, header: str, secrets: list[str]) -> bool:
    try:
        verify(body, header, [s.encode() for s in secrets], 300)
    except SignatureError:
        return False
    return True


def _headers() -> dict[str, str]:
    # Built when a test runs: the timestamps are relative to that moment.
    now = int(time.time())
    return {
        "signed now": sign(BODY),
        "signed by the other configured secret": sign(BODY, secret=OLD_WEBHOOK_SECRET),
        "unknown secret": sign(BODY, secret=OTHER_SECRET),
        "stale": sign(BODY, timestamp=now - 301),
        "just in time": sign(BODY, timestamp=now - 250),
        "spaces after commas": sign(BODY).replace(",", ", "),
        "uppercase hex": sign(BODY).upper().replace("T=", "t=").replace("V1=", "v1="),
        "two v1, second valid": f"{sign(BODY, secret=OTHER_SECRET)},{sign(BODY)[-67:]}",
        "v0 before v1": f"t={now},v0=abc," + sign(BODY, timestamp=now).split(",")[1],
        "no t": sign(BODY).split(",")[1],
        "empty": ",",
        "truncated signature": sign(BODY)[:-2],
    }


CASES = list(_headers())


@pytest.mark.parametrize("name", CASES)
def test_signature_verify_agrees_with_the_sdk(name: str) -> None:
    header = _headers()[name]
    configured = [WEBHOOK_SECRET, OLD_WEBHOOK_SECRET]

    sdk = any(_sdk_accepts(BODY, header, secret) for secret in configured)

    assert _ours_accepts(BODY, header, configured) is sdk


def test_signature_verify_refuses_far_future_dates_unlike_the_sdk() -> None:
    header = sign(BODY, timestamp=int(time.time()) + 400)

    assert _sdk_accepts(BODY, header, WEBHOOK_SECRET)  # the SDK checks the past only
    assert not _ours_accepts(BODY, header, [WEBHOOK_SECRET])


def test_signature_verify_returns_the_signed_timestamp() -> None:
    signed_at = int(time.time()) - 5
    header = sign(BODY, timestamp=signed_at)

    assert verify(BODY, header, [WEBHOOK_SECRET.encode()], 300) == signed_at


def test_signature_verify_refuses_a_tolerance_of_zero() -> None:
    with pytest.raises(ValueError, match="tolerance must be positive"):
        verify(BODY, sign(BODY), [WEBHOOK_SECRET.encode()], 0)


def test_signature_verify_checks_non_ascii_bodies_over_their_utf8_bytes() -> None:
    body = '{"name": "Zoë Ünal 東京"}'.encode()

    verify(body, sign(body), [WEBHOOK_SECRET.encode()], 300)


def test_signature_parse_header_ignores_non_ascii_signatures() -> None:
    with pytest.raises(SignatureError, match="no v1 signature"):
        parse_header("t=1785412800,v1=é")


def test_signature_parse_header_caps_the_number_of_signatures() -> None:
    header = "t=1785412800," + ",".join(["v1=00"] * 33)

    with pytest.raises(SignatureError, match="too many v1 signatures"):
        parse_header(header)
