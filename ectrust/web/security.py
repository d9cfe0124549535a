"""Response headers every page carries (RELIABILITY.md decision 10, T37).

Pages load nothing but our own stylesheet and images: no scripts at all, no inline styles.
The badge SVG is an image meant to be embedded by other sites, so it may be loaded
cross-origin, is never cached (its status is live) and varies with the embedding page.
"""

from __future__ import annotations

from flask import Flask, Response

PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# SVG documents opened directly: no script, no external loads; inline presentation only.
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors *"


def install(app: Flask) -> None:
    @app.after_request
    def headers(response: Response) -> Response:
        h = response.headers
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "no-referrer"
        if response.mimetype == "image/svg+xml":
            h["Content-Security-Policy"] = SVG_CSP
            h["Cross-Origin-Resource-Policy"] = "cross-origin"
            h["Cache-Control"] = "no-store"
            h["Vary"] = "Referer, Origin"
        else:
            h["Content-Security-Policy"] = PAGE_CSP
            h["X-Frame-Options"] = "DENY"
            h.setdefault("Cache-Control", "no-cache")
        return response
