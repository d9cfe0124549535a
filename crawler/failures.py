"""Names for the ways a fetch can fail, as stored in ``snapshots.error``."""

from __future__ import annotations

from scrapy import exceptions as scrapy_exc
from twisted.internet import error as tx_error

from crawler import resolver


class FetchRefused(scrapy_exc.IgnoreRequest):
    """A fetch our own policy stopped; ``reason`` is the name stored in ``snapshots.error``
    (redirect_loop, redirect_to_disallowed, rate_limited, site_unavailable …)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


# Failures that mean "the address or scheme is not allowed"; reached through a redirect they
# are reported as the redirect being refused (RELIABILITY.md T16).
DISALLOWED = frozenset(("blocked_address", "scheme_not_allowed"))


def classify_request_failure(exc: BaseException, host: str, meta: dict) -> str:
    """The name of a failed fetch, knowing whether it was reached through redirects."""
    name = classify_exception(exc, host)
    if name in DISALLOWED and meta.get("redirect_urls"):
        return "redirect_to_disallowed"
    return name


def classify_exception(exc: BaseException, host: str) -> str:
    if isinstance(exc, FetchRefused):
        return exc.reason
    if isinstance(exc, scrapy_exc.CannotResolveHostError | tx_error.DNSLookupError):
        return "blocked_address" if host in resolver.BLOCKED else "dns_failure"
    if isinstance(
        exc, scrapy_exc.DownloadTimeoutError | tx_error.TimeoutError | tx_error.TCPTimedOutError
    ):
        return "timeout"
    if isinstance(exc, scrapy_exc.DownloadConnectionRefusedError | tx_error.ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, scrapy_exc.ResponseDataLossError):
        return "incomplete"
    if isinstance(exc, scrapy_exc.DownloadCancelledError):
        return "too_large"
    if isinstance(exc, scrapy_exc.UnsupportedURLSchemeError):
        return "scheme_not_allowed"
    if isinstance(exc, scrapy_exc.IgnoreRequest) and "DOWNLOAD_MAXSIZE" in str(exc):
        return "too_large"  # a decompression bomb stopped at the limit (T04)
    text = f"{type(exc).__name__} {exc}".lower()
    # service_identity's VerificationError (DNSMismatch …) is a host-name mismatch.
    if any(m in text for m in ("ssl", "tls", "certificate", "verificationerror", "mismatch")):
        return "tls_error"
    if "connection" in text:
        return "connection_failed"
    return f"error:{type(exc).__name__}"[:64]
