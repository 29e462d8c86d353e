"""The short-link redirect under hostile input found by testing, over real HTTP."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from server.useragent import MAX_USER_AGENT_LENGTH, _classify, classify
from tests.conftest import LiveServer
from tests.server.conftest import BROWSER_UA, LinkFactory


@pytest.mark.parametrize("path", ["/%00", "/k1%00", "/%00k1"])
def test_redirect_key_with_a_nul_character_is_the_404_page(
    live_server: LiveServer, make_link: LinkFactory, path: str
) -> None:
    # PostgreSQL refuses NUL in a text parameter: the look-up itself was a 500.
    make_link("https://shop.example/", key="k1")

    with live_server.client() as client:
        response = client.get(path, headers={"user-agent": BROWSER_UA})

    assert response.status_code == 404
    assert "Link not found" in response.text


def _query_of(server: LiveServer, key: str) -> list[tuple[str, str]]:
    with server.client() as client:
        response = client.get(f"/{key}", headers={"user-agent": BROWSER_UA})
    assert response.status_code == 302
    return parse_qsl(urlsplit(response.headers["location"]).query)


def test_redirect_replaces_a_cq_id_already_in_the_destination(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    # Landing pages read the first cq_id: a stale one kept in front of ours stole the
    # attribution of every click.
    make_link(
        "https://shop.example/p?cq_id=stale&a=1&cq_id=old#f",
        key="k1",
        track_conversion=True,
    )

    query = _query_of(live_server, "k1")

    assert [name for name, _ in query] == ["a", "cq_id"]
    assert query[1][1] not in {"stale", "old"}


def test_redirect_stripe_marker_leaves_one_client_reference_id(
    live_server: LiveServer, make_link: LinkFactory
) -> None:
    make_link(
        "https://buy.stripe.com/x?client_reference_id=evil&codeqr_client_reference_id=1"
        "&a=b&codeqr_client_reference_id=1&cq_id=stale",
        key="k2",
        track_conversion=True,
    )

    query = _query_of(live_server, "k2")

    assert [name for name, _ in query] == ["client_reference_id", "a"]
    assert query[0][1].startswith("codeqr_id_")


def test_user_agent_cache_keys_are_cut_to_the_classified_length() -> None:
    # The LRU cache kept the whole header as its key: 4096 entries of 60 kB values.
    _classify.cache_clear()
    head = "Mozilla/5.0 " + "x" * MAX_USER_AGENT_LENGTH

    classify(head + "a" * 60_000)
    classify(head + "b" * 60_000)

    assert _classify.cache_info().currsize == 1
