"""The web application behind ``ectrust serve``.

Flask (not FastAPI) because the whole stack is synchronous (SQLAlchemy sessions, the store's
SQLite locking) and the evaluators' interface still to come (issue #9) is a server-rendered
form application: Flask's sessions, Flask-Login and Flask-WTF's CSRF protection are the
well-trodden path for that, and Jinja2 is Flask's own template engine. Served by waitress
(pure-Python, production-grade WSGI server; no C build, runs anywhere Python does).

This package holds the public part, with no login: the verification page ``/cert/<id>``,
the live badge ``/badge/<id>.svg`` and the list of certified sites ``/list``
(ectrust/web/public.py). Every page is rendered from ``templates/*.html.j2`` with
autoescaping forced on, under a strict Content-Security-Policy (security.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
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


def create_app(
    settings: Settings | None = None,
    store: Store | None = None,
    today: Callable[[], date] = _today,
) -> Flask:
    from ectrust.web import public, security

    settings = settings or Settings.from_env()
    app = EctrustFlask(__name__, static_folder="static", template_folder="templates")
    app.jinja_env.autoescape = True
    app.extensions["ectrust"] = {
        "settings": settings,
        "store": store or Store(settings.db_url),
        "today": today,
    }
    security.install(app)
    app.register_blueprint(public.bp)
    return app


def ectrust_state(app: Flask) -> dict[str, Any]:
    return app.extensions["ectrust"]


def serve(host: str, port: int, settings: Settings | None = None) -> None:
    """Run the app in the foreground with waitress (blocks until interrupted)."""
    from waitress import serve as waitress_serve

    waitress_serve(create_app(settings), host=host, port=port, threads=8, ident="ectrust")
