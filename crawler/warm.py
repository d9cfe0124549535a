"""What a warm fork server imports once so that the crawl processes it forks need not.

A crawl process given one small site spends almost all of its CPU starting: importing Scrapy,
Twisted, SQLAlchemy, Playwright and the classes its settings name (about 0.9 s of the 1.0 s
it takes to start and stop with no site at all). A process that starts many crawls (a
distributed worker: one crawl per job) forks them from a server that has imported all of that
already (ectrust/warmstart.py); importing this module is that server's preload.

Importing must not install a Twisted reactor (each forked crawl installs its own asyncio
reactor): nothing here imports ``twisted.internet.reactor``, and the test suite checks it.
Anything that fails to import is left to the crawl process, which imports what it needs
itself and reports its own errors in its log.
"""

from __future__ import annotations

import contextlib
from typing import Any

#: Settings whose values are import paths of components Scrapy loads when a crawl starts.
_COMPONENT_DICTS = (
    "DOWNLOADER_MIDDLEWARES_BASE",
    "DOWNLOADER_MIDDLEWARES",
    "SPIDER_MIDDLEWARES_BASE",
    "SPIDER_MIDDLEWARES",
    "EXTENSIONS_BASE",
    "EXTENSIONS",
    "DOWNLOAD_HANDLERS_BASE",
    "DOWNLOAD_HANDLERS",
    "ITEM_PIPELINES",
)
_COMPONENTS = (
    "SCHEDULER",
    "SCHEDULER_PRIORITY_QUEUE",
    "SCHEDULER_MEMORY_QUEUE",
    "SCHEDULER_DISK_QUEUE",
    "DUPEFILTER_CLASS",
    "STATS_CLASS",
    "DOWNLOADER",
    "REQUEST_FINGERPRINTER_CLASS",
    "LOG_FORMATTER",
    "TWISTED_DNS_RESOLVER",
    "DOWNLOADER_HTTPCLIENTFACTORY",
)


def component_paths(settings: Any) -> list[str]:
    """The import paths of the components a crawl with ``settings`` loads."""
    paths: list[str] = []
    for name in _COMPONENT_DICTS:
        for key, value in settings.getdict(name).items():
            # keys: classes (middlewares, extensions); values: handler classes or orders
            paths.extend(p for p in (key, value) if isinstance(p, str) and "." in p)
    for name in _COMPONENTS:
        value = settings.get(name)
        if isinstance(value, str) and "." in value:
            paths.append(value)
    return paths


def preload() -> None:
    from scrapy.settings import Settings
    from scrapy.utils.misc import load_object

    import crawler.render  # the browser's settings (BROWSER_COMPONENTS)
    import crawler.run  # Scrapy, the spider, the pipeline, SQLAlchemy
    from crawler import settings as defaults

    settings = Settings()
    settings.setmodule(defaults, priority="project")
    # The browser's download handler and memory extension are named only in the settings of
    # a crawl that may render (crawler/render.py).
    paths = [*component_paths(settings), *crawler.render.BROWSER_COMPONENTS]
    for path in paths:
        try:
            load_object(path)
        except Exception:  # the crawl process loads it again, and says why in its log
            continue


# A fork server whose preload raised would fail every crawl it was asked for; one that
# preloaded less only starts them slower.
with contextlib.suppress(Exception):
    preload()
