"""Which images the badge check needs to see: badge candidates, fetched as snapshots.

A copy of the badge on the site's own host can only be recognised by its content (hash or
perceptual hash, audits/badgeart.py), so the crawler fetches the few images that could be
one: images in links, in footers, with badge-like words in their description or file name,
or small enough to be a seal. Images on the official verification hosts are not fetched: the
URL says what they are, and a fetch would register as a badge sighting on our own server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from crawler.links import host_of, normalise_link, origin_of

BADGE_WORDS = re.compile(
    r"诚信|认证|标识|红标|蓝标|可信|信用|trust|seal|badge|verif|cert|secure|shield|logo-?s",
    re.IGNORECASE,
)
FOOTER_HINT = re.compile(r"foot|bottom|copyright|beian|seal|badge", re.IGNORECASE)
MAX_SEAL_WIDTH = 320
MAX_SEAL_HEIGHT = 160
PER_PAGE = 8


def image_source(img) -> str:  # type: ignore[no-untyped-def]
    """The URL a browser would load (lazy-loading attributes first, then src, srcset)."""
    for attr in ("data-src", "data-original", "data-lazy-src", "src"):
        value = (img.get(attr) or "").strip()
        if value and not value.startswith("data:"):
            return value
    srcset = (img.get("srcset") or "").strip()
    return srcset.split(",")[0].split()[0] if srcset else ""


def _small(img) -> bool:  # type: ignore[no-untyped-def]
    def px(name: str) -> int | None:
        m = re.match(r"\s*(\d{1,5})", img.get(name) or "")
        return int(m.group(1)) if m else None

    w, h = px("width"), px("height")
    return (w is not None and w <= MAX_SEAL_WIDTH) and (h is None or h <= MAX_SEAL_HEIGHT)


def _context(img, page_host: str) -> bool:  # type: ignore[no-untyped-def]
    for anc in img.iterancestors():
        if not isinstance(anc.tag, str):
            continue
        if anc.tag == "a":
            href = anc.get("href") or ""
            host = (urlsplit(href).hostname or "").lower()
            if (host and host != page_host) or BADGE_WORDS.search(href):
                return True
        if anc.tag == "footer":
            return True
        marker = f"{anc.get('id') or ''} {anc.get('class') or ''}"
        if marker.strip() and FOOTER_HINT.search(marker):
            return True
    return False


def badge_image_candidates(root, base_url: str, official_hosts: set[str]) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Absolute URLs of images on this page that could be a copy of the badge."""
    page_host = host_of(base_url)
    origin = origin_of(base_url)
    found: list[str] = []
    for img in root.iter("img"):
        src = image_source(img)
        url = normalise_link(base_url, src, origin) if src else None
        if url is None or url in found or host_of(url) in official_hosts:
            continue
        words = f"{img.get('alt') or ''} {img.get('title') or ''} {img.get('class') or ''} {src}"
        if BADGE_WORDS.search(words) or _context(img, page_host) or _small(img):
            found.append(url)
            if len(found) >= PER_PAGE:
                break
    yield from found
