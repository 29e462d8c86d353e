"""Storage of authorization codes and token pairs, by keyed hash only.

Codes are consumed and refresh tokens rotated by one conditional UPDATE each, so of two
concurrent redemptions exactly one wins; the loser is a replay and revokes the family
(every pair descended from the same code)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, update
from sqlmodel import Session, col, select

from server.models import Membership, OAuthCode, OAuthToken, utcnow
from server.security import token_hash
from server.settings import get_settings

ACCESS_TOKEN_PREFIX = "cqo_at_"  # noqa: S105 (a prefix, not a secret)
REFRESH_TOKEN_PREFIX = "cqo_rt_"  # noqa: S105
_MAX_TOKEN_LENGTH = 512


def new_access_token(**_kwargs: Any) -> str:
    return ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_refresh_token(**_kwargs: Any) -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def access_token_lifetime(_client: Any = None, _grant_type: Any = None) -> int:
    return get_settings().access_token_ttl_seconds


def _usable(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_TOKEN_LENGTH


# --- authorization codes -------------------------------------------------------------


def save_code(
    session: Session,
    *,
    code: str,
    client_id: str,
    redirect_uri: str,
    scope: str,
    user_id: int,
    workspace_id: int,
    code_challenge: str,
    code_challenge_method: str,
) -> OAuthCode:
    ttl = timedelta(seconds=get_settings().authorization_code_ttl_seconds)
    row = OAuthCode(
        code_hash=token_hash(code),
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        user_id=user_id,
        workspace_id=workspace_id,
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
        expires_at=utcnow() + ttl,
    )
    session.add(row)
    session.flush()
    return row


def find_code(session: Session, code: str, client_id: str) -> OAuthCode | None:
    """The code if it was issued to this client and is unexpired, or already used (a
    replay, which the caller turns into revoking the family)."""
    if not _usable(code):
        return None
    row = session.exec(
        select(OAuthCode).where(OAuthCode.code_hash == token_hash(code))
    ).first()
    if row is None or row.client_id != client_id:
        return None
    if row.used_at is None and row.is_expired():
        return None
    return row


def consume_code(session: Session, row: OAuthCode) -> bool:
    """Mark the code used; False when it was used already (by us or a concurrent call)."""
    result = session.exec(
        update(OAuthCode)
        .where(col(OAuthCode.id) == row.id, col(OAuthCode.used_at).is_(None))
        .values(used_at=utcnow())
    )
    return bool(result.rowcount == 1)


def revoke_code_tokens(session: Session, code_id: int) -> int:
    """Revoke every pair issued from this code, whatever refreshes followed."""
    result = session.exec(
        update(OAuthToken)
        .where(col(OAuthToken.code_id) == code_id, col(OAuthToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount)


# --- token pairs -----------------------------------------------------------------------


def store_pair(
    session: Session,
    token: dict[str, Any],
    *,
    client_id: str,
    user_id: int,
    workspace_id: int,
    family_id: str | None = None,
    code_id: int | None = None,
) -> OAuthToken:
    """Store the hashes of a token response Authlib generated."""
    settings = get_settings()
    now = utcnow()
    refresh = token.get("refresh_token")
    row = OAuthToken(
        family_id=family_id or secrets.token_urlsafe(24),
        code_id=code_id,
        client_id=client_id,
        user_id=user_id,
        workspace_id=workspace_id,
        scope=str(token.get("scope") or ""),
        access_token_hash=token_hash(token["access_token"]),
        refresh_token_hash=token_hash(refresh) if refresh else None,
        issued_at=now,
        access_expires_at=now + timedelta(seconds=int(token["expires_in"])),
        refresh_expires_at=(
            now + timedelta(seconds=settings.refresh_token_ttl_seconds)
            if refresh
            else None
        ),
    )
    session.add(row)
    session.flush()
    return row


def find_by_refresh_token(session: Session, value: str) -> OAuthToken | None:
    if not _usable(value):
        return None
    return session.exec(
        select(OAuthToken).where(OAuthToken.refresh_token_hash == token_hash(value))
    ).first()


def find_by_access_token(session: Session, value: str) -> OAuthToken | None:
    if not _usable(value):
        return None
    return session.exec(
        select(OAuthToken).where(OAuthToken.access_token_hash == token_hash(value))
    ).first()


def rotate(session: Session, row: OAuthToken) -> bool:
    """Retire a refresh token; False when it was retired or revoked meanwhile."""
    result = session.exec(
        update(OAuthToken)
        .where(
            col(OAuthToken.id) == row.id,
            col(OAuthToken.rotated_at).is_(None),
            col(OAuthToken.revoked_at).is_(None),
        )
        .values(rotated_at=utcnow())
    )
    return bool(result.rowcount == 1)


def revoke_family(session: Session, family_id: str) -> int:
    result = session.exec(
        update(OAuthToken)
        .where(
            col(OAuthToken.family_id) == family_id,
            col(OAuthToken.revoked_at).is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount)


def revoke_access_token(session: Session, row: OAuthToken) -> None:
    session.exec(
        update(OAuthToken)
        .where(
            col(OAuthToken.id) == row.id,
            col(OAuthToken.access_revoked_at).is_(None),
        )
        .values(access_revoked_at=utcnow())
    )


def is_member(session: Session, user_id: int, workspace_id: int) -> bool:
    membership = session.exec(
        select(Membership.id).where(
            Membership.user_id == user_id, Membership.workspace_id == workspace_id
        )
    ).first()
    return membership is not None


def active_access_token(
    session: Session, value: str, now: datetime | None = None
) -> OAuthToken | None:
    """The pair of a live access token: one indexed query by hash, joined with the
    membership so a user removed from the workspace loses access at once."""
    if not value.startswith(ACCESS_TOKEN_PREFIX) or not _usable(value):
        return None
    row = session.exec(
        select(OAuthToken)
        .join(
            Membership,
            and_(
                col(Membership.user_id) == col(OAuthToken.user_id),
                col(Membership.workspace_id) == col(OAuthToken.workspace_id),
            ),
        )
        .where(OAuthToken.access_token_hash == token_hash(value))
    ).first()
    if row is None or row.is_revoked():
        return None
    if (now or utcnow()) >= row.access_expires_at:
        return None
    return row
