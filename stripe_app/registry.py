"""Stripe event type -> handler: the one visible map of what we act on.

The worker resolves the workspace from ``event.account``, checks the plan, and then calls
the handler inside one transaction. A handler raises :class:`RetryLater` when a row it
needs is not there yet (events arrive out of order), :class:`SkipEvent` when the event is
valid but there is nothing for us to do, and returns normally when it is done."""

from __future__ import annotations

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


def _handlers() -> dict[str, Handler]:
    # Filled by stripe_app.handlers (TODO(#2) until the handlers land).
    try:
        from stripe_app.handlers import HANDLERS
    except ImportError:
        return {}
    return HANDLERS


HANDLERS: dict[str, Handler] = _handlers()

# Events that concern the installation itself: handled whatever the workspace's plan.
PLAN_EXEMPT = frozenset(
    {"account.application.deauthorized", "account.application.authorized"}
)
