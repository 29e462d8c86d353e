"""Revoking every OAuth grant of a workspace at once.

Used when a workspace's Stripe account is unlinked (the app's Disconnect button, or
Stripe's ``account.application.deauthorized`` webhook): the tokens the Stripe App holds
for that workspace must stop working. Every OAuth access and refresh token of the
workspace is revoked, whatever client it was issued to; API keys are not OAuth grants
and stay valid."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col

from server.models import OAuthToken, utcnow


def revoke_workspace_tokens(session: Session, workspace_id: int) -> int:
    """Revoke the workspace's live OAuth tokens in the caller's transaction; returns
    how many token pairs were revoked (already revoked ones are left as they were)."""
    result = session.exec(
        update(OAuthToken)
        .where(col(OAuthToken.workspace_id) == workspace_id)
        .where(col(OAuthToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount)
