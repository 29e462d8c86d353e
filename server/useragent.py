"""A compact User-Agent classifier for click analytics: device class, browser family, bot.

Why not ua-parser on the redirect path: its pure-Python resolver tries hundreds of regular
expressions per new string (around a millisecond), while a click needs only a coarse class.
The few ordered patterns below cost a few microseconds, and :func:`classify` keeps the most
recent answers in an LRU cache, so a repeated User-Agent costs one dictionary look-up.

Bots are the crawlers and link-preview fetchers that identify themselves (search engines,
social and chat unfurlers, AI crawlers, headless browsers and audit tools). Generic HTTP
libraries (curl, wget, python-httpx, ...) are NOT bots here: merchants and their backends
click links with them while integrating, and those clicks must get a click id."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

MAX_USER_AGENT_LENGTH = 512

_BOT = re.compile(
    r"(?<!cu)bot(?:[/;)+_\-\s]|$)"  # Googlebot/2.1, bingbot, Slackbot-LinkExpanding...
    r"|crawler|spider|crawling|slurp|archiver"
    r"|facebookexternalhit|facebookcatalog|meta-externalagent|embedly|quora link preview"
    r"|whatsapp|slack-imgproxy|skypeuripreview|vkshare|nuzzel"
    r"|google-inspectiontool|mediapartners-google|adsbot-google|feedfetcher-google"
    r"|google-read-aloud|googleother|bytespider|gptbot|chatgpt-user|perplexity"
    r"|anthropic-ai|claude-web|ccbot|petalbot|baiduspider"
    r"|headlesschrome|lighthouse|chrome-lighthouse|pagespeed|phantomjs|prerender"
    r"|w3c_validator|validator\.nu|monitor|uptime|pingdom|bitlybot|linkcheck",
    re.IGNORECASE,
)

_TABLET = re.compile(
    r"ipad|tablet|kindle|silk/|playbook|nexus (?:7|9|10)|sm-t\d|android(?!.*mobile)",
    re.IGNORECASE,
)
_MOBILE = re.compile(
    r"mobi|iphone|ipod|windows phone|blackberry|bb10|opera mini|webos|android",
    re.IGNORECASE,
)
_TV = re.compile(
    r"smart-?tv|smarttv|appletv|crkey|roku|bravia|tizen.*tv|web0s|hbbtv|googletv",
    re.IGNORECASE,
)
_CONSOLE = re.compile(r"playstation|xbox|nintendo", re.IGNORECASE)
_DESKTOP = re.compile(r"windows nt|macintosh|mac os x|x11|cros|linux", re.IGNORECASE)

# Order matters: most browsers claim to be Chrome and Safari as well.
_BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("Facebook", r"fban/|fbav/|fb_iab/"),
        ("Instagram", r"instagram"),
        ("TikTok", r"bytelocale|musical_ly|tiktok"),
        ("LinkedIn", r"linkedinapp"),
        ("Edge", r"edg(?:e|a|ios)?/"),
        ("Opera", r"opr/|opera|opios/"),
        ("Samsung Internet", r"samsungbrowser/"),
        ("Yandex", r"yabrowser/"),
        ("UC Browser", r"ucbrowser/"),
        ("Vivaldi", r"vivaldi/"),
        ("Brave", r"brave/"),
        ("Firefox", r"firefox/|fxios/"),
        ("Internet Explorer", r"msie |trident/"),
        ("Chrome", r"chrome/|crios/|chromium/"),
        ("Safari", r"safari/|applewebkit/.*mobile/"),
    )
)
_PRODUCT = re.compile(r"^([A-Za-z][A-Za-z0-9._\-]{0,31})")


@dataclass(frozen=True, slots=True)
class UserAgentClass:
    """What a click keeps of its User-Agent. ``device`` is one of desktop, mobile, tablet,
    tv, console, bot or other; ``browser`` a family name or the client's product token."""

    device: str | None
    browser: str | None
    is_bot: bool


_EMPTY = UserAgentClass(device=None, browser=None, is_bot=False)


def classify(user_agent: str) -> UserAgentClass:
    """Classify a User-Agent header value (cached; long values are cut first, so the
    cache holds at most MAX_USER_AGENT_LENGTH characters per entry)."""
    return _classify(user_agent[:MAX_USER_AGENT_LENGTH])


@lru_cache(maxsize=4096)
def _classify(user_agent: str) -> UserAgentClass:
    ua = user_agent.strip()
    if not ua:
        return _EMPTY
    if _BOT.search(ua):
        return UserAgentClass(device="bot", browser=_browser(ua), is_bot=True)
    return UserAgentClass(device=_device(ua), browser=_browser(ua), is_bot=False)


def is_bot(user_agent: str) -> bool:
    return classify(user_agent).is_bot


def _device(ua: str) -> str:
    if _TV.search(ua):
        return "tv"
    if _CONSOLE.search(ua):
        return "console"
    if _TABLET.search(ua):
        return "tablet"
    if _MOBILE.search(ua):
        return "mobile"
    if _DESKTOP.search(ua):
        return "desktop"
    return "other"


def _browser(ua: str) -> str | None:
    for name, pattern in _BROWSERS:
        if pattern.search(ua):
            return name
    product = _PRODUCT.match(ua)
    if product is None or product.group(1) == "Mozilla":
        return "Other"
    return product.group(1)
