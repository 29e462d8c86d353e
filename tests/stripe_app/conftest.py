"""Fixtures of the Stripe area: signed webhook deliveries built from the shared Stripe
fixtures, a receiver with or without its worker, the inbox as rows, test handlers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stripe
from sqlmodel import select

from server import db
from server.cli import create_workspace
from server.log_config import configure_logging
from server.models import Click, StripeEvent, Workspace
from stripe_app import registry
from stripe_app.worker import reset_worker
from tests.conftest import (
    RESET_HOOKS,
    WEBHOOK_SECRET,
    LiveServer,
    fixture_path,
    start_server,
)

if reset_worker not in RESET_HOOKS:
    RESET_HOOKS.append(reset_worker)

ACCOUNT = "acct_1TestConnected000"  # the account of every event fixture


# --- payloads --------------------------------------------------------------------------


def fixture_bytes(name: str) -> bytes:
    """A shared Stripe fixture file, byte for byte."""
    return fixture_path(name).read_bytes()


def event_bytes(name: str, **changes: Any) -> bytes:
    """A fixture event with top-level fields changed (e.g. ``id``, ``account``), written
    back as pretty JSON: sign the returned bytes, not a re-dump of them."""
    event = json.loads(fixture_bytes(name))
    event.update(changes)
    return json.dumps(event, indent=2).encode()


def sign(
    body: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> str:
    """The Stripe-Signature header the real SDK makes for exactly these bytes."""
    return stripe.WebhookSignature.generate_signature_header(
        body.decode("utf-8"), secret, timestamp=timestamp
    )


def deliver(
    client: httpx.Client, body: bytes, header: str | None = None
) -> httpx.Response:
    """POST one delivery to /stripe/webhook, signed with the test secret by default."""
    headers = {"Content-Type": "application/json"}
    signature = sign(body) if header is None else header
    if signature:
        headers["Stripe-Signature"] = signature
    return client.post("/stripe/webhook", content=body, headers=headers)


# --- the inbox -------------------------------------------------------------------------


def inbox_rows() -> list[StripeEvent]:
    with db.session_scope() as session:
        return list(session.exec(select(StripeEvent).order_by(StripeEvent.id)).all())


def inbox_row(event_id: str) -> StripeEvent | None:
    with db.session_scope() as session:
        return session.get(StripeEvent, event_id)


def wait_for_click(click_id: str, timeout: float = 15.0) -> None:
    """Wait until the redirect's batched writer has stored the click (an event naming
    it before that is retried, which tests counting attempts must not see)."""

    def stored() -> bool:
        with db.session_scope() as session:
            return session.get(Click, click_id) is not None

    wait_for(stored, timeout, f"click {click_id} to be stored")


def wait_for(
    condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
) -> Any:
    """Poll until ``condition()`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_for_status(
    event_id: str, *statuses: str, timeout: float = 15.0
) -> StripeEvent:
    def reached() -> StripeEvent | None:
        row = inbox_row(event_id)
        return row if row is not None and row.status in statuses else None

    row: StripeEvent = wait_for(reached, timeout, f"{event_id} to be {statuses}")
    return row


@pytest.fixture
def log_output(capfd: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """Logging configured as the app does it; returns a reader of everything logged
    (to stderr) since the fixture started."""
    configure_logging("INFO")
    seen: list[str] = []

    def read() -> str:
        seen.append(capfd.readouterr().err)
        return "".join(seen)

    return read


# --- servers and workspaces ------------------------------------------------------------


@pytest.fixture
def receiver(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveServer]:
    """A live server whose worker is off: deliveries stay pending in the inbox."""
    monkeypatch.setenv("CODEQR_WORKER_ENABLED", "false")
    server = start_server()
    yield server
    server.stop()


@pytest.fixture
def quick_giving_up_receiver(
    settings_env: dict[str, str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LiveServer]:
    """A live server whose worker is off (tests drain the inbox themselves) and gives an
    event up after two tries with no backoff, so an event that would be retried until
    dead shows it at once. Stripe look-ups go to the fake API."""
    request.getfixturevalue("fake_stripe")
    monkeypatch.setenv("CODEQR_WORKER_ENABLED", "false")
    monkeypatch.setenv("CODEQR_WORKER_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("CODEQR_WORKER_BACKOFF_BASE_SECONDS", "0")
    server = start_server()
    yield server
    server.stop()


def make_workspace(
    slug: str = "acme", plan: str = "business", account: str | None = ACCOUNT
) -> Workspace:
    return create_workspace(slug, plan=plan, stripe_account=account)


@pytest.fixture
def business_workspace(settings_env: dict[str, str]) -> Workspace:
    """A Business-plan workspace linked to the fixtures' Stripe account."""
    return make_workspace()


# --- test handlers (doubles of a Stripe event handler) -------------------------------


@dataclass
class HandlerCall:
    event_id: str
    type: str
    workspace_slug: str
    context: registry.EventContext


class RecordingHandler:
    """Records each call; ``behaviour`` decides what the handler does (raise, write)."""

    def __init__(
        self, behaviour: Callable[[Any, registry.EventContext], None] | None = None
    ) -> None:
        self.calls: list[HandlerCall] = []
        self.behaviour = behaviour

    def __call__(self, session: Any, ctx: registry.EventContext) -> None:
        self.calls.append(HandlerCall(ctx.event_id, ctx.type, ctx.workspace.slug, ctx))
        if self.behaviour is not None:
            self.behaviour(session, ctx)


@pytest.fixture
def register_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., RecordingHandler]:
    """Put a recording test handler in the registry for an event type (undone after)."""

    def register(
        event_type: str,
        behaviour: Callable[[Any, registry.EventContext], None] | None = None,
    ) -> RecordingHandler:
        handler = RecordingHandler(behaviour)
        monkeypatch.setitem(registry.load_handlers(), event_type, handler)
        return handler

    return register


# --- the attribution tests' fixtures (fake Stripe API, a running app, a shop) ----------

from tests.stripe_app.attribution_fixtures import app_server, shop  # noqa: E402, F401
from tests.stripe_app.fake_stripe import fake_stripe  # noqa: E402, F401
