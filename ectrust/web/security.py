"""Response headers every page carries (RELIABILITY.md decision 10, T37).

Pages load nothing but our own stylesheet and images: no scripts at all, no inline styles.
The badge SVG is an image meant to be embedded by other sites, so it may be loaded
cross-origin, is never cached (its status is live) and varies with the embedding page.
"""

from __future__ import annotations

import re

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
            # A view may set a stricter policy of its own (stored evidence: sandbox).
            h.setdefault("Content-Security-Policy", PAGE_CSP)
            h["X-Frame-Options"] = "DENY"
            h.setdefault("Cache-Control", "no-cache")
        return response


# Fetch metadata: a browser says where an unsafe request came from. Anything but our own
# pages (same-origin) or the user's own action (none: typed URL, bookmark) is refused before
# the CSRF token is even looked at.
ALLOWED_FETCH_SITES = {"same-origin", "none"}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def install_csrf(app: Flask) -> None:
    """Flask-WTF's CSRFProtect guards every unsafe request of every blueprint (a token bound
    to the session, in every form); CSRFError and cross-site requests answer 403."""
    from flask import render_template, request
    from flask_wtf.csrf import CSRFError, CSRFProtect

    @app.before_request
    def fetch_metadata() -> tuple[str, int] | None:
        site = request.headers.get("Sec-Fetch-Site")
        if request.method in UNSAFE and site is not None and site not in ALLOWED_FETCH_SITES:
            return render_template("error.html.j2", code=403,
                                   message="cross-site request refused"), 403
        return None

    CSRFProtect(app)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> tuple[str, int]:
        return render_template("error.html.j2", code=403, message=exc.description), 403


# Bidirectional-text controls in crawled text can make "gnp.exe" read "exe.png" or reorder
# a URL (T37: RTL override shown inert). Every value a template prints has them replaced
# with a visible marker; the stored text is unchanged.
BIDI_CONTROLS = dict.fromkeys(
    [0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)
_BIDI_RE = re.compile("[" + "".join(map(chr, BIDI_CONTROLS)) + "]")


def show_bidi_controls(value: object) -> object:
    """Jinja ``finalize``: strings (and Markup, kept safe) get visible ``[U+202E]`` markers."""
    from markupsafe import Markup

    if not isinstance(value, str) or not _BIDI_RE.search(value):
        return value
    replaced = _BIDI_RE.sub(lambda m: f"[U+{ord(m.group()):04X}]", str(value))
    return Markup(replaced) if isinstance(value, Markup) else replaced
