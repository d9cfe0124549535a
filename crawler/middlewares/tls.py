"""Certificates are verified; a TLS failure is a finding, not the end of the audit.

RELIABILITY.md "TLS policy (decided)": verify certificates. When verification fails the
failure is recorded for the host (shoppers' data in transit is at stake) and the audit goes on
over an unverified connection, every response from that host marked ``tls_unverified``
(header ``x-ectrust-tls-unverified`` in the stored snapshot, with the reason). A handshake
that fails even without verification (e.g. a TLS 1.0-only server) stays ``tls_error``.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy.core.downloader.contextfactory import _ScrapyClientContextFactory
from scrapy.http import Request, Response

from crawler.failures import classify_exception
from crawler.middlewares.pacing import host_key

logger = logging.getLogger(__name__)

# host -> why its certificate was not accepted (this crawl process only).
UNVERIFIED: dict[str, str] = {}
HEADER = b"X-Ectrust-Tls-Unverified"


class PolicyContextFactory(_ScrapyClientContextFactory):
    """Verifying TLS options, except for hosts already recorded as failing verification."""

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        host = hostname.decode("ascii").lower()
        if host in UNVERIFIED and self._verify_certificates:
            self._verify_certificates = False
            try:
                return super().creatorForNetloc(hostname, port)
            finally:
                self._verify_certificates = True
        return super().creatorForNetloc(hostname, port)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if "DNSMismatch" in text or "IPAddressMismatch" in text:
        return "tls_error: certificate is for another host name"
    for marker in ("certificate verify failed", "hostname", "expired", "self-signed",
                   "self signed", "unable to get local issuer", "wrong version", "unsupported"):
        if marker in text.lower():
            return f"tls_error: {marker}"
    return f"tls_error: {text[:160]}"


class TlsPolicyMiddleware:
    def __init__(self, crawler: Any) -> None:
        self.continue_unverified = crawler.settings.getbool("ECTRUST_TLS_CONTINUE", True)

    @classmethod
    def from_crawler(cls, crawler: Any) -> TlsPolicyMiddleware:
        return cls(crawler)

    def process_exception(self, request: Request, exception: Exception, spider: Any = None) -> Any:
        host = host_key(request.url)
        if (
            not self.continue_unverified
            or request.meta.get("tls_unverified")
            or not request.url.startswith("https:")
            or classify_exception(exception, host) != "tls_error"
        ):
            return None
        UNVERIFIED.setdefault(host, _reason(exception))
        logger.warning("%s: certificate not accepted (%s); going on unverified",
                       host, UNVERIFIED[host])
        retry = request.replace(dont_filter=True)
        retry.meta["tls_unverified"] = True
        return retry

    def process_response(self, request: Request, response: Response, spider: Any = None) -> Any:
        host = host_key(request.url)
        if host in UNVERIFIED and request.url.startswith("https:"):
            headers = response.headers.copy()
            headers[HEADER] = UNVERIFIED[host]
            return response.replace(headers=headers)
        return response
