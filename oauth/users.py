"""People who log in: email and password (argon2id), and their workspace memberships.

Passwords are the only secrets hashed slowly; every other credential uses the fast keyed
hash of ``server.security``. A failed login costs the same whether the email is known or
not, so timing does not tell which part was wrong."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import update
from sqlmodel import Session, col, select

from server.log_config import get_logger
from server.models import (
    Membership,
    OAuthToken,
    User,
    Workspace,
    plan_allows_conversions,
    utcnow,
)
from server.models.auth import ROLES
from server.settings import get_settings

logger = get_logger(__name__)

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


class UserError(ValueError):
    """A user or membership that cannot be created as asked."""


@lru_cache(maxsize=4)
def _hasher_with(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)


def _hasher() -> PasswordHasher:
    settings = get_settings()
    return _hasher_with(
        settings.password_hash_time_cost, settings.password_hash_memory_kib
    )


@lru_cache(maxsize=4)
def _dummy_hash(hasher: PasswordHasher) -> str:
    # Verified against when the email is unknown, so both paths cost one argon2 run.
    return hasher.hash("codeqr-no-such-user")


def normalise_email(email: str) -> str:
    return email.strip().lower()


def hash_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise UserError(
            f"a password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} "
            f"characters, got {len(password)}"
        )
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_user(session: Session, email: str, password: str) -> User:
    email = normalise_email(email)
    if "@" not in email or len(email) > 320:
        raise UserError(f"{email!r} is not an email address")
    existing = session.exec(select(User).where(User.email == email)).first()
    if existing is not None:
        raise UserError(f"a user with email {email!r} already exists")

    user = User(email=email, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    logger.info("user.created", user_id=user.id)
    return user


def add_membership(
    session: Session, user: User, workspace: Workspace, role: str = "member"
) -> Membership:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    assert user.id is not None and workspace.id is not None
    membership = Membership(user_id=user.id, workspace_id=workspace.id, role=role)
    session.add(membership)
    session.flush()
    logger.info(
        "membership.created", user_id=user.id, workspace_id=workspace.id, role=role
    )
    return membership


def change_password(session: Session, user: User, new_password: str) -> int:
    """Set a new password. Every browser session ends (sessions carry a fingerprint of
    the hash) and every OAuth token of the user is revoked; returns how many pairs."""
    user.password_hash = hash_password(new_password)
    session.add(user)
    result = session.exec(
        update(OAuthToken)
        .where(col(OAuthToken.user_id) == user.id, col(OAuthToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    logger.info("user.password_changed", user_id=user.id, revoked_pairs=result.rowcount)
    return int(result.rowcount)


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user with this email and password, or None (without saying which failed)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return None
    user = session.exec(
        select(User).where(User.email == normalise_email(email))
    ).first()
    if user is None:
        verify_password(_dummy_hash(_hasher()), password)
        return None
    if not verify_password(user.password_hash, password):
        return None

    if _hasher().check_needs_rehash(user.password_hash):
        user.password_hash = _hasher().hash(password)
        session.add(user)
    return user


@dataclass(frozen=True)
class WorkspaceChoice:
    """A workspace the user may pick on the consent page."""

    id: int
    slug: str
    name: str
    plan: str
    role: str


def workspaces_of(
    session: Session, user_id: int, *, business_plan_only: bool = False
) -> list[WorkspaceChoice]:
    """The user's workspaces, by name; only Business or higher when asked."""
    rows = session.exec(
        select(Workspace, Membership.role)
        .join(Membership, col(Membership.workspace_id) == col(Workspace.id))
        .where(Membership.user_id == user_id)
        .order_by(col(Workspace.name), col(Workspace.slug))
    ).all()
    choices = [
        WorkspaceChoice(id=w.id, slug=w.slug, name=w.name, plan=w.plan, role=role)
        for w, role in rows
        if w.id is not None
    ]
    if business_plan_only:
        choices = [c for c in choices if plan_allows_conversions(c.plan)]
    return choices
