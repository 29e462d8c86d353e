"""``/graphql`` over HTTP (POST; GET only for the development IDE) and WebSocket."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route, WebSocketRoute
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from server.api import limits
from server.api.schema import schema
from server.api.view import BodyLimit, GraphQLView


def build_routes() -> list[BaseRoute]:
    view = GraphQLView(
        schema,
        graphql_ide="graphiql",  # served in development only (see render_graphql_ide)
        allow_queries_via_get=False,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        connection_init_wait_timeout=limits.CONNECTION_INIT_TIMEOUT,
        max_subscriptions_per_connection=limits.MAX_SUBSCRIPTIONS_PER_CONNECTION,
        multipart_uploads_enabled=False,
    )
    return [
        Route(
            "/graphql",
            BodyLimit(view, limits.MAX_BODY_BYTES),
            methods=["GET", "POST"],
        ),
        WebSocketRoute("/graphql", view),
    ]


routes: list[BaseRoute] = build_routes()
