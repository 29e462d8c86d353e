"""Linking a Stripe account to a workspace, and unlinking it.

One Stripe account links to one workspace, and a workspace to one Stripe account: the
unique index on ``workspace.stripe_account_id`` decides races, never a check alone.
Unlinking also revokes the workspace's OAuth tokens, so the app loses its access; the
Disconnect button and the ``account.application.deauthorized`` webhook share
:func:`unlink_workspace`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from oauth.workspace_tokens import revoke_workspace_tokens
from server.log_config import get_logger
from server.models import Membership, Workspace, plan_allows_conversions, utcnow

logger = get_logger(__name__)


class InstallError(Exception):
    """An expected refusal; ``status`` and ``code`` become the HTTP answer."""

    status = 400
    code = "INVALID_REQUEST"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAMember(InstallError):
    status = 403
    code = "FORBIDDEN"


class PlanRequired(InstallError):
    status = 403
    code = "PLAN_REQUIRED"


class AccountAlreadyConnected(InstallError):
    status = 409
    code = "ACCOUNT_ALREADY_CONNECTED"


class WorkspaceAlreadyConnected(InstallError):
    status = 409
    code = "WORKSPACE_ALREADY_CONNECTED"


@dataclass(frozen=True)
class InstallStatus:
    account_id: str
    workspace: Workspace | None

    def to_json(self) -> dict[str, Any]:
        workspace = self.workspace
        if workspace is None:
            return {"connected": False, "account_id": self.account_id}
        since = workspace.stripe_connected_at
        return {
            "connected": True,
            "account_id": self.account_id,
            "workspace": {"slug": workspace.slug, "name": workspace.name},
            "plan": workspace.plan,
            "connected_since": _iso(since) if since else None,
            "tracking_active": plan_allows_conversions(workspace.plan),
        }


@dataclass(frozen=True)
class Unlinked:
    workspace_id: int | None
    revoked_tokens: int


def linked_workspace(session: Session, account_id: str) -> Workspace | None:
    statement = select(Workspace).where(Workspace.stripe_account_id == account_id)
    return session.exec(statement).first()


def install_status(session: Session, account_id: str) -> InstallStatus:
    return InstallStatus(account_id, linked_workspace(session, account_id))


def connect_account(
    session: Session, *, account_id: str, workspace_id: int, user_id: int | None
) -> tuple[InstallStatus, bool]:
    """Link ``account_id`` to the workspace on behalf of one of its members. Returns
    the new status and whether anything changed (reconnecting is a no-op)."""
    workspace = _workspace_of_member(session, workspace_id, user_id)

    if workspace.stripe_account_id == account_id:
        return InstallStatus(account_id, workspace), False
    if workspace.stripe_account_id is not None:
        raise _workspace_taken(workspace)
    if not plan_allows_conversions(workspace.plan):
        raise PlanRequired(
            f"workspace {workspace.slug!r} is on the {workspace.plan} plan; "
            "conversion tracking needs the Business plan or higher"
        )

    _link(session, workspace, account_id)
    logger.info(
        "stripe_app.account_connected",
        account_id=account_id,
        workspace_id=workspace.id,
        user_id=user_id,
    )
    return InstallStatus(account_id, workspace), True


def disconnect_account(session: Session, account_id: str) -> Unlinked:
    """Unlink ``account_id`` from its workspace, if any, and revoke that workspace's
    OAuth tokens. Disconnecting an account that is not linked changes nothing."""
    workspace = linked_workspace(session, account_id)
    if workspace is None:
        return Unlinked(workspace_id=None, revoked_tokens=0)
    return Unlinked(workspace.id, unlink_workspace(session, workspace))


def unlink_workspace(session: Session, workspace: Workspace) -> int:
    """Forget the workspace's Stripe account and revoke its OAuth tokens in the
    caller's transaction; returns how many tokens were revoked."""
    account_id = workspace.stripe_account_id
    workspace.stripe_account_id = None
    workspace.stripe_connected_at = None
    session.add(workspace)
    session.flush()

    assert workspace.id is not None
    revoked = revoke_workspace_tokens(session, workspace.id)
    logger.info(
        "stripe_app.account_disconnected",
        account_id=account_id,
        workspace_id=workspace.id,
        revoked_tokens=revoked,
    )
    return revoked


def _workspace_of_member(
    session: Session, workspace_id: int, user_id: int | None
) -> Workspace:
    workspace = session.get(Workspace, workspace_id)
    membership = None
    if user_id is not None:
        membership = session.exec(
            select(Membership)
            .where(Membership.user_id == user_id)
            .where(Membership.workspace_id == workspace_id)
        ).first()
    if workspace is None or membership is None:
        raise NotAMember(
            "the user who authorised this token is not a member of its workspace; "
            "connect again and pick a workspace you belong to"
        )
    return workspace


def _link(session: Session, workspace: Workspace, account_id: str) -> None:
    """Set the account only if the workspace still has none; the unique index refuses
    an account that another workspace holds, even one linked a moment ago."""
    try:
        result = session.exec(
            update(Workspace)
            .where(col(Workspace.id) == workspace.id)
            .where(col(Workspace.stripe_account_id).is_(None))
            .values(stripe_account_id=account_id, stripe_connected_at=utcnow())
        )
    except IntegrityError:
        raise AccountAlreadyConnected(
            f"Stripe account {account_id} is already connected to another CodeQR "
            "workspace; disconnect it there first"
        ) from None

    session.refresh(workspace)
    if result.rowcount == 0 and workspace.stripe_account_id != account_id:
        raise _workspace_taken(workspace)


def _workspace_taken(workspace: Workspace) -> WorkspaceAlreadyConnected:
    return WorkspaceAlreadyConnected(
        f"workspace {workspace.slug!r} is already connected to Stripe account "
        f"{workspace.stripe_account_id}; disconnect that account first"
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
