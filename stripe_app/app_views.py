"""The endpoints the app's settings view calls from the Stripe Dashboard.

Every call is a JSON ``POST`` whose body carries ``user_id`` and ``account_id`` and whose
``Stripe-Signature`` header signs those two values (see :mod:`stripe_app.app_signature`):

- ``POST /stripe-app/status``: whether the signed account is linked, to which workspace
  (slug, name), its plan, since when, and whether conversion tracking is active.
- ``POST /stripe-app/connect`` with ``Authorization: Bearer <OAuth access token>``: links
  the signed account to the token's workspace. The signature says which Stripe account,
  the token which workspace; API keys are refused, since linking must be done by a user
  who signed in and picked the workspace on the consent page.
- ``POST /stripe-app/disconnect``: unlinks the signed account and revokes the OAuth
  tokens of its workspace.

The signature covers the two ids and a timestamp, not the path or the rest of the body,
so within its five minutes one signature works on all three routes: each route only
ever acts on the signed account, connect also needs the token, and every route is
idempotent. Any Dashboard user of the account may see the status or disconnect it.

The view runs in a sandboxed iframe whose origin is ``null``, so these routes (and only
these) answer CORS preflights for any origin: the signature, not the origin, is what
authenticates them, and no cookie is ever read. Failures are JSON
``{"error": {"code": …, "message": …}}``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from oauth.principal import Principal, authenticate_bearer, parse_authorization
from server.db import session_scope
from server.log_config import get_logger
from server.settings import get_settings
from stripe_app.app_signature import (
    AppSignatureError,
    SignedCaller,
    check_ids,
    verify_app_signature,
)
from stripe_app.installs import (
    InstallError,
    connect_account,
    disconnect_account,
    install_status,
)

logger = get_logger(__name__)

MAX_BODY_BYTES = 16 * 1024
CORS_MAX_AGE_SECONDS = 600


class ApiError(Exception):
    """A refusal answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


SignedHandler = Callable[[Request, SignedCaller], Awaitable[dict[str, Any]]]


def signed(handler: SignedHandler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler so it only runs for a correctly signed body; every refusal of the
    handler or of the check becomes a JSON error."""

    async def endpoint(request: Request) -> Response:
        try:
            caller = await _signed_caller(request)
            return JSONResponse(await handler(request, caller))
        except ApiError as exc:
            return _error(exc)
        except InstallError as exc:
            logger.warning(
                "stripe_app.request_refused", path=request.url.path, code=exc.code
            )
            return _error(ApiError(exc.status, exc.code, exc.message))

    endpoint.__name__ = handler.__name__
    return endpoint


async def status(_request: Request, caller: SignedCaller) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with session_scope() as session:
            return install_status(session, caller.account_id).to_json()

    return await run_in_threadpool(read)


CONNECT_SCOPE = "conversions:write"


async def connect(request: Request, caller: SignedCaller) -> dict[str, Any]:
    token = parse_authorization(request.headers.get("authorization"))
    if token is None:
        raise ApiError(
            401,
            "UNAUTHENTICATED",
            "connecting needs Authorization: Bearer <OAuth access token>; "
            "sign in to CodeQR from the app first",
        )

    def link() -> tuple[dict[str, Any], bool]:
        with session_scope() as session:
            principal = _oauth_principal(authenticate_bearer(session, token))
            result, changed = connect_account(
                session,
                account_id=caller.account_id,
                workspace_id=principal.workspace_id,
                user_id=principal.user_id,
            )
            return result.to_json(), changed

    body, changed = await run_in_threadpool(link)
    return {**body, "changed": changed}


async def disconnect(_request: Request, caller: SignedCaller) -> dict[str, Any]:
    def unlink() -> dict[str, Any]:
        with session_scope() as session:
            result = disconnect_account(session, caller.account_id)
            return {
                "connected": False,
                "account_id": caller.account_id,
                "changed": result.workspace_id is not None,
                "revoked_tokens": result.revoked_tokens,
            }

    return await run_in_threadpool(unlink)


def _oauth_principal(principal: Principal | None) -> Principal:
    if principal is None or principal.is_expired():
        raise ApiError(
            401,
            "UNAUTHENTICATED",
            "the bearer token is unknown, expired or revoked; sign in to CodeQR again",
        )
    if principal.kind != "oauth":
        raise ApiError(
            403,
            "FORBIDDEN",
            f"a {principal.kind} cannot connect a Stripe account; "
            "use the OAuth access token the app gets when you sign in",
        )
    if not principal.has_scope(CONNECT_SCOPE):
        # Linking an account lets its Stripe events record sales: a write.
        raise ApiError(
            403,
            "FORBIDDEN",
            f"connecting a Stripe account needs the {CONNECT_SCOPE} scope; "
            "sign in again and approve it",
        )
    return principal


async def _signed_caller(request: Request) -> SignedCaller:
    secret = get_settings().stripe_app_secret.get_secret_value()
    if not secret:
        raise ApiError(503, "NOT_CONFIGURED", "Stripe App endpoints are not configured")
    header = request.headers.get("stripe-signature")
    if not header:
        raise _signature_error(request, "Stripe-Signature header is missing")

    caller = _parse_ids(await _read_json(request))
    try:
        return verify_app_signature(header, caller, secret)
    except AppSignatureError as exc:
        raise _signature_error(request, exc.reason, caller) from None


async def _read_json(request: Request) -> dict[str, Any]:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(
                413,
                "PAYLOAD_TOO_LARGE",
                f"the body is larger than {MAX_BODY_BYTES} bytes",
            )
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: arrays nested too deep
        data = None
    if not isinstance(data, dict):
        raise ApiError(
            400,
            "INVALID_REQUEST",
            'the body must be a JSON object like {"user_id": "usr_…", '
            '"account_id": "acct_…"}',
        )
    return data


def _parse_ids(data: dict[str, Any]) -> SignedCaller:
    try:
        return check_ids(data.get("user_id"), data.get("account_id"))
    except ValueError as exc:
        raise ApiError(400, "INVALID_REQUEST", str(exc)) from None


def _signature_error(
    request: Request, reason: str, caller: SignedCaller | None = None
) -> ApiError:
    logger.warning(
        "stripe_app.signature_rejected",
        path=request.url.path,
        reason=reason,
        account_id=caller.account_id if caller else None,
    )
    return ApiError(401, "INVALID_SIGNATURE", reason)


def _error(exc: ApiError) -> JSONResponse:
    body = {"error": {"code": exc.code, "message": exc.message}}
    return JSONResponse(body, status_code=exc.status)


_CORS = Middleware(
    CORSMiddleware,
    allow_origins=["*"],
    allow_methods=["GET", "POST", "OPTIONS"],
    allow_headers=["Stripe-Signature", "Content-Type", "Authorization"],
    max_age=CORS_MAX_AGE_SECONDS,
)

routes: list[BaseRoute] = [
    Mount(
        "/stripe-app",
        routes=[
            Route("/status", signed(status), methods=["POST"]),
            Route("/connect", signed(connect), methods=["POST"]),
            Route("/disconnect", signed(disconnect), methods=["POST"]),
        ],
        middleware=[_CORS],
    )
]
