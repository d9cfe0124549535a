"""Redirects that name their failure instead of vanishing.

Scrapy's redirect middleware drops a redirect to a non-HTTP scheme silently (the 3xx page is
kept as if it were the answer) and reports a loop only as a generic IgnoreRequest after
REDIRECT_MAX_TIMES hops. An evaluator needs to know why a page is missing, so:

- a hop back to a URL already in the chain stops at once as ``redirect_loop``; a chain longer
  than REDIRECT_MAX_TIMES stops as ``redirect_loop`` too (RELIABILITY.md T06);
- a Location with a scheme other than http(s) (file:, gopher:, ftp: …) stops as
  ``redirect_to_disallowed`` (T16, T18). Hops to forbidden addresses are refused by the
  resolver when connecting, and named the same way (crawler.failures).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

from scrapy.downloadermiddlewares.redirect import MetaRefreshMiddleware, RedirectMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response
from w3lib.url import safe_url_string

from crawler.failures import FetchRefused

REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))


class _LoopGuard:
    def _redirect(self, redirected: Request, request: Request, reason: Any) -> Request:
        chain = [*request.meta.get("redirect_urls", []), request.url]
        if redirected.url in chain:
            raise FetchRefused(
                "redirect_loop", f"redirect loop: {redirected.url} is already in the chain"
            )
        try:
            return super()._redirect(redirected, request, reason)  # type: ignore[misc]
        except IgnoreRequest as exc:
            raise FetchRefused(
                "redirect_loop", f"more than {len(chain) - 1} redirects, stopped"
            ) from exc


class SafeRedirectMiddleware(_LoopGuard, RedirectMiddleware):
    def process_response(  # type: ignore[override]
        self, request: Request, response: Response, spider: Any = None
    ) -> Request | Response:
        result = super().process_response(request, response)
        if (
            result is response
            and response.status in REDIRECT_STATUSES
            and b"Location" in response.headers
            and not request.meta.get("dont_redirect")
        ):
            location = safe_url_string(response.headers[b"Location"])
            target = urljoin(request.url, location)
            scheme = urlsplit(target).scheme.lower()
            if scheme not in ("http", "https"):
                raise FetchRefused(
                    "redirect_to_disallowed", f"redirect to a {scheme}: URL refused: {target[:200]}"
                )
        return result


class SafeMetaRefreshMiddleware(_LoopGuard, MetaRefreshMiddleware):
    pass
