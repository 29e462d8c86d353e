"""Baseline apps for the benchmark: the least a route of the same kind can do.

``redirect_app`` is a bare Starlette 302 route (no look-up, no click); the benchmark serves
it with the same uvicorn settings as the product and compares requests per second."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route


async def bare_redirect(_request: Request) -> RedirectResponse:
    return RedirectResponse("https://shop.example/pricing", status_code=302)


redirect_app = Starlette(routes=[Route("/{key}", bare_redirect)])
