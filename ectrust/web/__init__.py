"""The web application behind ``ectrust serve``.

Flask (not FastAPI) because the whole stack is synchronous (SQLAlchemy sessions, the store's
SQLite locking) and the evaluators' interface still to come (issue #9) is a server-rendered
form application: Flask's sessions, Flask-Login and Flask-WTF's CSRF protection are the
well-trodden path for that, and Jinja2 is Flask's own template engine. Served by waitress
(pure-Python, production-grade WSGI server; no C build, runs anywhere Python does).

The public part needs no login: the verification page ``/cert/<id>``, the live badge
``/badge/<id>.svg`` and the list of certified sites ``/list`` (public.py). Everything else is
the evaluators' application (issue #9) and refuses anonymous requests: auth.py turns away
every endpoint not on its short public list, so a new route is private unless listed there.
CSRF protection is Flask-WTF's ``CSRFProtect`` (every unsafe request, every blueprint) plus a
``Sec-Fetch-Site`` check; sessions are Flask-Login's over Flask's signed cookie. Every page is
rendered from ``templates/*.html.j2`` with autoescaping forced on, under a strict
Content-Security-Policy with no script at all (security.py): a running audit's page refreshes
itself with ``<meta http-equiv=refresh>``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from audits.db import Store
from ectrust.config import Settings


class EctrustFlask(Flask):
    """Flask escapes only *.html/*.xml/*.svg templates by default; ours are *.html.j2 and
    show crawled, hostile text, so escaping is forced on for every template."""

    def select_jinja_autoescape(self, filename: str | None) -> bool:
        return True


def _today() -> date:
    return datetime.now(UTC).date()


def secret_key(home: Path) -> str:
    """ECTRUST_SECRET_KEY, else a random key kept in ``$ECTRUST_HOME/secret_key`` (0600)
    so sessions survive a restart and every server process of one deployment agrees."""
    from_env = os.environ.get("ECTRUST_SECRET_KEY")
    if from_env:
        return from_env
    path = home / "secret_key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def create_app(
    settings: Settings | None = None,
    store: Store | None = None,
    today: Callable[[], date] = _today,
) -> Flask:
    from ectrust.web import (
        admin,
        auth,
        certs,
        dashboard,
        findings,
        public,
        reports,
        runs,
        security,
        sites,
    )

    settings = settings or Settings.from_env()
    app = EctrustFlask(__name__, static_folder="static", template_folder="templates")
    app.jinja_env.autoescape = True
    app.jinja_env.finalize = security.show_bidi_controls
    app.config.update(
        SECRET_KEY=secret_key(settings.home),
        SESSION_COOKIE_NAME="ectrust_session",
        SESSION_COOKIE_SECURE=True,  # behind TLS in production; browsers allow it on loopback
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=10),
        REMEMBER_COOKIE_SECURE=True,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=10 * 3600,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.extensions["ectrust"] = {
        "settings": settings,
        "store": store or Store(settings.db_url),
        "today": today,
    }
    hops = int(os.environ.get("ECTRUST_PROXY_HOPS") or 0)
    if hops:
        # Behind a TLS reverse proxy: the client address (login throttling) and scheme come
        # from its X-Forwarded-* headers; only set this when such a proxy is really in front.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    security.install(app)
    auth.install(app)  # before CSRF: an anonymous request is refused as such
    security.install_csrf(app)
    for module in (public, auth, dashboard, sites, runs, findings, certs, reports, admin):
        app.register_blueprint(module.bp)
    return app


def ectrust_state(app: Flask) -> dict[str, Any]:
    return app.extensions["ectrust"]


def serve(host: str, port: int, settings: Settings | None = None) -> None:
    """Run the app in the foreground with waitress (blocks until interrupted)."""
    from waitress import serve as waitress_serve

    from ectrust.jobs import fail_abandoned_jobs

    app = create_app(settings)
    fail_abandoned_jobs(ectrust_state(app)["store"])
    waitress_serve(app, host=host, port=port, threads=8, ident="ectrust")
