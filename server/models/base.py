from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Aware UTC. SQLModel's datetime columns refuse naive values and return UTC."""
    return datetime.now(UTC)
