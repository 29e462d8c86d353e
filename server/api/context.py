"""What a resolver knows about its caller: the principal of the bearer token, and the
request's DataLoaders (created per request, never shared between callers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry import Info
from strawberry.dataloader import DataLoader

from oauth.principal import Principal, authenticate_bearer
from server.api import store
from server.api.errors import Forbidden, Unauthenticated
from server.db import session_scope
from server.models import Customer, Link, Partner

READ_SCOPE = "conversions:read"
WRITE_SCOPE = "conversions:write"
MAX_BATCH = 500

RowT = TypeVar("RowT")


async def authenticate(token: str | None) -> Principal | None:
    """The principal of a bearer token, or None when it is missing, unknown or expired."""
    if not token:
        return None
    principal = await run_in_threadpool(_authenticate, token)
    if principal is None or principal.is_expired():
        return None
    return principal


def _authenticate(token: str) -> Principal | None:
    with session_scope() as session:
        return authenticate_bearer(session, token)


def _batch(
    workspace_id: int,
    fetch: Callable[[Session, int, Sequence[int]], dict[int, RowT]],
) -> Callable[[list[int]], Awaitable[list[RowT | None]]]:
    async def load(ids: list[int]) -> list[RowT | None]:
        rows = await store.read(fetch, workspace_id, ids)
        return [rows.get(pk) for pk in ids]

    return load


@dataclass
class Loaders:
    """Batching per request; rows of other workspaces load as None."""

    links: DataLoader[int, Link | None]
    customers: DataLoader[int, Customer | None]
    partners: DataLoader[int, Partner | None]

    @classmethod
    def create(cls, workspace_id: int, *, cache: bool) -> Loaders:
        return cls(
            links=DataLoader(
                _batch(workspace_id, store.links_by_id),
                max_batch_size=MAX_BATCH,
                cache=cache,
            ),
            customers=DataLoader(
                _batch(workspace_id, store.customers_by_id),
                max_batch_size=MAX_BATCH,
                cache=cache,
            ),
            partners=DataLoader(
                _batch(workspace_id, store.partners_by_id),
                max_batch_size=MAX_BATCH,
                cache=cache,
            ),
        )


@dataclass
class ApiContext:
    """One per HTTP request, or one per WebSocket connection.

    On a WebSocket the principal is set when ``connection_init`` arrives, and the
    loaders do not cache: a connection lives long, and every event is read fresh."""

    request: Request | WebSocket
    response: Response | WebSocket
    principal: Principal | None = None
    # Kept to re-check a long-lived socket; never logged or returned.
    token: str | None = field(default=None, repr=False)
    connection_params: dict[str, object] | None = None
    _loaders: Loaders | None = field(default=None, repr=False)

    @property
    def is_websocket(self) -> bool:
        return isinstance(self.request, WebSocket)

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            principal = require_principal(self)
            self._loaders = Loaders.create(
                principal.workspace_id, cache=not self.is_websocket
            )
        return self._loaders


ApiInfo = Info[ApiContext, None]


def require_principal(context: ApiContext) -> Principal:
    principal = context.principal
    if principal is None or principal.is_expired():
        raise Unauthenticated(
            "Authentication required: send `Authorization: Bearer <API key or OAuth "
            "access token>`; the token given is missing, invalid, revoked or expired."
        )
    return principal


def require(info: ApiInfo, scope: str) -> Principal:
    """The caller's principal, if it holds ``scope``."""
    principal = require_principal(info.context)
    if not principal.has_scope(scope):
        raise Forbidden(
            f"This token lacks the {scope} scope; create a key or token that grants it."
        )
    return principal
