"""Child-process entry point for one crawl run: ``python -m crawler.run -`` (job on stdin)
or ``python -m crawler.run JOB.json``.

A Twisted reactor cannot be restarted, so every run gets a fresh process; the parent (the
CLI, the scheduler, the web app) reads one JSON line per finished site on our stdout and
kills us if we exceed the wall-clock limit it chose. Logs go to stderr.

JOB.json: {"db": url, "home": dir, "sites": [{"crawl_id", "domain", "start_url"}],
           "max_pages": int, "hints": [...], "connect_to": [...], "settings": {...},
           "badge_hosts": [...],
           "render": "auto"|"never"|"always"}

With rendering on, the browser's egress proxy (crawler/egress.py) runs in this process for the
length of the run, with the same ``--connect-to`` mappings as the Scrapy resolver.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from scrapy import signals
from scrapy.crawler import Crawler, CrawlerProcess
from scrapy.settings import Settings

from crawler import settings as default_settings
from crawler.egress import EgressProxy
from crawler.pipelines import SnapshotWriter
from crawler.spiders.site_audit import SiteAuditSpider


def build_settings(job: dict[str, Any], proxy: EgressProxy | None = None) -> Settings:
    settings = Settings()
    settings.setmodule(default_settings, priority="project")
    settings.set("ECTRUST_CONNECT_TO", list(job.get("connect_to", [])), priority="cmdline")
    settings.set("ITEM_PIPELINES", {"crawler.pipelines.StorePipeline": 100}, priority="cmdline")
    if proxy is not None:
        from crawler.render import playwright_settings

        extra = playwright_settings(
            list(job.get("connect_to", [])), proxy.url, settings.getint("DOWNLOAD_MAXSIZE")
        )
        extra["ECTRUST_EGRESS_TOKEN"] = proxy.token
        for key, value in extra.items():
            settings.set(key, value, priority="cmdline")
    for key, value in (job.get("settings") or {}).items():
        settings.set(key, value, priority="cmdline")
    return settings


def log_level_at_the_loggers(crawler: Crawler) -> None:
    """Once the crawl starts, make LOG_LEVEL the level of the root and ``scrapy`` loggers.

    Scrapy filters only in its root handler: its logging configuration sets the ``scrapy``
    logger to DEBUG, and starting a crawl resets the root logger to NOTSET. So every debug
    message (two per page: "Crawled", "Scraped from") is built into a record, with its caller
    looked up, and then dropped: about 2% of a crawl process's CPU. Set at the loggers, a
    level below LOG_LEVEL costs one comparison. ``engine_started`` comes after Scrapy's
    own set-up, so nothing resets the levels afterwards."""
    level = crawler.settings.get("LOG_LEVEL") or "DEBUG"

    def apply() -> None:
        for name in (None, "scrapy"):
            logging.getLogger(name).setLevel(level)

    crawler.signals.connect(apply, signal=signals.engine_started, weak=False)


def run(job: dict[str, Any], events: TextIO | None = None) -> int:
    """Crawl the job's sites; one JSON line per finished site on ``events`` (default: the real
    stdout, which nothing else may then write to)."""
    if events is None:
        events = sys.stdout
        sys.stdout = sys.stderr
    writer = SnapshotWriter(job["db"], Path(job["home"]), events=events)
    writer.start()
    render = job.get("render", "never")
    proxy = None
    if render != "never":
        probe = Settings()
        probe.setmodule(default_settings)
        probe.setdict(dict(job.get("settings") or {}), priority="cmdline")
        proxy = EgressProxy(
            list(job.get("connect_to", [])),
            max_bytes=probe.getint("DOWNLOAD_MAXSIZE"),
            allow_networks=probe.getlist("ECTRUST_ALLOW_NETWORKS"),
            dns_stub=probe.getdict("ECTRUST_DNS_STUB"),
        ).start()
    try:
        settings = build_settings(job, proxy)
        process = CrawlerProcess(settings)  # installs Scrapy's root log handler
        # A run may be split between processes (ectrust/pipeline.py): each log says which
        # sites it covers.
        logging.getLogger("crawler.run").info(
            "sites of this crawl process (%d): %s",
            len(job["sites"]),
            ", ".join(site["domain"] for site in job["sites"]),
        )
        crawler = process.create_crawler(SiteAuditSpider)
        log_level_at_the_loggers(crawler)
        process.crawl(
            crawler,
            sites=job["sites"],
            max_pages=job.get("max_pages", 30),
            hints=job.get("hints", []),
            samples=job.get("samples", 4),
            writer=writer,
            render=render,
            badge_hosts=job.get("badge_hosts", []),
        )
        process.start()
    finally:
        if proxy is not None:
            proxy.stop()
            if proxy.stats.refused:
                print(
                    f"browser egress: {len(proxy.stats.refused)} connection(s) refused",
                    file=sys.stderr,
                )
    reason = crawler.stats.get_value("finish_reason") if crawler.stats else None
    spider = crawler.spider
    if isinstance(spider, SiteAuditSpider):
        status = "timed_out" if reason == "closespider_timeout" else "interrupted"
        for item in spider.unfinished_items(status):
            writer.submit(item)
    writer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m crawler.run -|JOB.json", file=sys.stderr)
        return 2
    # On stdin the job (which names the database, perhaps with a password) never touches
    # the disk, so a killed run leaves nothing behind.
    text = sys.stdin.read() if args[0] == "-" else Path(args[0]).read_text(encoding="utf-8")
    job = json.loads(text)
    return run(job)


if __name__ == "__main__":
    sys.exit(main())
