"""The few Stripe API look-ups the handlers need, made as the connected account.

A plain httpx client: the platform's secret key as bearer, the installing account in the
``Stripe-Account`` header, the base address from ``CODEQR_STRIPE_API_BASE`` (a loopback
fake in tests). Handlers run in worker threads, so the client is synchronous.

Failures come in two kinds: :class:`StripeApiUnavailable` (no key configured, network
error, rate limit, Stripe's 5xx, a revoked installation) means "try again later";
a 404 is an answer (the object does not exist for that account)."""

from __future__ import annotations

import re
import threading
from typing import Any

import httpx
import stripe

from server.log_config import get_logger
from server.settings import get_settings

logger = get_logger(__name__)

TIMEOUT_SECONDS = 10.0
_OBJECT_ID = re.compile(r"^[A-Za-z0-9_]{3,255}$")


class StripeApiError(Exception):
    """A look-up that did not give an answer; the message names the request, never the key."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class StripeApiUnavailable(StripeApiError):
    """Stripe could not be asked now (or refused us): worth another try later."""


class StripeApi:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._api_key = api_key
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"Stripe-Version": stripe.api_version},
        )

    def close(self) -> None:
        self._client.close()

    def retrieve_customer(
        self, account: str, customer_id: str
    ) -> dict[str, Any] | None:
        """``GET /v1/customers/{id}``: the customer, or None when it does not exist (or
        was deleted) for ``account``."""
        _check_id("customer id", customer_id)
        body = self._get(account, f"/v1/customers/{customer_id}", {})
        if body is None or body.get("deleted"):
            return None
        return body

    def invoice_ids_for_payment_intent(
        self, account: str, payment_intent_id: str
    ) -> list[str]:
        """The invoices a PaymentIntent paid (``GET /v1/invoice_payments``): since API
        2025-03-31 a charge no longer names its invoice."""
        _check_id("payment intent id", payment_intent_id)
        params = {
            "payment[type]": "payment_intent",
            "payment[payment_intent]": payment_intent_id,
            "limit": "100",
        }
        body = self._get(account, "/v1/invoice_payments", params)
        rows: list[dict[str, Any]] = (body or {}).get("data", [])
        return [row["invoice"] for row in rows if isinstance(row.get("invoice"), str)]

    def _get(
        self, account: str, path: str, params: dict[str, str]
    ) -> dict[str, Any] | None:
        _check_id("account", account)
        if not self._api_key:
            raise StripeApiUnavailable(
                "CODEQR_STRIPE_API_KEY is not set: cannot look anything up in Stripe"
            )
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Stripe-Account": account,
        }
        try:
            response = self._client.get(path, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise StripeApiUnavailable(
                f"GET {path} failed: {type(exc).__name__}"
            ) from exc
        return _answer(response, path, account)


def _answer(response: httpx.Response, path: str, account: str) -> dict[str, Any] | None:
    status = response.status_code
    logger.info("stripe_api.request", path=path, account=account, status=status)
    if status == 404:
        return None
    if status >= 400:
        message = (
            f"GET {path} as {account}: Stripe answered {status} {_error_type(response)}"
        )
        raise StripeApiUnavailable(message, status)
    try:
        body = response.json()
    except ValueError as exc:
        raise StripeApiUnavailable(f"GET {path}: answer is not JSON", status) from exc
    if not isinstance(body, dict):
        raise StripeApiUnavailable(f"GET {path}: answer is not an object", status)
    return body


def _error_type(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return ""
    return str(error.get("type") or error.get("code") or "")


def _check_id(what: str, value: str) -> None:
    if not _OBJECT_ID.match(value):
        raise StripeApiError(f"{what} {value[:40]!r} is not a Stripe id")


_lock = threading.Lock()
_api: StripeApi | None = None


def get_stripe_api() -> StripeApi:
    """The process's client, built from the settings on first use."""
    global _api
    with _lock:
        if _api is None:
            settings = get_settings()
            _api = StripeApi(
                settings.stripe_api_base, settings.stripe_api_key.get_secret_value()
            )
        return _api


def reset_stripe_api() -> None:
    global _api
    with _lock:
        if _api is not None:
            _api.close()
        _api = None
