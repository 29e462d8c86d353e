"""``account.application.deauthorized``: the merchant removed the app. The workspace
forgets its Stripe account and every OAuth token of the workspace is revoked; a replay
finds no linked workspace and is skipped by the worker, so it changes nothing."""

from __future__ import annotations

from sqlmodel import Session

from server.log_config import get_logger
from stripe_app.installs import unlink_workspace
from stripe_app.registry import EventContext

logger = get_logger(__name__)


def handle_account_application_deauthorized(
    session: Session, ctx: EventContext
) -> None:
    workspace = ctx.workspace
    if workspace.stripe_account_id != ctx.account:
        logger.info(
            "stripe.deauthorized_already_unlinked",
            event_id=ctx.event_id,
            workspace_id=workspace.id,
        )
        return
    revoked = unlink_workspace(session, workspace)
    logger.info(
        "stripe.app_deauthorized",
        event_id=ctx.event_id,
        workspace_id=workspace.id,
        revoked_count=revoked,
    )
