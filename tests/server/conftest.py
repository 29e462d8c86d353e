"""Fixtures of the links-and-clicks area: singleton resets, a workspace with links."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from server.clicks import reset_click_writer
from tests.conftest import RESET_HOOKS

if reset_click_writer not in RESET_HOOKS:
    RESET_HOOKS.append(reset_click_writer)

BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT_UA = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)

LinkFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def workspace_slug(settings_env: dict[str, str]) -> str:
    from server.cli import create_workspace

    create_workspace("acme", plan="business")
    return "acme"


@pytest.fixture
def make_link(workspace_slug: str) -> LinkFactory:
    """Create a link through the CLI's function (so it gets the server's short domain).
    Call it after the server started: PUBLIC_URL (and so the domain) is set by then."""
    from server.cli import create_link

    def make(
        url: str,
        *,
        key: str | None = None,
        track_conversion: bool = False,
        workspace: str = workspace_slug,
    ) -> dict[str, Any]:
        return create_link(workspace, url, key=key, track_conversion=track_conversion)

    return make
