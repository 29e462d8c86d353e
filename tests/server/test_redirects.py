"""The short-link redirect over real HTTP: Location, click ids, what is counted."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlmodel import Session, select

from server import db
from server.db import session_scope
from server.models import Click, Link, RollupHourly
from tests.conftest import LiveServer
from tests.server.conftest import BROWSER_UA, GOOGLEBOT_UA, IPHONE_UA, LinkFactory

CLICK_ID = re.compile(r"^[A-Za-z0-9_-]{16,}$")


def _clicks_after_stop(server: LiveServer) -> list[Click]:
    """Stop the server (its shutdown writes every buffered click), then read the clicks."""
    server.stop()
    with Session(db.get_engine()) as session:
        return list(session.exec(select(Click).order_by(Click.timestamp)).all())


def _get(
    server: LiveServer, key: str, **headers: str
) -> tuple[int, str, dict[str, str]]:
    headers.setdefault("user-agent", BROWSER_UA)
    with server.client() as client:
        response = client.get(f"/{key}", headers=headers)
    return (
        response.status_code,
        response.headers.get("location", ""),
        dict(response.headers),
    )


def test_redirect_plain_link_answers_302_to_destination_and_counts_the_click(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    link = make_link("https://shop.example/pricing?plan=pro#top", key="plain")

    status, location, headers = _get(live_server, "plain")

    assert status == 302
    assert location == "https://shop.example/pricing?plan=pro#top"
    assert headers["cache-control"] == "no-store"
    assert "referrer-policy" in headers
    clicks = _clicks_after_stop(live_server)
    assert len(clicks) == 1
    assert clicks[0].link_id == link["id"]
    assert CLICK_ID.match(clicks[0].id)


def test_redirect_with_tracking_appends_cq_id_keeping_query_and_fragment(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    make_link(
        "https://shop.example/pricing?plan=pro&ref=a%20b#section-2",
        key="tracked",
        track_conversion=True,
    )

    status, location, _ = _get(live_server, "tracked")

    assert status == 302
    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "shop.example",
        "/pricing",
    )
    assert parts.fragment == "section-2"
    query = parse_qs(parts.query)
    assert query["plan"] == ["pro"]
    assert query["ref"] == ["a b"]
    click_id = query["cq_id"][0]
    assert CLICK_ID.match(click_id)
    assert [c.id for c in _clicks_after_stop(live_server)] == [click_id]


def test_redirect_with_tracking_on_a_bare_domain_adds_query_and_path(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    make_link("https://shop.example", key="bare", track_conversion=True)

    _, location, _ = _get(live_server, "bare")

    assert location.startswith("https://shop.example/?cq_id=")


def test_redirect_with_tracking_replaces_the_stripe_payment_link_marker(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    make_link(
        "https://buy.stripe.com/test_abc?prefilled_email=a%40b.c&codeqr_client_reference_id=1&locale=fr",
        key="paylink",
        track_conversion=True,
    )

    _, location, _ = _get(live_server, "paylink")

    query = parse_qs(urlsplit(location).query)
    assert "codeqr_client_reference_id" not in query
    assert "cq_id" not in query
    assert query["prefilled_email"] == ["a@b.c"]
    assert query["locale"] == ["fr"]
    reference = query["client_reference_id"][0]
    assert reference.startswith("codeqr_id_")
    click_id = reference.removeprefix("codeqr_id_")
    assert [c.id for c in _clicks_after_stop(live_server)] == [click_id]


def test_redirect_without_tracking_leaves_the_destination_unchanged(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    make_link("https://buy.stripe.com/x?codeqr_client_reference_id=1", key="untracked")

    _, location, _ = _get(live_server, "untracked")

    assert location == "https://buy.stripe.com/x?codeqr_client_reference_id=1"
    assert len(_clicks_after_stop(live_server)) == 1


def test_redirect_records_referrer_host_device_browser_and_country(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    make_link("https://shop.example/", key="details")

    _get(
        live_server,
        "details",
        **{
            "user-agent": IPHONE_UA,
            "referer": "https://News.Example.org:8443/story?id=7#c",
            "cf-ipcountry": "DE",
        },
    )

    [click] = _clicks_after_stop(live_server)
    assert click.referrer_host == "news.example.org"
    assert click.device == "mobile"
    assert click.browser == "Safari"
    assert click.country == "DE"
    assert click.timestamp.tzinfo is not None


@pytest.mark.parametrize(
    "header", ["x-vercel-ip-country", "x-country-code"], ids=["vercel", "generic"]
)
def test_redirect_reads_country_from_other_proxy_headers(
    live_server: LiveServer, make_link: LinkFactory, header: str
) -> None:
    make_link("https://shop.example/", key="geo")

    _get(live_server, "geo", **{header: "JP"})

    [click] = _clicks_after_stop(live_server)
    assert click.country == "JP"
    assert click.referrer_host is None


@pytest.mark.parametrize("value", ["us", "USA", "U1", "XX", "<b"])
def test_redirect_ignores_a_malformed_country_header(
    live_server: LiveServer, make_link: LinkFactory, value: str
) -> None:
    make_link("https://shop.example/", key="badgeo")

    status, _, _ = _get(live_server, "badgeo", **{"cf-ipcountry": value})

    assert status == 302
    [click] = _clicks_after_stop(live_server)
    assert click.country is None


def test_redirect_head_is_redirected_without_click_or_click_id(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    make_link("https://shop.example/a?b=1", key="head", track_conversion=True)

    with live_server.client() as client:
        response = client.head("/head", headers={"user-agent": BROWSER_UA})

    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.example/a?b=1"
    assert _clicks_after_stop(live_server) == []


@pytest.mark.parametrize(
    "user_agent",
    [
        GOOGLEBOT_UA,
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Twitterbot/1.0",
        "WhatsApp/2.23.20.0 A",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/124.0 Safari/537.36",
    ],
    ids=["google", "bing", "facebook", "slack", "twitter", "whatsapp", "headless"],
)
def test_redirect_bot_is_redirected_without_click_or_click_id(
    live_server: LiveServer, make_link: LinkFactory, user_agent: str
) -> None:
    make_link("https://shop.example/", key="botted", track_conversion=True)

    status, location, _ = _get(live_server, "botted", **{"user-agent": user_agent})

    assert status == 302
    assert location == "https://shop.example/"
    assert _clicks_after_stop(live_server) == []


def test_redirect_from_an_http_library_is_counted(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    make_link("https://shop.example/", key="curl", track_conversion=True)

    _, location, _ = _get(live_server, "curl", **{"user-agent": "curl/8.5.0"})

    assert "cq_id=" in location
    [click] = _clicks_after_stop(live_server)
    assert click.browser == "curl"


def test_redirect_unknown_key_is_a_404_page_that_reflects_nothing(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    make_link("https://shop.example/", key="known")

    with live_server.client() as client:
        response = client.get("/%3Cscript%3Ealert(1)%3C%5Cscript%3E")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Link not found" in response.text
    assert "script" not in response.text
    assert "alert" not in response.text
    assert _clicks_after_stop(live_server) == []


def test_redirect_link_of_another_domain_is_not_served(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    make_link("https://shop.example/", key="mine")

    with live_server.client() as client:
        foreign = client.get("/mine", headers={"host": "other.example"})
        own = client.get("/mine", headers={"host": "127.0.0.1:1"})

    assert foreign.status_code == 404
    assert own.status_code == 302  # same domain, any port
    assert len(_clicks_after_stop(live_server)) == 1


def test_redirect_fixed_routes_win_over_the_catch_all(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    # The CLI refuses such keys; a row written another way must still not shadow a route.
    link = make_link("https://shop.example/", key="health")
    with session_scope() as session:
        row = session.get(Link, link["id"])
        assert row is not None
        row.key = "healthz"

    with live_server.client() as client:
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_redirect_clicks_bump_the_hourly_rollup(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    link = make_link("https://shop.example/", key="rolled")

    for _ in range(3):
        _get(live_server, "rolled")
    _get(live_server, "rolled", **{"user-agent": GOOGLEBOT_UA})

    _clicks_after_stop(live_server)
    with Session(db.get_engine()) as session:
        rollups = session.exec(select(RollupHourly)).all()
    assert [(r.workspace_id, r.livemode, r.clicks) for r in rollups] == [
        (link_workspace_id(link["id"]), True, 3)
    ]


def link_workspace_id(link_id: int) -> int:
    from server.models import Link

    with Session(db.get_engine()) as session:
        link = session.get(Link, link_id)
        assert link is not None
        return link.workspace_id


def test_fast_path_steps_aside_when_another_route_has_a_parameter_first() -> None:
    import asyncio

    import httpx
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from server.redirects import ShortLinkFastPath, routes

    async def other(_request: object) -> PlainTextResponse:
        return PlainTextResponse("other route")

    app = Starlette(
        routes=[Route("/{name}", other), *routes],
        middleware=[Middleware(ShortLinkFastPath)],
    )

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t"
        ) as client:
            return await client.get("/anything")

    response = asyncio.run(get())

    assert response.status_code == 200
    assert response.text == "other route"


def test_the_cli_reserves_the_first_segment_of_every_fixed_route() -> None:
    """RESERVED_KEYS repeats what the app serves; this keeps the two from drifting."""
    from starlette.routing import Mount, Route

    from server.app import _routes
    from server.cli import RESERVED_KEYS

    segments = set()
    for route in _routes():
        if isinstance(route, (Route, Mount)) and "{" not in route.path:
            segments.add(route.path.strip("/").split("/")[0])
    segments.discard("")
    assert segments, "no fixed routes found"
    assert segments <= RESERVED_KEYS, segments - RESERVED_KEYS
