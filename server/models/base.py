from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Index, text


def utcnow() -> datetime:
    """Aware UTC. SQLModel's datetime columns refuse naive values and return UTC."""
    return datetime.now(UTC)


def time_index(name: str, time_column: str) -> Index:
    """The keyset-listing index of a table (workspace, time, id), partial on
    ``time IS NOT NULL`` (always true) so that only listings, which state it, can use it.
    Without the predicate a look-up by (workspace, unique id) on a table whose statistics
    are not gathered yet (a new deployment, before autovacuum's first ANALYZE) is planned
    on this index and filters every row of the workspace instead of using its unique
    index."""
    predicate = text(f'"{time_column}" IS NOT NULL')
    return Index(
        name,
        "workspace_id",
        time_column,
        "id",
        postgresql_where=predicate,
        sqlite_where=predicate,
    )
