"""The ASGI endpoint of ``/graphql``: Strawberry's view with our authentication, error
bodies and limits. One instance serves both HTTP and WebSocket (graphql-transport-ws).

HTTP: the bearer token is checked before the document is even parsed; a missing or bad
one gets 401 with a GraphQL error body (``extensions.code`` UNAUTHENTICATED) and
``WWW-Authenticate: Bearer``. WebSocket: the token comes in the ``connection_init``
payload; a bad one closes the socket with 4403, and a socket whose token expires or is
revoked later is closed the same way."""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from typing import Any

from cross_web import HTTPException, StarletteRequestAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from oauth.principal import Principal, parse_authorization
from server.api import limits
from server.api.context import ApiContext, authenticate
from server.api.errors import (
    BAD_REQUEST,
    FAILED,
    INTERNAL,
    MASKED_MESSAGE,
    REFUSED,
    UNAUTHENTICATED,
    error_body,
)
from server.log_config import get_logger
from server.models import utcnow
from server.settings import get_settings

logger = get_logger(__name__)

TOKEN_CLOSE_CODE = 4403


class AuthenticationFailed(Exception):
    def __init__(self, token_given: bool) -> None:
        super().__init__("authentication failed")
        self.token_given = token_given


def unauthenticated_response(token_given: bool) -> Response:
    if token_given:
        message = "The bearer token is invalid, revoked or expired."
        challenge = 'Bearer realm="codeqr", error="invalid_token"'
    else:
        message = (
            "Authentication required: send `Authorization: Bearer <API key or OAuth "
            "access token>`."
        )
        challenge = 'Bearer realm="codeqr"'
    return JSONResponse(
        error_body(message, UNAUTHENTICATED),
        status_code=401,
        headers={"WWW-Authenticate": challenge},
    )


def ensure_coded(error: object) -> object:
    """The formatted error if it has a code; otherwise a masked one."""
    extensions = error.get("extensions") if isinstance(error, dict) else None
    if isinstance(extensions, dict) and isinstance(extensions.get("code"), str):
        return error
    return {
        "message": MASKED_MESSAGE,
        "extensions": {"code": INTERNAL, "classification": FAILED},
    }


def _refusal(error: Any) -> Any:
    if isinstance(error, dict) and "code" not in error.get("extensions", {}):
        return {**error, "extensions": {"code": BAD_REQUEST, "classification": REFUSED}}
    return error


def _with_cause(exc: HTTPException) -> str:
    """Strawberry's reason, with what the JSON decoder found when it says more."""
    cause = exc.__cause__
    if not isinstance(cause, json.JSONDecodeError):
        return exc.reason
    where = f" at line {cause.lineno}, column {cause.colno}" if cause.doc else ""
    return f"{exc.reason}: {cause.msg}{where}."


def bad_request_response(reason: str, status_code: int) -> Response:
    return JSONResponse(error_body(reason, BAD_REQUEST), status_code=status_code)


class TokenWatchingHandler(BaseGraphQLTransportWSHandler[ApiContext, None]):
    """graphql-transport-ws, plus a watch that closes the socket with 4403 when its
    token expires or stops being valid (revoked key or token)."""

    watch: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self.watch is None:
            self.watch = asyncio.create_task(self._watch_token())

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        """A subscribe message of the wrong shape closes the socket with 4400 and says
        what was wrong, as the protocol asks, instead of failing inside Strawberry."""
        problem = _subscribe_problem(message)
        if problem is not None:
            await self.handle_invalid_message(f"Invalid subscribe message: {problem}")
            return
        await super().handle_subscribe(message)

    async def send_message(self, message: Message) -> None:
        """Refusals the protocol handler makes itself (the per-socket operation limit)
        carry no code; give them BAD_REQUEST like every other refused request."""
        if message["type"] == "error":
            message = {**message, "payload": [_refusal(e) for e in message["payload"]]}
        await super().send_message(message)

    async def shutdown(self) -> None:
        if self.watch is not None:
            self.watch.cancel()
            with suppress(asyncio.CancelledError):
                await self.watch
        await super().shutdown()

    async def _watch_token(self) -> None:
        context = self.context
        while context.principal is not None:
            await asyncio.sleep(self._delay(context))
            context.principal = await self._recheck(context)
        logger.info("api.ws_token_ended")
        await self.websocket.close(TOKEN_CLOSE_CODE, "Token expired or revoked")

    @staticmethod
    async def _recheck(context: ApiContext) -> Principal | None:
        """The token's principal now; while storage fails, the one known until it
        expires (a revoked key then keeps its socket until storage answers)."""
        try:
            return await authenticate(context.token)
        except Exception:
            logger.warning("api.ws_token_recheck_failed", exc_info=True)
            known = context.principal
            return None if known is None or known.is_expired() else known

    @staticmethod
    def _delay(context: ApiContext) -> float:
        delay = limits.TOKEN_RECHECK_SECONDS
        expires_at = context.principal.expires_at if context.principal else None
        if expires_at is not None:
            delay = min(delay, (expires_at - utcnow()).total_seconds())
        return max(delay, 0.0)


def _subscribe_problem(message: object) -> str | None:
    """What is wrong with a ``subscribe`` message's id and payload, or None."""
    body: dict[str, Any] = message if isinstance(message, dict) else {}
    if not isinstance(body.get("id"), str) or not body["id"]:
        return "id must be a non-empty string"
    payload = body.get("payload")
    if not isinstance(payload, dict):
        return "payload must be an object"
    if not isinstance(payload.get("query"), str):
        return "payload.query must be a string"
    for name, kind, label in (
        ("variables", dict, "an object"),
        ("operationName", str, "a string"),
        ("extensions", dict, "an object"),
    ):
        if payload.get(name) is not None and not isinstance(payload[name], kind):
            return f"payload.{name} must be {label} or null"
    return None


class GraphQLView(GraphQL[ApiContext, None]):
    graphql_transport_ws_handler_class = TokenWatchingHandler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive=receive)
        try:
            response = await self.run(request)
        except AuthenticationFailed as exc:
            logger.info("api.unauthenticated", bearer_sent=exc.token_given)
            response = unauthenticated_response(exc.token_given)
        except HTTPException as exc:
            response = bad_request_response(_with_cause(exc), exc.status_code)
        await response(scope, receive, send)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> ApiContext:
        context = ApiContext(request=request, response=response)
        if isinstance(request, WebSocket) or self._is_ide_request(request):
            return context
        token = parse_authorization(request.headers.get("authorization"))
        context.principal = await authenticate(token)
        if context.principal is None:
            raise AuthenticationFailed(token_given=token is not None)
        context.token = token
        return context

    def _is_ide_request(self, request: Request) -> bool:
        return self.should_render_graphql_ide(StarletteRequestAdapter(request))

    async def render_graphql_ide(self, request: Request) -> Response:
        if get_settings().environment != "development":
            raise HTTPException(404, "Not Found")
        return await super().render_graphql_ide(request)

    async def on_ws_connect(self, context: ApiContext) -> UnsetType | dict[str, object]:
        params = context.connection_params or {}
        header = params.get("Authorization", params.get("authorization"))
        token = parse_authorization(header) if isinstance(header, str) else None
        principal = await authenticate(token)
        if principal is None:
            logger.info("api.ws_rejected", bearer_sent=token is not None)
            raise ConnectionRejectionError({"message": "invalid or missing token"})
        context.principal = principal
        context.token = token
        unset: UnsetType = UNSET
        return unset

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        """Last line of the error contract: an error that escaped the extensions (one
        raised by an extension hook itself) is masked here rather than sent uncoded."""
        response = await super().process_result(request, result)
        errors = response.get("errors")
        if errors:
            response["errors"] = [ensure_coded(error) for error in errors]
        return response

    def decode_json(self, data: str | bytes) -> object:
        """JSON objects only: a batch, a scalar or a pathologically nested document
        is refused as unparsable rather than reaching the executor."""
        try:
            value = json.loads(data)
        except RecursionError as exc:
            raise json.JSONDecodeError("nested too deeply", "", 0) from exc
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError("not UTF-8", "", 0) from exc
        if not isinstance(value, dict):
            raise json.JSONDecodeError("expected a JSON object", "", 0)
        return value


class BodyLimit:
    """Refuses HTTP bodies over ``max_bytes`` with 413 before the endpoint reads them."""

    def __init__(self, app: GraphQLView, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await self._read(scope, receive)
        if body is None:
            response = bad_request_response(
                f"Request body is larger than {self.max_bytes} bytes.", 413
            )
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes | None:
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> AsgiMessage:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
