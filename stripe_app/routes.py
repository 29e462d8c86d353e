"""``POST /stripe/webhook``: verify, record, acknowledge. The handling happens later, in
:mod:`stripe_app.worker`.

The hot path does only what acknowledging needs: read the raw body (bounded), check its
``Stripe-Signature`` against every configured secret, parse the JSON once for five
fields, and insert the event into the inbox by id (a redelivery inserts nothing).
Every failure is a 400 with a one-line reason and stores nothing. Without any
configured secret the route is off (503)."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.db import get_engine
from server.log_config import get_logger
from server.settings import get_settings
from stripe_app import inbox, registry
from stripe_app.inbox import IncomingEvent
from stripe_app.signature import SignatureError, verify
from stripe_app.worker import get_worker

logger = get_logger(__name__)

MAX_FIELD_LENGTH = 255  # the width of stripe_event.id/type/account


class RejectedWebhook(Exception):
    """The request is not a verified Stripe event; ``reason`` is the 400's message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def stripe_webhook(request: Request) -> Response:
    settings = get_settings()
    secrets = [s.get_secret_value().encode() for s in settings.stripe_webhook_secrets]
    if not secrets:
        logger.warning("webhook.rejected", reason="no webhook secret is configured")
        return _error(503, "webhook receiver is not configured")

    try:
        body = await read_body(request, settings.webhook_max_body_bytes)
        verify(
            body,
            request.headers.get("stripe-signature"),
            secrets,
            settings.webhook_tolerance_seconds,
        )
        event = parse_event(body)
    except (RejectedWebhook, SignatureError) as exc:
        logger.warning("webhook.rejected", reason=exc.reason)
        return _error(400, exc.reason)

    handled = event.type in registry.load_handlers()
    skip_reason = None if handled else f"unhandled event type {event.type}"
    stored = await run_in_threadpool(inbox.store, get_engine(), event, skip_reason)
    if stored and handled:
        get_worker().wake()

    logger.info(
        "webhook.accepted",
        event_id=event.id,
        type=event.type,
        account=event.account,
        duplicate=not stored,
        skipped=not handled,
    )
    answer: dict[str, Any] = {"received": True}
    if not stored:
        answer["duplicate"] = True
    return JSONResponse(answer)


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it is known to exceed ``limit`` bytes: from
    ``Content-Length`` when given, else while streaming."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RejectedWebhook(f"body too large: over the limit of {limit} bytes")

    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RejectedWebhook(f"body too large: over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_event(body: bytes) -> IncomingEvent:
    """The inbox fields of a verified snapshot event (``object: "event"``)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedWebhook("body is not JSON: it is not UTF-8") from exc
    if text.startswith("\ufeff"):
        raise RejectedWebhook("body is not JSON: it starts with a byte order mark")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RejectedWebhook(
            f"body is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise RejectedWebhook("body is not JSON we accept: nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        reason = str(exc).split(";")[0]  # not Python's advice on raising the limit
        raise RejectedWebhook(f"body is not JSON we accept: {reason}") from exc

    if not isinstance(data, dict):
        raise RejectedWebhook("body is not a Stripe event object")
    if data.get("object") == "v2.core.event":
        raise RejectedWebhook(
            "thin (v2) events are not supported: send snapshot events"
        )
    if data.get("object") != "event":
        raise RejectedWebhook(
            'body is not a Stripe event object (object is not "event")'
        )

    event_id = _text_field(data, "id")
    if not event_id.startswith("evt_"):
        raise RejectedWebhook("event id does not start with evt_")
    event_type = _text_field(data, "type")
    account = data.get("account")
    if account is not None and not _is_short_text(account):
        raise RejectedWebhook("event account is not a short printable string")
    inner = data.get("data")
    if not isinstance(inner, dict) or not isinstance(inner.get("object"), dict):
        raise RejectedWebhook("event has no data.object")

    created = data.get("created")
    return IncomingEvent(
        id=event_id,
        type=event_type,
        account=account,
        livemode=data.get("livemode") is True,
        # Without a usable time the event is dated when it arrived (never 1970).
        created=created
        if type(created) is int and 0 < created < 2**31
        else int(time.time()),
        payload=text,
        ordering_key=inbox.ordering_key(data),
    )


def _text_field(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not _is_short_text(value):
        raise RejectedWebhook(
            f"event {name} is missing or not a short printable string"
        )
    assert isinstance(value, str)
    return value


def _is_short_text(value: object) -> bool:
    """A non-empty string of at most MAX_FIELD_LENGTH printable characters: no NUL
    (PostgreSQL text cannot hold it), no unpaired surrogate (no UTF-8 store can)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_FIELD_LENGTH
        and value.isprintable()
    )


routes: list[BaseRoute] = [Route("/stripe/webhook", stripe_webhook, methods=["POST"])]
