"""Per-host pacing: Retry-After, Crawl-delay, exponential backoff and a circuit breaker.

Scrapy retries a 429 or 503 at once and ignores ``Retry-After`` and ``Crawl-delay``; a host
that fails every request is asked again and again. Here, per host (RELIABILITY.md T12–T14):

- ``Retry-After`` (seconds or an HTTP date) on 429/503: no request goes to that host before
  then; the request is retried up to RETRY_TIMES. A wait beyond ECTRUST_RETRY_AFTER_MAX
  seconds ends the site's fetching as ``rate_limited`` (other sites go on).
- ``Crawl-delay`` from robots.txt: at least that long between requests to the host, capped at
  ECTRUST_CRAWL_DELAY_MAX (the cap is logged).
- A 5xx or a network error: the next request to the host waits base·2ⁿ seconds (capped); after
  ECTRUST_BREAKER_ERRORS consecutive failures the host is given up for this run and the
  remaining requests end as ``site_unavailable`` without touching the network.

Waiting happens in ``process_request`` before a request reaches the download slot, so a
waiting host holds no connection and no concurrency from other sites.
"""

from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet import task
from twisted.internet.defer import DeferredSemaphore

from crawler.failures import FetchRefused, classify_exception

logger = logging.getLogger(__name__)


def parse_retry_after(value: bytes | str | None, now: float | None = None) -> float | None:
    """Seconds to wait, from a Retry-After value (delta-seconds or an HTTP-date); None if
    absent or unreadable. Dates in the past mean 0."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


@dataclass
class HostState:
    not_before: float = 0.0
    next_start: float = 0.0
    crawl_delay: float = 0.0
    failures: int = 0
    closed: str | None = None  # rate_limited | site_unavailable
    notes: list[str] = field(default_factory=list)


def host_key(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


class HostPacer:
    """Per-host state shared by the middlewares of one crawler (see ``for_crawler``)."""

    def __init__(self, settings: Any) -> None:
        self.retry_after_max = settings.getfloat("ECTRUST_RETRY_AFTER_MAX", 120.0)
        self.crawl_delay_max = settings.getfloat("ECTRUST_CRAWL_DELAY_MAX", 10.0)
        self.breaker_errors = settings.getint("ECTRUST_BREAKER_ERRORS", 5)
        self.backoff_base = settings.getfloat("ECTRUST_BACKOFF_BASE", 0.5)
        self.backoff_max = settings.getfloat("ECTRUST_BACKOFF_MAX", 30.0)
        self.retry_times = settings.getint("RETRY_TIMES", 2)
        self.hosts: dict[str, HostState] = {}

    @classmethod
    def for_crawler(cls, crawler: Any) -> HostPacer:
        pacer = getattr(crawler, "_ectrust_pacer", None)
        if pacer is None:
            pacer = cls(crawler.settings)
            crawler._ectrust_pacer = pacer
        return pacer

    def state(self, host: str) -> HostState:
        return self.hosts.setdefault(host, HostState())

    def note(self, host: str, text: str) -> None:
        state = self.state(host)
        if text not in state.notes:
            state.notes.append(text)
            logger.warning("%s: %s", host, text)

    def set_crawl_delay(self, host: str, delay: float | None) -> None:
        if not delay or delay <= 0:
            return
        if delay > self.crawl_delay_max:
            self.note(
                host, f"Crawl-delay {delay:g}s capped at {self.crawl_delay_max:g}s"
            )
            delay = self.crawl_delay_max
        self.state(host).crawl_delay = float(delay)

    def notes_for(self, hosts: set[str]) -> dict[str, Any]:
        """What pacing decided for a site's hosts, for the crawl's stats."""
        out: dict[str, Any] = {}
        for host in sorted(hosts):
            state = self.hosts.get(host)
            if state is None:
                continue
            if state.closed:
                out.setdefault("closed", {})[host] = state.closed
            if state.notes:
                out.setdefault("notes", []).extend(f"{host}: {n}" for n in state.notes)
        return out


class PacingMiddleware:
    """Runs last on the way out and first on the way back (priority 950), so it sees every
    response and exception, including those other middlewares turn into new requests.

    It also holds at most CONCURRENT_REQUESTS_PER_DOMAIN requests per host past this point:
    requests wait here, not in Scrapy's download slot, so a wait, a Retry-After or an open
    breaker applies to every request still to go, not only to those not yet queued."""

    PERMIT = "_ectrust_pacing_permit"

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler
        self.pacer = HostPacer.for_crawler(crawler)
        self.per_host = max(1, crawler.settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN", 2))
        self.permits: dict[str, DeferredSemaphore] = {}

    @classmethod
    def from_crawler(cls, crawler: Any) -> PacingMiddleware:
        return cls(crawler)

    async def process_request(self, request: Request, spider: Any = None) -> None:
        from twisted.internet import reactor

        host = host_key(request.url)
        state = self.pacer.state(host)
        sem = self.permits.setdefault(host, DeferredSemaphore(self.per_host))
        await maybe_deferred_to_future(sem.acquire())
        request.meta[self.PERMIT] = host
        try:
            while True:
                if state.closed:
                    raise FetchRefused(
                        state.closed, f"{host}: {state.closed}, not asked again this run"
                    )
                now = time.monotonic()
                start = max(now, state.not_before, state.next_start)
                if start - now <= 0.001:
                    state.next_start = now + state.crawl_delay
                    return None
                await maybe_deferred_to_future(
                    task.deferLater(reactor, start - now, lambda: None)
                )
        except BaseException:
            self._release(request)
            raise

    def _release(self, request: Request) -> None:
        host = request.meta.pop(self.PERMIT, None)
        if host is not None:
            self.permits[host].release()

    def process_response(
        self, request: Request, response: Response, spider: Any = None
    ) -> Request | Response:
        self._release(request)
        host = host_key(request.url)
        state = self.pacer.state(host)
        if response.status in (429, 503):
            delay = parse_retry_after(response.headers.get(b"Retry-After"))
            if delay is not None:
                return self._retry_after(request, host, state, delay, response.status)
        if response.status >= 500 or response.status == 429:
            self._failed(host, state, f"HTTP {response.status}")
        else:
            state.failures = 0
        return response

    def process_exception(self, request: Request, exception: Exception, spider: Any = None) -> None:
        self._release(request)
        host = host_key(request.url)
        # A connection our own policy refused is not the host failing: no backoff, no breaker.
        if not isinstance(exception, IgnoreRequest) and \
                classify_exception(exception, host) != "blocked_address":
            self._failed(host, self.pacer.state(host), type(exception).__name__)
        return None

    def _retry_after(
        self, request: Request, host: str, state: HostState, delay: float, status: int
    ) -> Request:
        if delay > self.pacer.retry_after_max:
            state.closed = "rate_limited"
            self.pacer.note(
                host,
                f"HTTP {status} asked to wait {delay:.0f}s (more than "
                f"{self.pacer.retry_after_max:g}s): rate_limited",
            )
            raise FetchRefused("rate_limited", f"{host} asked to wait {delay:.0f}s")
        times = request.meta.get("retry_after_times", 0)
        state.not_before = max(state.not_before, time.monotonic() + delay)
        if times >= self.pacer.retry_times:
            self.pacer.note(host, f"HTTP {status} with Retry-After after {times} retries")
            raise FetchRefused("rate_limited", f"{host} still answers {status} after {times} waits")
        logger.info("%s: HTTP %d, Retry-After %.1fs honoured", request.url, status, delay)
        retry = request.replace(dont_filter=True)
        retry.meta.pop(PacingMiddleware.PERMIT, None)
        retry.meta["retry_after_times"] = times + 1
        return retry

    def _failed(self, host: str, state: HostState, why: str) -> None:
        state.failures += 1
        backoff = min(self.pacer.backoff_max, self.pacer.backoff_base * 2 ** (state.failures - 1))
        state.not_before = max(state.not_before, time.monotonic() + backoff)
        if state.failures >= self.pacer.breaker_errors and not state.closed:
            state.closed = "site_unavailable"
            self.pacer.note(
                host, f"{state.failures} consecutive failures ({why}): site_unavailable"
            )
