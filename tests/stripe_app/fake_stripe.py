"""A fake of the few Stripe API endpoints the handlers call, served by a real uvicorn on
127.0.0.1 (a free port). Tests register objects built from ../shared/fixtures/stripe and
point ``CODEQR_STRIPE_API_BASE`` at it.

Like Stripe, it answers only with the platform's secret key as bearer, and looks objects
up in the connected account named by ``Stripe-Account`` (a customer of another account
is a 404). Every request is recorded so tests can assert what was asked."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import fixture_path, free_port, reset_process_state

API_KEY = "sk_test_fake_platform_key_0123456789"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    stripe_account: str | None


@dataclass
class FakeStripe:
    api_key: str = API_KEY
    customers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    invoice_payments: dict[tuple[str, str], list[dict[str, Any]]] = field(
        default_factory=dict
    )
    requests: list[Recorded] = field(default_factory=list)
    fail_with: int | None = None  # answer every request with this status (outage)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- registering objects (built from the fixtures) --------------------------------

    def add_customer(self, account: str, customer: dict[str, Any]) -> None:
        with self._lock:
            self.customers[(account, customer["id"])] = copy.deepcopy(customer)

    def add_invoice_payment(
        self, account: str, *, invoice_id: str, payment_intent_id: str, amount: int
    ) -> None:
        row = json.loads(fixture_path("invoice_payment.json").read_text())
        row.update(
            id=f"inpay_{invoice_id[3:]}",
            invoice=invoice_id,
            amount_paid=amount,
            amount_requested=amount,
            currency="usd",
            livemode=False,
            status="paid",
            payment={"type": "payment_intent", "payment_intent": payment_intent_id},
        )
        with self._lock:
            self.invoice_payments.setdefault((account, payment_intent_id), []).append(
                row
            )

    def calls(self, path_prefix: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    # --- the HTTP side -----------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/customers/{customer_id}", self._customer, methods=["GET"]),
                Route("/v1/invoice_payments", self._invoice_payments, methods=["GET"]),
            ]
        )

    def _check(self, request: Request) -> tuple[str | None, JSONResponse | None]:
        account = request.headers.get("stripe-account")
        with self._lock:
            self.requests.append(
                Recorded(
                    request.method,
                    request.url.path,
                    dict(request.query_params),
                    request.headers.get("authorization"),
                    account,
                )
            )
        if self.fail_with is not None:
            return None, _error(self.fail_with, "api_error", "fake outage")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return None, _error(
                401, "invalid_request_error", "Invalid API Key provided"
            )
        if not account:
            return None, _error(400, "invalid_request_error", "Stripe-Account missing")
        return account, None

    async def _customer(self, request: Request) -> JSONResponse:
        account, refusal = self._check(request)
        if refusal is not None:
            return refusal
        key = (str(account), request.path_params["customer_id"])
        with self._lock:
            customer = self.customers.get(key)
        if customer is None:
            return _error(404, "invalid_request_error", "No such customer")
        return JSONResponse(customer)

    async def _invoice_payments(self, request: Request) -> JSONResponse:
        account, refusal = self._check(request)
        if refusal is not None:
            return refusal
        query = request.query_params
        if query.get("payment[type]") != "payment_intent":
            return _error(400, "invalid_request_error", "payment[type] is required")
        key = (str(account), query.get("payment[payment_intent]", ""))
        with self._lock:
            rows = list(self.invoice_payments.get(key, []))
        return JSONResponse(
            {
                "object": "list",
                "data": rows,
                "has_more": False,
                "url": "/v1/invoice_payments",
            }
        )


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"type": kind, "message": message}}, status_code=status
    )


@dataclass
class _Running:
    server: uvicorn.Server
    thread: threading.Thread


def start_fake_stripe(fake: FakeStripe) -> _Running:
    port = free_port()
    config = uvicorn.Config(
        fake.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake Stripe API did not start")
        time.sleep(0.02)
    fake.url = f"http://127.0.0.1:{port}"
    return _Running(server, thread)


@pytest.fixture
def fake_stripe(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeStripe]:
    """The fake API, with the product's settings pointed at it."""
    fake = FakeStripe()
    running = start_fake_stripe(fake)
    monkeypatch.setenv("CODEQR_STRIPE_API_BASE", fake.url)
    monkeypatch.setenv("CODEQR_STRIPE_API_KEY", fake.api_key)
    reset_process_state()
    yield fake
    running.server.should_exit = True
    running.thread.join(timeout=15)
