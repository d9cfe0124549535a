"""Shared setup of the web application tests: a private store with two accounts, a local
site farm, and the app served by waitress on 127.0.0.1 exactly as ``ectrust serve`` does."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from audits.accounts import add_user
from audits.db import Store
from ectrust.config import Settings
from ectrust.sitefarm import SiteFarm

DEMO_SITES = Path(__file__).resolve().parent.parent / "ectrust" / "demo" / "sites"
ADMIN = ("alice", "alice-password-1")
EVALUATOR = ("eve", "eve-password-12")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

# Crawled markup of a hostile site (RELIABILITY.md T37/T38).
HOSTILE_TITLE = "</title><script>alert(1)</script>"
HOSTILE_EXCERPT = '"><img src=x onerror=alert(1)>'
TEMPLATE_PROBE = "{{7*7}}"
RTL = "\u202egnp.exe"
HOSTILE_INDEX = f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<title>{HOSTILE_TITLE}</title></head><body>
<h1>{TEMPLATE_PROBE} {RTL}</h1>
<a href="/about.html">{HOSTILE_EXCERPT}</a>
<a href="javascript:alert(1)">javascript link</a>
<script>alert("index")</script>
</body></html>"""
# The refresh comes after 4 KB: Scrapy only looks for <meta refresh> in a page's first 4096
# characters (and would store the page it leads to), a browser obeys it anywhere.
HOSTILE_ABOUT = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>about</title>'
    f"<!-- {'padding ' * 600} -->"
    '<meta http-equiv="refresh" content="0;url=http://127.0.0.1:9/">'
    '</head><body><script>alert("about")</script><p>about us</p></body></html>'
)


@dataclass
class WebApp:
    base: str
    store: Store
    settings: Settings
    farm: SiteFarm


def make_settings(tmp: Path, db_url: str, connect_to: tuple[str, ...] = ()) -> Settings:
    """``db_url``: the test's private database (the ``db_url`` fixture: SQLite or a
    PostgreSQL schema, as ECTRUST_TEST_DB says)."""
    return Settings(
        db_url=db_url,
        home=tmp / "home",
        badge_hosts=("verify.trust.example",),
        connect_to=connect_to,
    )


def add_accounts(store: Store) -> None:
    with store.session() as session:
        add_user(session, *ADMIN, "administrator")
        add_user(session, *EVALUATOR, "evaluator")


def farm_root(tmp: Path) -> Path:
    root = tmp / "farm"
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(DEMO_SITES / "books.example", root / "books.example")
    hostile = root / "hostile.example"
    hostile.mkdir()
    (hostile / "index.html").write_text(HOSTILE_INDEX, encoding="utf-8")
    (hostile / "about.html").write_text(HOSTILE_ABOUT, encoding="utf-8")
    return root


@contextmanager
def serve_app(tmp: Path, db_url: str) -> Iterator[WebApp]:
    from waitress.server import create_server

    from ectrust.web import create_app

    with SiteFarm(farm_root(tmp)) as farm:
        settings = make_settings(tmp, db_url, (f"::127.0.0.1:{farm.port}",))
        store = Store(settings.db_url)
        add_accounts(store)
        app = create_app(settings, store)
        server = create_server(app, host="127.0.0.1", port=0, threads=6)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            yield WebApp(f"http://127.0.0.1:{server.effective_port}", store, settings, farm)
        finally:
            server.close()
            store.dispose()
