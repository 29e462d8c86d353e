"""The live side: conversion events as they are recorded, on any instance."""

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated

import strawberry

from server.api import objects, store
from server.api.context import READ_SCOPE, ApiInfo, require
from server.api.fields import subscription
from server.api.objects import Event, EventKind
from server.bus import BusEvent, get_bus
from server.log_config import get_logger

logger = get_logger(__name__)


async def _close(stream: AsyncIterator[BusEvent]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


@strawberry.type(
    description="Live streams over WebSocket (graphql-transport-ws protocol); the "
    "bearer token goes in the connection_init payload as "
    '{"Authorization": "Bearer <token>"}.'
)
class Subscription:
    @subscription(
        description="Clicks, leads and sales of the workspace as they are recorded, "
        "as the same node types as the `events` query. Each is read fresh when it "
        "arrives; a slow subscriber may miss notices, never rows (query `events`)."
    )
    async def events(
        self,
        info: ApiInfo,
        kinds: Annotated[
            list[EventKind] | None,
            strawberry.argument(description="Only these kinds; null or empty: all."),
        ] = None,
        include_test_mode: Annotated[
            bool,
            strawberry.argument(
                description="Stream Stripe test-mode leads and sales too (each node "
                "says its `livemode`); false keeps only live data."
            ),
        ] = True,
    ) -> AsyncGenerator[Event, None]:
        principal = require(info, READ_SCOPE)
        wanted = {kind.name for kind in kinds or EventKind}
        stream = get_bus().subscribe(principal.workspace_id)
        logger.info("api.subscribed", workspace_id=principal.workspace_id)
        try:
            async for notice in stream:
                if principal.is_expired():
                    return
                if notice.kind not in wanted:
                    continue
                if not (notice.livemode or include_test_mode):
                    continue
                row = await store.read(
                    store.event_by_id, principal.workspace_id, notice.kind, notice.id
                )
                if row is not None:
                    yield objects.event_from_row(row)
        finally:
            await _close(stream)
            logger.info("api.unsubscribed", workspace_id=principal.workspace_id)
