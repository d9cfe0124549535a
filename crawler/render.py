"""JavaScript rendering through scrapy-playwright: when to render, how to wait, what to keep.

``--render auto`` renders a page only when its static HTML cannot be trusted to show what a
customer sees (``render_reasons``); ``always`` renders every HTML page; ``never`` none. A page
is always fetched statically first (robots.txt, redirects, the size limit and the content type
are settled by Scrapy before a browser touches it) and then, if needed, loaded in headless
Chromium through the egress proxy (crawler/egress.py) under the same download slot, so a site's
politeness budget covers both.

Waiting: never for the ``load`` event (racy, and a hanging image would stall it). The page is
navigated to DOMContentLoaded, then we wait for network idle or a footer selector, then for the
DOM to stop changing, each bounded; a page that never goes quiet is captured when its time is
up and says so in its render reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from scrapy.http import Response, TextResponse

from crawler.dom import page_root
from crawler.egress import CHROMIUM, check_launch_environment, chromium_args
from crawler.netpolicy import parse_connect_to

logger = logging.getLogger(__name__)

MODES = ("auto", "never", "always")

# Per-page budget (ms / s); the navigation timeout is scrapy-playwright's.
NAVIGATION_TIMEOUT_MS = 15_000
IDLE_TIMEOUT_MS = 5_000
QUIET_DOM_MS = 300
QUIET_DOM_MAX_MS = 2_000
PAGE_BUDGET_S = 40.0
SCREENSHOT_TIMEOUT_MS = 8_000
FULL_PAGE_MAX_HEIGHT = 12_000
VIEWPORT = {"width": 1280, "height": 800}
MAX_RENDERED_HTML = 8 * 1024 * 1024

# -- deciding ---------------------------------------------------------------------------------
MIN_VISIBLE_TEXT = 200
SHELL_IDS = re.compile(r"^(?:app|root|__next|__nuxt|app-root|main-app|spa-root|application)$")
JS_REDIRECT = re.compile(
    r"(?:window\.|document\.|top\.|self\.)?location(?:\.href)?\s*=(?!=)|location\.(?:replace|assign)\s*\(",
)
SCRIPT_LINKS = re.compile(
    r"createElement\(\s*['\"]a['\"]|insertAdjacentHTML|innerHTML\s*\+?=|\.href\s*=|"
    r"document\.write\s*\(",
)
FOOTER_SIGNAL = re.compile(
    r"隐私|个人信息|投诉|举报|联系|营业执照|ICP|备案|privacy|contact|complaint|terms|licen[cs]e",
    re.IGNORECASE,
)
NOSCRIPT_HINT = re.compile(
    r"enable javascript|启用\s*javascript|开启\s*javascript|JavaScript", re.I
)


_INVISIBLE = frozenset(("script", "style", "noscript", "template"))


def _text_pieces(root: Any) -> Iterator[tuple[str | None, str | None]]:
    """(text, tail) of each element of the body, the text left out for script, style,
    noscript and template (their tails are the parent's text, which a visitor sees)."""
    body = root.find("body")
    if body is None:
        return
    for el in body.iter():
        tag = el.tag
        if isinstance(tag, str):
            yield (el.text if tag not in _INVISIBLE else None), el.tail


def _visible_text(root: Any) -> str:
    # One walk: element texts in order, then all tails in order.
    parts: list[str] = []
    tails: list[str] = []
    for text, tail in _text_pieces(root):
        if text:
            parts.append(text)
        if tail:
            tails.append(tail)
    parts.extend(tails)
    return " ".join(" ".join(parts).split())


def _has_visible_text(root: Any, at_least: int) -> bool:
    """``len(_visible_text(root)) >= at_least``, stopping as soon as it is known: the length
    of the whitespace-collapsed text only grows with each piece, whatever their order."""
    chars = words = 0
    for pieces in _text_pieces(root):
        for piece in pieces:
            if piece:
                for word in piece.split():
                    chars += len(word)
                    words += 1
        if chars + words - 1 >= at_least:
            return True
    return chars + max(words - 1, 0) >= at_least


def _links_signal(root: Any) -> bool:
    """Does any link's address or text name a footer page (privacy, complaints …)? Stops at
    the first one (a typical shop page has a hundred links)."""
    for a in root.iter("a"):
        if FOOTER_SIGNAL.search(f"{a.get('href') or ''} {' '.join(a.itertext())}"):
            return True
    return False


def render_reasons_apply(response: Response) -> bool:
    """Only HTML pages are rendered (a PDF or an image is what it is)."""
    if not isinstance(response, TextResponse):
        return False
    ctype = (response.headers.get(b"Content-Type") or b"").decode("latin-1").lower()
    return not ctype or "html" in ctype


def render_reasons(response: Response, root: Any = None) -> list[str]:
    """Why this statically fetched page cannot be trusted as a customer's view (empty: it can).
    ``root``: the page's tree when the caller has parsed it (crawler/dom.py).

    A page without scripts looks the same in a browser, except for a meta refresh; everything
    else needs some script to be there first."""
    if not render_reasons_apply(response):
        return []
    if root is None:
        root = page_root(response)
    if root is None:
        return []
    reasons: list[str] = []
    for meta in root.iter("meta"):
        if (meta.get("http-equiv") or "").lower() == "refresh":
            reasons.append("meta_refresh")
            break
    scripts = [s for s in root.iter("script") if isinstance(s.tag, str)]
    if not scripts:
        return reasons
    inline = "\n".join(s.text or "" for s in scripts)[:500_000]
    if not _has_visible_text(root, MIN_VISIBLE_TEXT):
        reasons.append("little_text")
    for el in root.iter("div", "main", "section", "app-root"):
        if (el.tag == "app-root" or SHELL_IDS.match(el.get("id") or "")) and len(
            " ".join(el.itertext()).strip()
        ) < 40:
            reasons.append("app_shell")
            break
    else:
        for ns in root.iter("noscript"):
            if NOSCRIPT_HINT.search(" ".join(ns.itertext())):
                reasons.append("app_shell")
                break
    if JS_REDIRECT.search(inline):
        reasons.append("js_redirect")
    if SCRIPT_LINKS.search(inline):
        reasons.append("script_links")
    # A link naming a footer page is usually found long before the end of the page, and
    # then the visible text (a walk of the whole body) is not needed.
    if not _links_signal(root) and not FOOTER_SIGNAL.search(_visible_text(root)[-3000:]):
        reasons.append("no_footer_signals")
    return list(dict.fromkeys(reasons))


# -- settings ---------------------------------------------------------------------------------
#: What a crawl that may render loads besides Scrapy's own components (crawler/warm.py).
BROWSER_COMPONENTS = (
    "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
    "scrapy_playwright.memusage.ScrapyPlaywrightMemoryUsageExtension",
)


def playwright_settings(connect_to: list[str], proxy_url: str, max_bytes: int) -> dict[str, Any]:
    """Scrapy settings that add scrapy-playwright for rendered requests (plain requests keep
    going through Scrapy's own HTTP handler, which the Playwright handler extends)."""
    check_launch_environment()
    return {
        "DOWNLOAD_HANDLERS": {
            "http": "crawler.render.BoundedPlaywrightDownloadHandler",
            "https": "crawler.render.BoundedPlaywrightDownloadHandler",
            "file": None,
            "data": None,
            "ftp": None,
            "s3": None,
        },
        "PLAYWRIGHT_BROWSER_TYPE": "chromium",
        "PLAYWRIGHT_LAUNCH_OPTIONS": {
            "executable_path": CHROMIUM,
            "headless": True,
            "args": chromium_args(parse_connect_to(connect_to)),
            # Playwright adds <-loopback> to the bypass list: loopback goes through us too.
            "proxy": {"server": proxy_url},
            "timeout": 30_000,
        },
        # One short-lived context per rendered page (rotated after every page: no cookies,
        # storage or leaked memory carried over), a few at a time.
        "PLAYWRIGHT_MAX_CONTEXTS": 4,
        "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": 1,
        "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": NAVIGATION_TIMEOUT_MS,
        "PLAYWRIGHT_ABORT_REQUEST": "crawler.render.should_abort",
        "PLAYWRIGHT_RESTART_DISCONNECTED_BROWSER": True,
        "ECTRUST_RENDER_MAX_BYTES": max_bytes,
        "EXTENSIONS": {
            "scrapy.extensions.memusage.MemoryUsage": None,
            "scrapy_playwright.memusage.ScrapyPlaywrightMemoryUsageExtension": 0,
        },
        # Summed RSS of this process and every browser process: Chromium's processes share
        # much of their memory, so the sum overstates it (bench/render.py: about 3 GB summed
        # with four pages rendering). Past the limit the crawl stops, its sites "interrupted".
        "MEMUSAGE_ENABLED": True,
        "MEMUSAGE_LIMIT_MB": 4096,
        "MEMUSAGE_WARNING_MB": 3072,
    }


CONTEXT_KWARGS = {
    "viewport": VIEWPORT,
    "service_workers": "block",
    "ignore_https_errors": False,
    "java_script_enabled": True,
    "accept_downloads": False,
    "locale": "zh-CN",
}

ABORT_TYPES = frozenset(("media", "font", "manifest", "texttrack", "eventsource", "other"))


def should_abort(request: Any) -> bool:
    """PLAYWRIGHT_ABORT_REQUEST: what a rendered page may not load. Media and web fonts are
    not evidence (system CJK fonts render the text); only http(s), data: and blob: URLs load.
    Where a request may connect is the egress proxy's decision, not this one's."""
    url = request.url
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("data", "blob"):
        return False
    if scheme not in ("http", "https"):
        return True
    return request.resource_type in ABORT_TYPES


# -- capturing --------------------------------------------------------------------------------
@dataclass
class Shot:
    kind: str  # viewport | full_page | footer | badge
    png: bytes
    selector: str = ""
    width: int = 0
    height: int = 0


@dataclass
class Capture:
    html: str
    final_url: str
    notes: list[str] = field(default_factory=list)
    shots: list[Shot] = field(default_factory=list)


QUIET_DOM_JS = """([quiet, max]) => new Promise(resolve => {
  const start = Date.now(); let last = Date.now();
  const obs = new MutationObserver(() => { last = Date.now(); });
  obs.observe(document.documentElement || document, {subtree: true, childList: true,
                                                     attributes: true, characterData: true});
  const tick = () => {
    const now = Date.now();
    if (now - last >= quiet || now - start >= max) {
      obs.disconnect(); resolve(now - last >= quiet);
    }
    else setTimeout(tick, 50);
  };
  setTimeout(tick, 50);
})"""

FOOTER_SELECTORS = (
    "footer",
    "[class*='footer' i]",
    "[id*='footer' i]",
    "[class*='bottom' i]",
    "[class*='copyright' i]",
)
BADGE_SELECTORS = (
    "a[href*='cert' i] img",
    "a[href*='verify' i] img",
    "img[alt*='诚信' i]",
    "img[alt*='trust' i]",
    "img[alt*='认证' i]",
    "img[src*='badge' i]",
    "img[src*='seal' i]",
)


async def settle(page: Any, notes: list[str]) -> None:
    """Wait for network idle or a footer, then for a quiet DOM; never past the budgets."""
    idle = asyncio.ensure_future(page.wait_for_load_state("networkidle", timeout=IDLE_TIMEOUT_MS))
    footer = asyncio.ensure_future(
        page.wait_for_selector("footer a, [class*='footer' i] a", timeout=IDLE_TIMEOUT_MS)
    )
    done, _ = await asyncio.wait({idle, footer}, return_when=asyncio.FIRST_COMPLETED)
    if idle not in done:
        if footer.exception() is None:
            # A footer link is there: give the network a short while more, not the full wait.
            await asyncio.wait({idle}, timeout=1.0)
        else:
            await asyncio.wait({idle})  # bounded by its own timeout
    if not (idle.done() and not idle.cancelled() and idle.exception() is None):
        notes.append("network not idle")
    for task in (idle, footer):
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task
    quiet = False
    with contextlib.suppress(Exception):
        quiet = await page.evaluate(QUIET_DOM_JS, [QUIET_DOM_MS, QUIET_DOM_MAX_MS])
    if not quiet:
        notes.append("DOM still changing")


async def _content(page: Any) -> str:
    """The serialised DOM; a page that is navigating (a JS redirect) is waited for first."""
    for _ in range(3):
        try:
            return await page.content()
        except Exception as exc:
            if "navigating" not in str(exc) and "destroyed" not in str(exc):
                raise
            with contextlib.suppress(Exception):
                await page.wait_for_load_state("domcontentloaded", timeout=NAVIGATION_TIMEOUT_MS)
            with contextlib.suppress(Exception):
                await settle(page, [])
    return await page.content()


async def _first_visible(page: Any, selectors: tuple[str, ...]) -> tuple[Any, str] | None:
    for selector in selectors:
        with contextlib.suppress(Exception):
            loc = page.locator(selector)
            count = await loc.count()
            for i in range(min(count, 5)):
                el = loc.nth(i)
                if await el.is_visible():
                    return el, selector
    return None


async def _png_size(data: bytes) -> tuple[int, int]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return 0, 0


async def capture(page: Any, *, screenshots: bool) -> Capture:
    notes: list[str] = []
    await settle(page, notes)
    html = await _content(page)
    if len(html) > MAX_RENDERED_HTML:
        raise RenderTooLarge(f"rendered page is {len(html)} characters")
    result = Capture(html=html, final_url=page.url, notes=notes)
    if not screenshots:
        return result
    shots: list[Shot] = []
    with contextlib.suppress(Exception):
        shots.append(Shot("viewport", await page.screenshot(timeout=SCREENSHOT_TIMEOUT_MS)))
    with contextlib.suppress(Exception):
        height = await page.evaluate(
            "() => Math.max(document.documentElement.scrollHeight, document.body ? "
            "document.body.scrollHeight : 0)"
        )
        if height and height > VIEWPORT["height"]:
            clip = {
                "x": 0,
                "y": 0,
                "width": VIEWPORT["width"],
                "height": min(int(height), FULL_PAGE_MAX_HEIGHT),
            }
            shots.append(
                Shot(
                    "full_page",
                    await page.screenshot(full_page=True, clip=clip, timeout=SCREENSHOT_TIMEOUT_MS),
                )
            )
    for kind, selectors in (("footer", FOOTER_SELECTORS), ("badge", BADGE_SELECTORS)):
        found = await _first_visible(page, selectors)
        if found is None:
            continue
        el, selector = found
        with contextlib.suppress(Exception):
            png = await el.screenshot(timeout=SCREENSHOT_TIMEOUT_MS)
            shots.append(Shot(kind, png, selector=selector))
    for shot in shots:
        shot.width, shot.height = await _png_size(shot.png)
    result.shots = shots
    return result


class RenderTooLarge(Exception):
    pass


class RenderBlocked(Exception):
    """The page navigated to an address the egress policy refused."""


def classify_render_error(exc: BaseException) -> str:
    """Names for failed renders, as stored in ``snapshots.error``."""
    text = f"{type(exc).__name__} {exc}"
    low = text.lower()
    if isinstance(exc, RenderBlocked):
        return "blocked_address"
    if isinstance(exc, RenderTooLarge) or "err_content_length_mismatch" in low:
        return "render_too_large"
    if (
        isinstance(exc, BrowserLost)
        or "targetclosed" in low
        or "browser has been closed" in low
        or "target page, context or browser" in low
    ):
        return "render_browser_crashed"
    if "crash" in low:
        return "render_crashed"
    if isinstance(exc, TimeoutError | RenderTimeout) or "timeout" in low:
        return "render_timeout"
    if "err_tunnel_connection_failed" in low or "err_proxy" in low or "403" in low:
        return "render_blocked_address"
    if "err_name_not_resolved" in low:
        return "render_dns_failure"
    return "render_failed"


def is_browser_crash(exc: BaseException) -> bool:
    return classify_render_error(exc) in ("render_browser_crashed", "render_crashed")


async def close_page(page: Any) -> None:
    """Close a rendered page and its context (one context per page): every path ends here."""
    if page is None:
        return
    context = None
    with contextlib.suppress(Exception):
        context = page.context
    with contextlib.suppress(Exception):
        if not page.is_closed():
            await asyncio.wait_for(page.close(), 10)
    if context is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(context.close(), 10)


async def close_context(context: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(context.close(), 10)


RENDER_DOWNLOAD_BUDGET_S = 180.0


@functools.cache
def _bounded_handler() -> type:
    """scrapy-playwright's handler with a hard limit on one rendered download.

    scrapy-playwright enforces neither DOWNLOAD_TIMEOUT nor DOWNLOAD_MAXSIZE (RELIABILITY.md
    decision 7): its own navigation timeout bounds ``goto``, but a wait for a free context or a
    browser relaunch is unbounded. This is the safety net, well above the normal limits (it
    includes the wait for one of the few contexts while other sites render)."""
    from scrapy_playwright.handler import ScrapyPlaywrightDownloadHandler

    class BoundedPlaywrightDownloadHandler(ScrapyPlaywrightDownloadHandler):
        def __init__(self, crawler):  # type: ignore[no-untyped-def]
            super().__init__(crawler)
            # Its own retry after a browser crash reuses the request's context name and page,
            # and can wait forever on the dead context's page slot. The spider retries a
            # crashed render itself, once, in a fresh context (site_audit._render_failed).
            self.config.target_closed_max_retries = 0
            self._inflight: set[asyncio.Future[Any]] = set()
            self._started: asyncio.Future[None] | None = None

        # Playwright's driver (a Node.js process, one per handler: http and https each have
        # one) is started on the first rendered request, not when the engine starts: most
        # shops render nothing, and two idle drivers cost ~150 MB for the whole crawl.
        def _engine_started(self):  # type: ignore[no-untyped-def]
            return None

        async def _maybe_launch_in_thread(self) -> None:
            return None

        async def _start_driver(self) -> None:
            if self._started is None:
                self._started = asyncio.ensure_future(self._launch())
            await asyncio.shield(self._started)

        async def _started_then_download(self, request, spider):  # type: ignore[no-untyped-def]
            await self._start_driver()
            return await super()._download_request(request, spider)

        async def _download_request(self, request, spider=None):  # type: ignore[no-untyped-def]
            inner = asyncio.ensure_future(self._started_then_download(request, spider))
            self._inflight.add(inner)
            try:
                return await asyncio.wait_for(inner, RENDER_DOWNLOAD_BUDGET_S)
            except TimeoutError as exc:
                raise RenderTimeout(
                    f"rendered download exceeded {RENDER_DOWNLOAD_BUDGET_S:.0f}s"
                ) from exc
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if inner.cancelled() and task is not None and not task.cancelling():
                    raise BrowserLost("browser disconnected during the download") from None
                raise
            finally:
                self._inflight.discard(inner)

        async def _browser_disconnected_callback(self) -> None:
            # Downloads in flight on a dead browser may otherwise never settle (seen when
            # Chromium is killed while a context or page is being created): end them now, as
            # crashes, so the spider retries them once on the relaunched browser.
            for fut in list(self._inflight):
                fut.cancel()
            await super()._browser_disconnected_callback()

    return BoundedPlaywrightDownloadHandler


class RenderTimeout(Exception):
    """A rendered download overran its hard limit."""


class BrowserLost(Exception):
    """The browser disconnected (crashed or was killed) while a page was being rendered."""


def __getattr__(name: str) -> Any:
    # Imported lazily: scrapy-playwright (and Playwright) load only when rendering is on.
    if name == "BoundedPlaywrightDownloadHandler":
        return _bounded_handler()
    raise AttributeError(name)
