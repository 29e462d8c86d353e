"""Keyset cursors: opaque to clients, stable when rows are inserted between pages.

A cursor is the URL-safe base64 of a small JSON list: the connection's tag, then the sort
key of the last row seen. The next page starts strictly after that key, so a row inserted
meanwhile can neither shift a page (as offsets would) nor appear twice."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from server.api.errors import BadUserInput
from server.api.store import KIND_RANK, EventKey
from server.api.timeseries import as_utc

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
MAX_CURSOR_LENGTH = 512
MAX_ROW_ID = 2**31 - 1  # the integer primary keys


def page_size(first: int | None) -> int:
    """``first`` checked against the documented bounds (1 to 100, default 25)."""
    if first is None:
        return DEFAULT_PAGE_SIZE
    if first < 0 or first > MAX_PAGE_SIZE:
        raise BadUserInput(
            f"first must be between 0 and {MAX_PAGE_SIZE}, got {first}; "
            "page through longer lists with `after`."
        )
    return first


def encode(tag: str, *parts: str | int) -> str:
    raw = json.dumps([tag, *parts], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, tag: str) -> list[object]:
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeError):
        parts = None
    if not isinstance(parts, list) or not parts or parts[0] != tag:
        raise BadUserInput(
            f"after is not a cursor of this connection ({tag}): pass an endCursor "
            "or edge cursor that this connection returned."
        )
    return parts[1:]


def _moment(value: object, tag: str) -> datetime:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return as_utc(moment)
    raise BadUserInput(f"after is not a cursor of this connection ({tag}).")


def _is_row_id(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_ROW_ID


def time_cursor(tag: str, moment: datetime, pk: int) -> str:
    return encode(tag, moment.isoformat(), pk)


def decode_time_cursor(cursor: str | None, tag: str) -> tuple[datetime, int] | None:
    """The (time, id) key of a cursor of a connection ordered newest first."""
    if cursor is None:
        return None
    parts = _decode(cursor, tag)
    pk = parts[1] if len(parts) == 2 else None
    if not isinstance(pk, int) or not _is_row_id(pk):
        raise BadUserInput(f"after is not a cursor of this connection ({tag}).")
    return _moment(parts[0], tag), pk


EVENTS_TAG = "events"


def event_cursor(key: EventKey) -> str:
    return encode(EVENTS_TAG, key.timestamp.isoformat(), key.rank, key.id)


def _is_click_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable()


def decode_event_cursor(cursor: str | None) -> EventKey | None:
    if cursor is None:
        return None
    parts = _decode(cursor, EVENTS_TAG)
    if len(parts) != 3 or type(parts[1]) is not int:
        raise BadUserInput("after is not a cursor of this connection (events).")
    moment, rank, pk = _moment(parts[0], EVENTS_TAG), parts[1], parts[2]
    click_rank = KIND_RANK["CLICK"]
    valid_id = _is_click_id(pk) if rank == click_rank else _is_row_id(pk)
    if not isinstance(rank, int) or rank not in KIND_RANK.values() or not valid_id:
        raise BadUserInput("after is not a cursor of this connection (events).")
    assert isinstance(pk, str | int)
    return EventKey(moment, rank, pk)
