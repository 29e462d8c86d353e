"""The redirect's pure parts: destination templates, header parsing, the UA classifier."""

from __future__ import annotations

import pytest

from server.redirects import (
    build_cached_link,
    country_code,
    referrer_host,
    request_domain,
)
from server.useragent import MAX_USER_AGENT_LENGTH, classify


@pytest.mark.parametrize(
    ("destination", "tracked"),
    [
        ("https://shop.example", "https://shop.example/?cq_id=ID"),
        ("https://shop.example/p", "https://shop.example/p?cq_id=ID"),
        ("https://shop.example/p?", "https://shop.example/p?cq_id=ID"),
        ("https://shop.example/p?a=1&", "https://shop.example/p?a=1&cq_id=ID"),
        (
            "https://shop.example/p?a=1#f?x=1",
            "https://shop.example/p?a=1&cq_id=ID#f?x=1",
        ),
        ("https://shop.example/p#", "https://shop.example/p?cq_id=ID#"),
        (
            "https://buy.stripe.com/x?codeqr_client_reference_id=1",
            "https://buy.stripe.com/x?client_reference_id=codeqr_id_ID",
        ),
        (
            "https://buy.stripe.com/x?codeqr_client_reference_id=1&a=b#frag",
            "https://buy.stripe.com/x?client_reference_id=codeqr_id_ID&a=b#frag",
        ),
        (
            # Only the exact marker is replaced; a different value is a normal query.
            "https://buy.stripe.com/x?codeqr_client_reference_id=2",
            "https://buy.stripe.com/x?codeqr_client_reference_id=2&cq_id=ID",
        ),
        (
            "https://shop.example/ü?q=a b",
            "https://shop.example/%C3%BC?q=a%20b&cq_id=ID",
        ),
    ],
)
def test_tracked_destination_template(destination: str, tracked: str) -> None:
    link = build_cached_link(1, 1, destination, track_conversion=True)

    assert link.location_for("ID") == tracked
    assert link.location_for(None) == link.location


def test_untracked_link_ignores_the_click_id() -> None:
    link = build_cached_link(1, 1, "https://shop.example/?a=1", track_conversion=False)

    assert link.location_for("ID") == "https://shop.example/?a=1"


def test_destination_with_line_breaks_cannot_inject_headers() -> None:
    link = build_cached_link(1, 1, "https://shop.example/\r\nSet-Cookie: x=1", True)

    assert "\r" not in link.location_for("ID")
    assert "\n" not in link.location_for("ID")


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        (b"Go.Example.COM", "go.example.com"),
        (b"go.example.com:8443", "go.example.com"),
        (b"[::1]:8000", "::1"),
        (b"[::1", ""),
        (b"", ""),
    ],
)
def test_request_domain(host: bytes, domain: str) -> None:
    assert request_domain(host) == domain


@pytest.mark.parametrize(
    ("referer", "host"),
    [
        (b"https://News.Example.org:8443/a?b=c#d", "news.example.org"),
        (b"android-app://com.google.android.gm/", "com.google.android.gm"),
        (b"not a url", None),
        (b"http://[::1", None),
        (b"", None),
    ],
)
def test_referrer_host(referer: bytes, host: str | None) -> None:
    assert referrer_host(referer) == host


@pytest.mark.parametrize(
    ("value", "country"),
    [
        (b"DE", "DE"),
        (b"de", None),
        (b"XX", None),
        (b"T1", None),
        (b"DEU", None),
        (b"", None),
    ],
)
def test_country_code(value: bytes, country: str | None) -> None:
    assert country_code(value) == country


@pytest.mark.parametrize(
    ("user_agent", "device", "browser", "bot"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
            "desktop",
            "Chrome",
            False,
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
            "desktop",
            "Safari",
            False,
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
            "desktop",
            "Firefox",
            False,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36 Edg/124.0",
            "desktop",
            "Edge",
            False,
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0 Mobile Safari/537.36",
            "mobile",
            "Samsung Internet",
            False,
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; CUBOT X19) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36",
            "mobile",
            "Chrome",
            False,
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 Chrome/120 Safari/537.36",
            "tablet",
            "Chrome",
            False,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/458.0]",
            "mobile",
            "Facebook",
            False,
        ),
        ("curl/8.5.0", "other", "curl", False),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "bot",
            "Other",
            True,
        ),
        (
            "Mozilla/5.0 (compatible; GPTBot/1.2; +https://openai.com/gptbot)",
            "bot",
            "Other",
            True,
        ),
        (
            "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
            "bot",
            "LinkedInBot",
            True,
        ),
        ("Discordbot/2.0; +https://discordapp.com", "bot", "Discordbot", True),
        ("", None, None, False),
    ],
)
def test_user_agent_classification(
    user_agent: str, device: str | None, browser: str | None, bot: bool
) -> None:
    agent = classify(user_agent)

    assert (agent.device, agent.browser, agent.is_bot) == (device, browser, bot)


def test_user_agent_classification_cuts_very_long_values() -> None:
    padding = "x" * (MAX_USER_AGENT_LENGTH * 4)

    agent = classify("Mozilla/5.0 (iPhone) " + padding + " Googlebot/2.1")

    assert agent.is_bot is False  # the bot token lies beyond what is read
    assert agent.device == "mobile"
