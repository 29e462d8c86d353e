"""``GET /{key}``: the short-link redirect, the hottest path of the service.

The link is found by (domain, key): the domain is the request's Host without its port,
lowercased, so a link created for another domain is not served here. Look-ups go through
an in-process LRU cache with a short TTL (negative answers too), so most redirects read no
database at all. A counted click gets a random id, is handed to the batched click writer
(:mod:`server.clicks`) and only then answered, so every 302 carrying a click id stands for a
click that will be written. HEAD requests and self-declared bots are redirected without
being counted and without a click id.

The endpoint is a plain ASGI callable (no Request object, no Response class): it reads the
headers it needs straight from the scope. :class:`ShortLinkFastPath` (installed by the app)
hands it one-segment GET/HEAD paths before the router walks every other route. Together
they keep a redirect with its click close to the cost of a bare Starlette 302 route."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, urlsplit

from sqlalchemy import Engine
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from server import db
from server.clicks import PendingClick, get_click_writer
from server.log_config import get_logger
from server.models import Link, utcnow
from server.useragent import classify

logger = get_logger(__name__)

CLICK_ID_BYTES = 16  # the random part: secrets.token_urlsafe(16), 22 characters
# URL-safe base64 digits in ASCII order, so the time prefix sorts like the time it encodes.
_SORTED_DIGITS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
CLICK_PARAM = "cq_id"
STRIPE_MARKER = "codeqr_client_reference_id=1"
STRIPE_PARAM = "client_reference_id=codeqr_id_"
COUNTRY_HEADERS = (b"cf-ipcountry", b"x-vercel-ip-country", b"x-country-code")

_MAX_KEY_LENGTH = 190
_MAX_DOMAIN_LENGTH = 253
# What Starlette's RedirectResponse leaves unquoted in a Location header.
_LOCATION_SAFE = ":/%#?=@[]!$&'()*+,;"

_REDIRECT_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-robots-tag", b"noindex"),
    (b"content-length", b"0"),
]
_NOT_FOUND_BODY = (
    b"<!doctype html><html lang=en><head><meta charset=utf-8>"
    b"<meta name=robots content=noindex><title>Link not found</title></head>"
    b"<body><h1>Link not found</h1>"
    b"<p>This short link does not exist or has been removed.</p></body></html>"
)
_NOT_FOUND_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-robots-tag", b"noindex"),
    (b"content-length", str(len(_NOT_FOUND_BODY)).encode()),
]


# --- links and their cache -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedLink:
    """What a redirect needs of a link. With conversion tracking, the click's Location is
    ``tracked_prefix + click_id + tracked_suffix``, both parts computed once."""

    id: int
    workspace_id: int
    location: str
    track_conversion: bool
    tracked_prefix: str
    tracked_suffix: str

    def location_for(self, click_id: str | None) -> str:
        if click_id is None or not self.track_conversion:
            return self.location
        return self.tracked_prefix + click_id + self.tracked_suffix


def build_cached_link(
    link_id: int, workspace_id: int, url: str, track_conversion: bool
) -> CachedLink:
    location = quote(url, safe=_LOCATION_SAFE)
    prefix, suffix = _tracking_template(location)
    return CachedLink(link_id, workspace_id, location, track_conversion, prefix, suffix)


def _tracking_template(location: str) -> tuple[str, str]:
    """Split a destination around the click id: the Stripe Payment Links marker is
    replaced; otherwise ``cq_id`` is appended to the query, before any fragment.

    The click id is the only one the destination carries: a ``cq_id`` already in it is
    dropped (landing pages read the first one), and with the marker, so are further
    markers and any other ``client_reference_id`` (Stripe takes one)."""
    base, hash_mark, fragment = location.partition("#")
    suffix_fragment = hash_mark + fragment
    path, _, query = base.partition("?")
    if not urlsplit(path).path:
        path += "/"  # https://shop.example -> https://shop.example/?cq_id=...
    params = [p for p in query.split("&") if p] if query else []
    params = [p for p in params if not _is_param(p, CLICK_PARAM)]
    if STRIPE_MARKER in params:
        index = params.index(STRIPE_MARKER)
        before = [p for p in params[:index] if not _is_stripe_param(p)]
        after = [p for p in params[index + 1 :] if not _is_stripe_param(p)]
        prefix = "&".join([*before, STRIPE_PARAM])
        return path + "?" + prefix, "".join("&" + p for p in after) + suffix_fragment
    return path + "?" + "".join(p + "&" for p in params) + CLICK_PARAM + "=", (
        suffix_fragment
    )


def _is_param(item: str, name: str) -> bool:
    return item.partition("=")[0] == name


def _is_stripe_param(item: str) -> bool:
    return item == STRIPE_MARKER or _is_param(item, "client_reference_id")


class LinkCache:
    """A bounded LRU of link look-ups with a TTL; ``None`` (no such link) is cached too."""

    def __init__(self, max_entries: int = 10_000, ttl_seconds: float = 5.0) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[float, CachedLink | None]] = (
            OrderedDict()
        )
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._loading: dict[tuple[str, str], asyncio.Future[CachedLink | None]] = {}
        self._engine: Engine | None = None

    async def get(self, domain: str, key: str) -> CachedLink | None:
        engine = db.get_engine()
        if engine is not self._engine:
            # Another database (tests, or settings reloaded): nothing cached still holds.
            self._entries.clear()
            self._engine = engine
        cache_key = (domain, key)
        entry = self._entries.get(cache_key)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            self._entries.move_to_end(cache_key)
            return entry[1]
        return await self._load(cache_key)

    def clear(self) -> None:
        self._entries.clear()

    async def _load(self, cache_key: tuple[str, str]) -> CachedLink | None:
        loading = self._loading.get(cache_key)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[CachedLink | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._loading[cache_key] = future
        try:
            link = await run_in_threadpool(load_link, *cache_key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked as retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._loading[cache_key]
        future.set_result(link)
        self._store(cache_key, link)
        return link

    def _store(self, cache_key: tuple[str, str], link: CachedLink | None) -> None:
        self._entries[cache_key] = (time.monotonic() + self._ttl, link)
        self._entries.move_to_end(cache_key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


def load_link(domain: str, key: str) -> CachedLink | None:
    """Read one link from the database (runs in a worker thread)."""
    with Session(db.get_engine()) as session:
        row = session.exec(
            select(Link.id, Link.workspace_id, Link.url, Link.track_conversion).where(
                Link.domain == domain, Link.key == key
            )
        ).first()
    if row is None:
        return None
    link_id, workspace_id, url, track_conversion = row
    assert link_id is not None
    return build_cached_link(link_id, workspace_id, url, track_conversion)


def new_click_id() -> str:
    """30 URL-safe characters: the time in milliseconds (8 characters, sortable) then 128
    random bits. The prefix keeps the click table's primary-key index append-mostly: new
    ids land beside each other instead of all over the index, which made batch inserts
    about three times cheaper on a table of a few hundred thousand clicks."""
    return _time_prefix(time.time_ns() // 1_000_000) + secrets.token_urlsafe(
        CLICK_ID_BYTES
    )


@lru_cache(maxsize=4)
def _time_prefix(millis: int) -> str:
    return "".join(
        _SORTED_DIGITS[(millis >> shift) & 63] for shift in range(42, -1, -6)
    )


# --- request parsing ----------------------------------------------------------------------


@dataclass(slots=True)
class _Headers:
    host: bytes = b""
    user_agent: bytes = b""
    referer: bytes = b""
    country: bytes = b""


def _read_headers(raw: list[tuple[bytes, bytes]]) -> _Headers:
    headers = _Headers()
    for name, value in raw:
        if name == b"host":
            headers.host = value
        elif name == b"user-agent":
            headers.user_agent = value
        elif name == b"referer":
            headers.referer = value
        elif name in COUNTRY_HEADERS and not headers.country:
            headers.country = value
    return headers


def request_domain(host: bytes) -> str:
    """The Host header without port, lowercased (IPv6 literals lose their brackets)."""
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else ""
    return text.partition(":")[0]


def referrer_host(referer: bytes) -> str | None:
    if not referer:
        return None
    try:
        host = urlsplit(referer.decode("latin-1").strip()).hostname
    except ValueError:
        return None
    return host[:_MAX_DOMAIN_LENGTH] if host else None


def country_code(value: bytes) -> str | None:
    """Two uppercase ASCII letters, as proxies send them; anything else (and the proxies'
    "unknown" XX) is no country."""
    if len(value) == 2 and value.isalpha() and value.isupper() and value != b"XX":
        return value.decode("ascii")
    return None


# --- the endpoint ---------------------------------------------------------------------------


class RedirectEndpoint:
    """ASGI endpoint of the ``/{key}`` route."""

    def __init__(self, cache: LinkCache | None = None) -> None:
        self.cache = cache or LinkCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key: str = scope["path_params"]["key"]
        headers = _read_headers(scope["headers"])
        domain = request_domain(headers.host)
        link = None
        if _servable(key, domain):
            link = await self.cache.get(domain, key)
        if link is None:
            await _send(send, 404, _NOT_FOUND_HEADERS, _NOT_FOUND_BODY)
            return

        click_id = await self._count(scope["method"], headers, link)
        location = link.location_for(click_id).encode("latin-1")
        await _send(send, 302, [(b"location", location), *_REDIRECT_HEADERS], b"")

    async def _count(
        self, method: str, headers: _Headers, link: CachedLink
    ) -> str | None:
        """Record a click and return its id, or None for HEAD and bots."""
        if method != "GET":
            return None
        agent = classify(headers.user_agent.decode("latin-1"))
        if agent.is_bot:
            return None
        click_id = new_click_id()
        click = PendingClick(
            id=click_id,
            workspace_id=link.workspace_id,
            link_id=link.id,
            timestamp=utcnow(),
            referrer_host=referrer_host(headers.referer),
            device=agent.device,
            browser=agent.browser,
            country=country_code(headers.country),
        )
        await get_click_writer().record(click)
        return click_id


def _servable(key: str, domain: str) -> bool:
    """Worth a look-up: within the column widths, and no NUL (PostgreSQL refuses it in
    a text parameter, so no link can hold one)."""
    return (
        len(key) <= _MAX_KEY_LENGTH
        and 0 < len(domain) <= _MAX_DOMAIN_LENGTH
        and "\x00" not in key
    )


async def _send(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


redirect_endpoint = RedirectEndpoint()


class ShortLinkFastPath:
    """ASGI middleware: a GET or HEAD of a one-segment path that no other route claims goes
    straight to the redirect endpoint, skipping the router's walk over every route (a
    regular expression per route, which cost more than the redirect itself).

    The set of claimed first segments is read from the app's routes on the first request.
    Any other request, and every request when a route's first segment is a parameter, goes
    down the normal stack, where ``/{key}`` is still the last route."""

    def __init__(self, app: ASGIApp, endpoint: RedirectEndpoint | None = None) -> None:
        self.app = app
        self.endpoint = endpoint or redirect_endpoint
        self._claimed: frozenset[str] | None = None
        self._enabled = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._enabled and scope["type"] == "http" and scope["method"] in _COUNTED:
            key: str = scope["path"][1:]
            if self._is_short_link(key, scope):
                scope["path_params"] = {"key": key}
                await self.endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _is_short_link(self, key: str, scope: Scope) -> bool:
        if not key or "/" in key or scope.get("root_path"):
            return False
        claimed = self._claimed
        if claimed is None:
            claimed = self._read_claimed(scope)
        return self._enabled and key not in claimed

    def _read_claimed(self, scope: Scope) -> frozenset[str]:
        claimed: set[str] = set()
        for route in scope["app"].routes:
            if getattr(route, "endpoint", None) is self.endpoint:
                continue
            path = getattr(route, "path", None)
            first = path.lstrip("/").split("/")[0] if isinstance(path, str) else "{"
            if "{" in first or not isinstance(route, (Route, WebSocketRoute, Mount)):
                logger.info("redirects.fast_path_disabled", route=repr(route))
                self._enabled = False
            claimed.add(first)
        self._claimed = frozenset(claimed)
        return self._claimed


_COUNTED = frozenset({"GET", "HEAD"})

routes: list[BaseRoute] = [
    Route("/{key}", redirect_endpoint, methods=["GET", "HEAD"], name="redirect"),
]
