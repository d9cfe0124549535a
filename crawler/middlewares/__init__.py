"""Downloader middlewares that keep hostile servers bounded (RELIABILITY.md T06, T10, T12–T14,
T16): redirects, per-host pacing (Retry-After, Crawl-delay, backoff, circuit breaker), TLS."""
