"""Names for the ways a fetch can fail, as stored in ``snapshots.error``."""

from __future__ import annotations

from scrapy import exceptions as scrapy_exc
from twisted.internet import error as tx_error

from crawler import resolver


def classify_exception(exc: BaseException, host: str) -> str:
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
    text = f"{type(exc).__name__} {exc}".lower()
    if "ssl" in text or "tls" in text or "certificate" in text:
        return "tls_error"
    if "connection" in text:
        return "connection_failed"
    return f"error:{type(exc).__name__}"[:64]
