"""HTML pages of the login and consent flow, and the headers every one of them carries.

Pages load nothing from elsewhere (inline style only), cannot be framed, and send no
referrer: the consent page must not be clickjacked, and authorize URLs carry the
client's ``state``."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, Response

TEMPLATES = Path(__file__).parent / "templates"

SCOPE_DESCRIPTIONS = {
    "conversions:read": (
        "See the workspace's conversion data: clicks, leads, sales, customers, "
        "commissions and payouts"
    ),
    "conversions:write": "Record leads and sales in the workspace",
}


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        auto_reload=False,
    )


def origin_of(uri: str) -> str | None:
    parts = urlsplit(uri)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(form_targets: Iterable[str] = ()) -> dict[str, str]:
    """Headers for every page and redirect of the flow. ``form_targets`` are origins a
    form on the page may end up at (a consent POST is answered by a redirect to the
    client, and ``form-action`` also governs that redirect)."""
    form_action = " ".join(["'self'", *form_targets])
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


def apply_security_headers(
    response: Response, form_targets: Iterable[str] = ()
) -> Response:
    for name, value in security_headers(form_targets).items():
        response.headers[name] = value
    return response


def render(
    template: str,
    status_code: int = 200,
    form_targets: Iterable[str] = (),
    **context: Any,
) -> HTMLResponse:
    html = _environment().get_template(template).render(**context)
    response = HTMLResponse(html, status_code=status_code)
    apply_security_headers(response, form_targets)
    return response


def error_page(
    status_code: int, title: str, message: str, error: str | None = None
) -> HTMLResponse:
    return render("error.html", status_code, title=title, message=message, error=error)


def describe_scopes(scope: str) -> list[dict[str, str]]:
    return [
        {"name": name, "description": SCOPE_DESCRIPTIONS.get(name, name)}
        for name in scope.split()
    ]
