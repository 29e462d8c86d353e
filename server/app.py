"""The ASGI application: every package's routes, the background services, one lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from server import bus as event_bus
from server.log_config import configure_logging, get_logger
from server.settings import get_settings

logger = get_logger(__name__)


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _routes() -> list[BaseRoute]:
    from oauth.routes import routes as oauth_routes
    from server.api.routes import routes as graphql_routes
    from server.redirects import routes as redirect_routes
    from stripe_app.app_views import routes as stripe_app_routes
    from stripe_app.routes import routes as webhook_routes

    return [
        Route("/healthz", healthz, methods=["GET"]),
        *webhook_routes,
        *stripe_app_routes,
        *oauth_routes,
        *graphql_routes,
        # The short-link catch-all comes last: every fixed path above wins over a key.
        *redirect_routes,
    ]


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    from server.clicks import get_click_writer
    from stripe_app.worker import get_worker

    settings = get_settings()
    async with AsyncExitStack() as stack:
        bus = event_bus.get_bus()
        await bus.start()
        stack.push_async_callback(bus.stop)

        writer = get_click_writer()
        await writer.start()
        # Registered after the bus: runs first on shutdown, so buffered clicks are flushed.
        stack.push_async_callback(writer.stop)

        if settings.worker_enabled:
            worker = get_worker()
            await worker.start()
            stack.push_async_callback(worker.stop)

        logger.info("app.started", database=settings.database_url.split(":")[0])
        yield
    logger.info("app.stopped")


def create_app() -> Starlette:
    settings = get_settings()
    configure_logging(settings.log_level)
    from server.redirects import ShortLinkFastPath

    return Starlette(
        routes=_routes(),
        lifespan=lifespan,
        # Short links skip the walk over every route (see server/redirects.py).
        middleware=[Middleware(ShortLinkFastPath)],
    )


app = create_app()
