"""Stripe event type -> handler: the one visible map of what we act on.

The worker resolves the workspace from ``event.account``, checks the plan, and then calls
the handler inside one transaction. A handler raises :class:`RetryLater` when a row it
needs is not there yet (events arrive out of order), :class:`SkipEvent` when the event is
valid but there is nothing for us to do, and returns normally when it is done."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from server.models import Workspace


class RetryLater(Exception):
    """A row this event depends on does not exist yet; try again after a backoff."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SkipEvent(Exception):
    """Nothing to do for this event; it is kept as skipped with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class EventContext:
    event_id: str
    type: str
    account: str | None
    livemode: bool
    created: datetime
    api_version: str | None
    object: dict[str, Any]  # event["data"]["object"], plain JSON
    previous_attributes: dict[str, Any] | None
    workspace: Workspace


Handler = Callable[[Session, EventContext], None]


HANDLERS: dict[str, Handler] = {}
_loaded = False


def load_handlers() -> dict[str, Handler]:
    """:data:`HANDLERS`, with the map of ``stripe_app.handlers`` merged in once.

    Import order does not matter: when ``stripe_app.handlers`` is imported first, it
    imports this module before its own map exists, and the merge happens at the first
    use instead. Entries already present (a test's handler) are kept."""
    global _loaded
    if _loaded:
        return HANDLERS
    module = importlib.import_module("stripe_app.handlers")
    found: dict[str, Handler] | None = getattr(module, "HANDLERS", None)
    if found is not None:
        for event_type, handler in found.items():
            HANDLERS.setdefault(event_type, handler)
        _loaded = True
    return HANDLERS


load_handlers()

# Events that concern the installation itself: handled whatever the workspace's plan.
PLAN_EXEMPT = frozenset(
    {"account.application.deauthorized", "account.application.authorized"}
)
