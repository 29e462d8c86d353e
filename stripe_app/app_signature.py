"""Signed requests from the app's settings view in the Stripe Dashboard.

The view calls ``fetchStripeSignature()`` and sends the result as ``Stripe-Signature``
beside ``user_id`` and ``account_id`` in the JSON body. Stripe signs the JSON text
``{"user_id":"usr_…","account_id":"acct_…"}`` (that key order, no spaces) with the app
signing secret, the same HMAC scheme as webhooks. We rebuild that text from the body's
two values and verify it with the Stripe SDK, always with a tolerance: the SDK's default
for ``verify_header`` is no age check at all.

The signature proves which Dashboard user of which Stripe account is calling; it does not
cover the method, the path or any other field of the body."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import stripe

SIGNATURE_TOLERANCE_SECONDS = 300

_USER_ID = re.compile(r"usr_[A-Za-z0-9]{1,64}")
_ACCOUNT_ID = re.compile(r"acct_[A-Za-z0-9]{1,64}")

# The SDK's messages, in the order it checks, mapped to reasons that tell the caller
# what to do. The header itself is never repeated back.
_REASONS = (
    ("Unable to extract timestamp", "Stripe-Signature is malformed: no t=<timestamp>"),
    ("No signatures found with expected scheme", "Stripe-Signature has no v1 value"),
    (
        "No signatures found matching",
        "Stripe-Signature does not match user_id and account_id "
        "(another secret, or other values than the ones signed)",
    ),
    (
        "Timestamp outside the tolerance zone",
        f"Stripe-Signature is older than {SIGNATURE_TOLERANCE_SECONDS} seconds; "
        "fetch a fresh one with fetchStripeSignature()",
    ),
)


class AppSignatureError(Exception):
    """The request does not carry a valid signature; ``reason`` is one safe line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignedCaller:
    """Who signed: a Dashboard user (``usr_…``) of a Stripe account (``acct_…``)."""

    user_id: str
    account_id: str


def signed_payload(user_id: str, account_id: str) -> str:
    """The exact text Stripe signs: JavaScript's ``JSON.stringify`` of the two ids."""
    return json.dumps(
        {"user_id": user_id, "account_id": account_id}, separators=(",", ":")
    )


def check_ids(user_id: object, account_id: object) -> SignedCaller:
    """The body's ids, if they look like Stripe ids; raises ValueError otherwise."""
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
        raise ValueError("user_id must be a Stripe Dashboard user id (usr_…)")
    if not isinstance(account_id, str) or not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError("account_id must be a Stripe account id (acct_…)")
    return SignedCaller(user_id=user_id, account_id=account_id)


def verify_app_signature(
    header: str | None,
    caller: SignedCaller,
    secret: str,
    *,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> SignedCaller:
    """Return ``caller`` when ``header`` signs its ids with ``secret`` within
    ``tolerance`` seconds; any ``v1`` value may match (Stripe signs with both secrets
    while one is being rolled). Raises :class:`AppSignatureError` otherwise."""
    if not header:
        raise AppSignatureError("Stripe-Signature header is missing")
    if not secret:
        raise ValueError("the app signing secret is empty")
    if tolerance <= 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")

    payload = signed_payload(caller.user_id, caller.account_id)
    try:
        stripe.WebhookSignature.verify_header(
            payload, header, secret, tolerance=tolerance
        )
    except stripe.SignatureVerificationError as exc:
        raise AppSignatureError(_reason(str(exc))) from None

    # The SDK checks only the age: a timestamp far ahead of our clock would keep the
    # signature valid (and replayable) for that long.
    if _timestamp(header) > time.time() + tolerance:
        raise AppSignatureError(
            f"Stripe-Signature is dated more than {tolerance} seconds in the future; "
            "check the server's clock"
        )
    return caller


def _timestamp(header: str) -> int:
    """The header's timestamp, parsed exactly as the SDK's verification parsed it (so
    after a successful verification it exists and is an integer)."""
    items = [item.split("=", 2) for item in header.split(",")]
    return int(next(item[1] for item in items if item[0] == "t"))


def _reason(message: str) -> str:
    for prefix, reason in _REASONS:
        if message.startswith(prefix):
            return reason
    return "Stripe-Signature is not valid"
