"""robots.txt as RFC 9309 reads it; Scrapy's own middleware allows everything on errors.

- 2xx: the rules apply.
- 4xx (but 429): no rules, everything allowed.
- 5xx, 429, or no answer at all: everything disallowed for this crawl (not cached beyond it).
"""

from __future__ import annotations

from typing import Any

from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response

from crawler.failures import FetchRefused, classify_exception


class RobotsDenied(FetchRefused):
    """A request robots.txt does not allow; ``reason`` says which rule decided."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, f"robots.txt: {reason}")


class _DisallowAll:
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def allowed(self, url: str, user_agent: Any) -> bool:
        return False


class RFC9309RobotsMiddleware(RobotsTxtMiddleware):
    async def _parse_robots(self, response: Response, netloc: str, request: Request) -> None:
        if response.status >= 500 or response.status == 429:
            self._settle(netloc, _DisallowAll(f"robots_http_{response.status}"))
        elif response.status >= 400:
            self._settle(netloc, None)  # no robots.txt: allowed
        else:
            await super()._parse_robots(response, netloc, request)
            self._apply_crawl_delay(netloc)

    def _apply_crawl_delay(self, netloc: str) -> None:
        """Scrapy reads Crawl-delay but never applies it; the pacing middleware does,
        capped (RELIABILITY.md T13)."""
        from crawler.middlewares.pacing import HostPacer

        parser = self._parsers.get(netloc)
        rp = getattr(parser, "rp", None)
        try:
            agent = self._robotstxt_useragent or self._default_useragent
            delay = rp.crawl_delay(agent) if rp is not None else None
        except Exception:  # a malformed value is no delay
            delay = None
        if delay:
            host = netloc.rsplit(":", 1)[0].strip("[]").lower()
            HostPacer.for_crawler(self.crawler).set_crawl_delay(host, float(delay))

    def _robots_error(self, exc: Exception, netloc: str) -> None:
        # No answer at all: the site is unreachable, and the failure names why, so the
        # homepage is recorded as e.g. dns_failure rather than as a robots.txt decision.
        if isinstance(exc, RobotsDenied | FetchRefused):
            reason = exc.reason
        elif isinstance(exc, IgnoreRequest):
            reason = "robots_unavailable"
        else:
            reason = classify_exception(exc, netloc.rsplit(":", 1)[0].strip("[]").lower())
        self._settle(netloc, _DisallowAll(reason))

    def _settle(self, netloc: str, parser: Any) -> None:
        pending = self._parsers[netloc]
        self._parsers[netloc] = parser
        if hasattr(pending, "callback"):
            pending.callback(parser)

    def process_request_2(self, rp: Any, request: Request) -> None:
        if isinstance(rp, _DisallowAll):
            self._stats.inc_value("robotstxt/forbidden")
            raise RobotsDenied(rp.reason)
        try:
            super().process_request_2(rp, request)
        except IgnoreRequest as exc:
            raise RobotsDenied("robots_disallowed") from exc
