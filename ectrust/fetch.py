"""Fetching one document through the crawler, for analysts' commands.

It goes through the same child-process crawler as audits (robots.txt, address policy,
``--connect-to``, size and time limits), into a throw-away store.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from audits.db import Store
from audits.evidence import BlobStore
from audits.judge import site_view
from audits.models import Crawl, Site
from audits.pages import Page
from audits.policy import PolicyInputError
from ectrust.config import Settings
from ectrust.pipeline import CrawlOptions, CrawlRun, start_crawls


def fetch_page(url: str, connect_to: list[str]) -> Page:
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        raise PolicyInputError(f"{url}: no host name")
    with tempfile.TemporaryDirectory(prefix="ectrust-fetch-") as tmp:
        settings = Settings(
            db_url=f"sqlite:///{Path(tmp) / 'fetch.db'}",
            home=Path(tmp) / "home",
            connect_to=tuple(connect_to),
        )
        store = Store(settings.db_url)
        with store.session() as session:
            site = Site(domain=host, name="", start_url=url)
            session.add(site)
            session.flush()
        options = CrawlOptions(max_pages=1, connect_to=list(connect_to), time_limit_s=120)
        crawls = start_crawls(store, [site], options)
        for _ in CrawlRun(settings, crawls, options, hints=[]).events():
            pass
        with store.session() as session:
            crawl = session.get(Crawl, crawls[0]["crawl_id"])
            pages = site_view(session, crawl, BlobStore(settings.home), ()).pages
        store.dispose()
    if not pages or not pages[0].ok:
        why = (pages[0].error or f"HTTP {pages[0].status}") if pages else "nothing fetched"
        raise PolicyInputError(f"could not fetch {url}: {why}")
    return pages[0]
