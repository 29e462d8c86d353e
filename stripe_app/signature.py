"""Stripe-Signature verification over the raw request body.

The same check as ``stripe.WebhookSignature.verify_header`` (HMAC-SHA256 of
``"<t>.<body>"`` keyed with the endpoint secret, compared in constant time with every
``v1`` of the header, other schemes ignored), done once per request for several secrets:
the header is parsed once, and each failure gets a short reason that names no secret and
repeats nothing of the header.

One difference, on purpose: the timestamp must be within the tolerance on both sides.
The SDK accepts any timestamp in the future; a clock a few minutes apart is covered by
the tolerance, and a signature dated far ahead would stay replayable until that date."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

SCHEME = "v1"
MAX_SIGNATURES = 32  # Stripe sends one per live secret (two while one is rolled)


class SignatureError(Exception):
    """The request is not signed by any configured secret; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_header(header: str) -> tuple[int, list[str]]:
    """``t=<unix>,v1=<hex>[,v1=<hex>...]`` -> (timestamp, v1 signatures).

    Items are split on ``,`` and ``=`` exactly as Stripe writes them: no spaces, so an
    item written `` v1=...`` is not a v1 signature (as in the SDK)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            continue
        if key == "t" and timestamp is None:
            timestamp = _parse_timestamp(value)
        elif key == SCHEME and value.isascii():
            signatures.append(value)

    if timestamp is None:
        raise SignatureError("Stripe-Signature header has no timestamp (t=)")
    if not signatures:
        raise SignatureError("Stripe-Signature header has no v1 signature")
    if len(signatures) > MAX_SIGNATURES:
        raise SignatureError("Stripe-Signature header has too many v1 signatures")
    return timestamp, signatures


def _parse_timestamp(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise SignatureError("Stripe-Signature header has a malformed timestamp")
    return int(value)


def compute_signature(payload: bytes, timestamp: int, secret: bytes) -> str:
    signed = b"%d.%s" % (timestamp, payload)
    return hmac.new(secret, signed, hashlib.sha256).hexdigest()


def verify(
    payload: bytes,
    header: str | None,
    secrets: Sequence[bytes],
    tolerance: int,
    now: float | None = None,
) -> int:
    """Accept when any v1 of ``header`` matches any of ``secrets`` and the timestamp is
    within ``tolerance`` seconds of ``now``; return the timestamp, else raise
    :class:`SignatureError`."""
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    if tolerance <= 0:
        raise ValueError(f"tolerance must be positive (got {tolerance}): 0 disables it")

    timestamp, signatures = parse_header(header)

    if not _matches_any(payload, timestamp, signatures, secrets):
        raise SignatureError(
            "no v1 signature matches the payload for any configured secret"
        )

    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise SignatureError(
            f"timestamp {timestamp} is outside the tolerance of {tolerance} s"
        )
    return timestamp


def _matches_any(
    payload: bytes, timestamp: int, signatures: list[str], secrets: Sequence[bytes]
) -> bool:
    found = False
    for secret in secrets:
        expected = compute_signature(payload, timestamp, secret)
        for signature in signatures:
            # No early exit: the time taken does not tell which secret matched.
            found |= hmac.compare_digest(expected, signature)
    return found
