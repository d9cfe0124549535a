"""Choosing which links an evaluator would click: hint links first, a few ordinary pages."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from scrapy.utils.sitemap import Sitemap
from w3lib.url import safe_url_string

# Link texts/URL parts every bundled configuration follows; rule packs add their own.
DEFAULT_HINTS = (
    "privacy",
    "个人信息",
    "隐私",
    "投诉",
    "举报",
    "联系",
    "关于",
    "营业执照",
    "证照",
    "帮助中心",
    "帮助",
    "help",
    "terms",
    "协议",
    "法律",
    "legal",
    "contact",
    "about",
    "complaint",
    "policy",
    "政策",
    "声明",
    "规则",
)
# A link that names a privacy policy (not merely privacy): when none is seen, the spider
# looks in sitemap.xml and then at POLICY_PATHS, where a customer would not look.
POLICY_LINK = re.compile(
    r"隐私政策|隐私权|隐私声明|隐私保护|个人信息保护|privacy[ _-]?(?:policy|notice|statement)"
    r"|privacy(?:\.html?|/?$)",
    re.IGNORECASE,
)
POLICY_PATHS = ("/privacy", "/privacy-policy", "/privacy.html", "/legal/privacy")
SITEMAP_POLICY_URL = re.compile(r"privacy|yinsi|隐私|个人信息", re.IGNORECASE)
# Ordinary pages worth sampling for site-wide elements (badge, footer).
SAMPLE_URL = re.compile(
    r"product|item|goods|detail|categor|/cat\b|/list|/shop|/p/|/c/|\d{3,}", re.IGNORECASE
)
_SKIP_EXT = re.compile(
    r"\.(?:jpe?g|png|gif|webp|svg|ico|css|js|zip|rar|7z|gz|exe|apk|dmg|mp[34]|avi|mov|woff2?)$",
    re.IGNORECASE,
)


def compile_hints(hints: Iterable[str]) -> re.Pattern[str]:
    words = sorted({h.strip() for h in hints if h.strip()}, key=len, reverse=True)
    return re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)


def normalise_url(base: str, href: str) -> str | None:
    """Absolute http(s) URL without fragment, or None for anything a crawler must not follow
    (javascript:, mailto:, data:, file: …)."""
    href = (href or "").strip()
    if not href or href.startswith("#"):
        return None
    absolute = urljoin(base, href)
    parts = urlsplit(safe_url_string(absolute))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    path = parts.path or "/"
    return urlunsplit((parts.scheme, parts.netloc.lower(), path, parts.query, ""))


@functools.lru_cache(maxsize=16384)
def _normalised(base: str, href: str) -> str | None:
    return normalise_url(base, href)


@functools.lru_cache(maxsize=16384)
def _is_file(url: str) -> bool:
    return bool(_SKIP_EXT.search(urlsplit(url).path))


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, the key under which ``normalise_link``
    remembers links relative to the host's root."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


def normalise_link(base_url: str, href: str, origin: str | None = None) -> str | None:
    """``normalise_url``, memoised: the pages of a site share their menus, footers and
    images, and a link that is absolute, or relative to the host's root, resolves the same
    on every page of the host, so those are remembered by ``origin`` (``origin_of`` the
    page) or alone rather than by the page's URL."""
    href = href.strip()
    if href[:7].lower() == "http://" or href[:8].lower() == "https://":
        return _normalised("", href)
    if origin is not None and href.startswith("/") and not href.startswith("//"):
        return _normalised(origin, href)
    return _normalised(base_url, href)


def followable_url(base_url: str, href: str, origin: str | None = None) -> str | None:
    """``normalise_link``, None also for files no evaluator opens (images, scripts,
    archives)."""
    url = normalise_link(base_url, href, origin)
    return None if url is None or _is_file(url) else url


@functools.lru_cache(maxsize=16384)  # asked of every link on every page
def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def same_site(host: str, domain: str, extra_hosts: set[str]) -> bool:
    return host == domain or host.endswith("." + domain) or host in extra_hosts


@dataclass(frozen=True)
class Link:
    url: str
    text: str
    hint: bool


def extract_links(root, base_url: str, hints: re.Pattern[str]) -> Iterator[Link]:  # type: ignore[no-untyped-def]
    """Links of an lxml document, with whether text, title or URL match a hint."""
    origin = origin_of(base_url)
    for a in root.iter("a"):
        href = a.get("href")
        url = followable_url(base_url, href, origin) if href else None
        if url is None:
            continue
        text = " ".join("".join(a.itertext()).split())[:200]
        label = f"{text} {a.get('title') or ''} {a.get('aria-label') or ''}"
        yield Link(url=url, text=text, hint=bool(hints.search(label) or hints.search(url)))


def policy_urls_in_sitemap(body: bytes, limit: int) -> list[str]:
    """Up to ``limit`` URLs of a sitemap (not a sitemap index: one level keeps the last
    resort bounded) whose address names a privacy policy."""
    try:
        sitemap = Sitemap(body)
    except Exception:  # malformed XML is a site's problem, not the crawl's
        return []
    if sitemap.type != "urlset":
        return []
    found: list[str] = []
    for entry in sitemap:
        loc = normalise_url(entry.get("loc", ""), entry.get("loc", ""))
        if loc and SITEMAP_POLICY_URL.search(unquote(loc)) and loc not in found:
            found.append(loc)
            if len(found) >= limit:
                break
    return found


def looks_like_sample(url: str) -> bool:
    return bool(SAMPLE_URL.search(urlsplit(url).path + "?" + urlsplit(url).query))
