"""A run over many sites is split between crawl processes (ectrust/pipeline.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from audits.db import Store
from audits.models import Site
from ectrust import pipeline
from ectrust.config import ConfigError, Settings
from tests.conftest import judge_slowly_here, write_site


def test_crawler_count(monkeypatch):
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 2)
    per = pipeline.MIN_SITES_PER_CRAWLER
    assert pipeline.crawler_count(0) == 1
    assert pipeline.crawler_count(1, configured=4) == 1
    assert pipeline.crawler_count(per * 2 - 1) == 1  # a second process would not pay
    assert pipeline.crawler_count(per * 2) == 2
    assert pipeline.crawler_count(per * 50) == 2  # never more than the cores
    assert pipeline.crawler_count(3, configured=2) == 2  # configured wins …
    assert pipeline.crawler_count(3, configured=8) == 3  # … up to one per site
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: None)
    assert pipeline.crawler_count(per * 50) == 1


def test_crawlers_setting():
    assert Settings.from_env({}).crawlers == 0
    assert Settings.from_env({"ECTRUST_CRAWLERS": "auto"}).crawlers == 0
    assert Settings.from_env({"ECTRUST_CRAWLERS": " 3 "}).crawlers == 3
    for bad in ("two", "-1", "1.5"):
        with pytest.raises(ConfigError, match="ECTRUST_CRAWLERS"):
            Settings.from_env({"ECTRUST_CRAWLERS": bad})


def _crawl(i: int, url: str) -> dict[str, object]:
    return {"crawl_id": i, "domain": url.split("/")[2].split(":")[0], "start_url": url}


def test_partition_keeps_a_host_in_one_process_and_balances():
    crawls = [
        _crawl(1, "http://a.test/"),
        _crawl(2, "http://b.test/"),
        _crawl(3, "http://www.a.test/"),  # the same host as a.test, for pacing
        _crawl(4, "http://c.test/"),
        _crawl(5, "http://d.test:8080/"),
    ]
    parts = pipeline.partition(crawls, 2)
    ids = [[c["crawl_id"] for c in part] for part in parts]
    assert sorted(i for part in ids for i in part) == [1, 2, 3, 4, 5]
    together = next(part for part in ids if 1 in part)
    assert 3 in together
    assert sorted(map(len, ids)) == [2, 3]
    assert pipeline.partition(crawls[:1], 2) == [crawls[:1]]  # no empty process


def test_concurrency_is_shared_not_multiplied():
    scaled = pipeline._scaled_concurrency
    assert scaled({"CONCURRENT_REQUESTS": 64}, 2)["CONCURRENT_REQUESTS"] == 32
    assert scaled({"CONCURRENT_REQUESTS": "5"}, 2)["CONCURRENT_REQUESTS"] == 3
    assert scaled({}, 2)["CONCURRENT_REQUESTS"] == 32  # crawler/settings.py's 64
    assert scaled({"CONCURRENT_REQUESTS": 1}, 4)["CONCURRENT_REQUESTS"] == 1
    assert scaled({"X": 1}, 1) == {"X": 1}


def _shops(cli, root, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    domains = [f"shop{i}.example" for i in range(count)]
    for domain in domains:
        write_site(
            root,
            domain,
            {
                "index.html": '<html><body><a href="/privacy.html">隐私政策</a>'
                "<footer>京ICP备12345678号</footer></body></html>",
                "privacy.html": "<html><body><h1>隐私政策</h1>"
                "<p>我们收集您的姓名。</p></body></html>",
            },
        )
        cli("sites", "add", domain, "--url", f"http://{domain}/")
    return domains


def test_a_split_run_audits_every_site_once(env, cli, site_farm, monkeypatch):
    farm, root = site_farm
    domains = _shops(cli, root, 5)
    monkeypatch.setenv("ECTRUST_CRAWLERS", "2")
    result = cli("audit", "--all", "--connect-to", f"::127.0.0.1:{farm.port}")
    logs = result.stderr.split("crawl logs: ", 1)[1].strip().split(", ")
    assert len(logs) == 2 and all(path.endswith(".log") for path in logs)
    docs = cli.json("audit", "--all", "--json", "--connect-to", f"::127.0.0.1:{farm.port}")
    audits = docs["audits"]
    assert sorted(a["domain"] for a in audits) == domains  # each once, in the run's order
    assert [a["domain"] for a in audits] == domains
    assert all(a["crawl_status"] == "finished" and a["pages_fetched"] == 2 for a in audits)
    listed = [
        line.split("process (", 1)[1].split("): ", 1)[1].split(", ")
        for path in logs
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if "sites of this crawl process" in line
    ]
    assert len(listed) == 2  # every site crawled by exactly one of the two processes
    assert sorted(listed[0] + listed[1]) == domains


def test_the_judging_worker_starts_when_a_crawl_process_of_a_split_run_exits(
    env, cli, site_farm, monkeypatch
):
    """With judging here slowed down, crawls are waiting when the first crawl process exits;
    the judging worker then takes some, and every site still gets exactly one audit."""
    from ectrust import judgepool

    farm, root = site_farm
    domains = _shops(cli, root, 6)
    monkeypatch.setenv("ECTRUST_CRAWLERS", "2")
    judge_slowly_here(monkeypatch, 1.5)
    started: list[bool] = []
    real_pool = judgepool.JudgePool

    class WatchedPool(real_pool):  # type: ignore[misc,valid-type]
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            started.append(True)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(judgepool, "JudgePool", WatchedPool)
    audits = cli.json("audit", "--all", "--json", "--connect-to", f"::127.0.0.1:{farm.port}")[
        "audits"
    ]
    assert started == [True]
    assert [a["domain"] for a in audits] == domains
    assert len({a["audit_id"] for a in audits}) == 6
    assert all(a["crawl_status"] == "finished" and a["findings"] for a in audits)


def test_crawl_processes_run_nicer_than_the_judging(env, cli, site_farm):
    """Judging (this process) keeps priority over the crawl processes feeding it, so it keeps
    pace with the crawl instead of being left with a backlog after the last fetch."""
    farm, root = site_farm
    (domain,) = _shops(cli, root, 1)
    settings = Settings.from_env()
    store = Store(settings.db_url)
    with store.session() as session:
        site = session.scalars(select(Site).where(Site.domain == domain)).one()
        session.expunge(site)
    options = pipeline.CrawlOptions(max_pages=2, connect_to=[f"::127.0.0.1:{farm.port}"])
    crawls = pipeline.start_crawls(store, [site], options)
    run = pipeline.CrawlRun(settings, crawls, options, hints=[])
    run.start()
    assert run.proc is not None
    expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + pipeline.CRAWL_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, run.proc.pid) == expected
    events = list(run.events())
    assert [e["event"] for e in events] == ["crawl_done"]
    assert events[0]["status"] == "finished" and events[0]["pages"] == 2


# A crawl of nothing by a spider that requests nothing, with ectrust's crawl settings:
# Scrapy's whole set-up, start and close, in a second or two.
EMPTY_CRAWL = """
import json, logging, sys
import scrapy
from scrapy import signals
from scrapy.crawler import CrawlerProcess
from crawler.run import build_settings, log_level_at_the_loggers

class Probe(scrapy.Spider):
    name = "probe"

    async def start(self):
        return
        yield

process = CrawlerProcess(build_settings({"settings": {"LOG_LEVEL": sys.argv[1]}}))
crawler = process.create_crawler(Probe)
"""


def probe_in_own_process(script: str, level: str = "INFO") -> Any:
    """Run ``EMPTY_CRAWL`` followed by ``script`` in a process of its own (one reactor
    each) and return the JSON the script prints last."""
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", EMPTY_CRAWL + script, level],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


LOG_LEVEL_PROBE = """
NAMES = ("scrapy.core.scraper", "scrapy.core.engine", "crawler.spiders.site_audit")
seen = {}

def closed():  # the end of the crawl: Scrapy's set-up is long over
    seen.update({n: logging.getLogger(n).isEnabledFor(logging.DEBUG) for n in NAMES})

crawler.signals.connect(closed, signal=signals.spider_closed, weak=False)
log_level_at_the_loggers(crawler)
process.crawl(crawler)
process.start()
print(json.dumps(seen))
"""


@pytest.mark.parametrize("level, debug_built", [("INFO", False), ("DEBUG", True)])
def test_crawl_processes_drop_debug_messages_before_building_them(level, debug_built):
    """Scrapy's logging config leaves its loggers at DEBUG and filters in the root handler
    only: without the crawl process's own level, every page's debug lines are built and then
    thrown away. Checked in a real Scrapy crawl, in a process of its own (one reactor each)."""
    assert probe_in_own_process(LOG_LEVEL_PROBE, level) == {
        "scrapy.core.scraper": debug_built,
        "scrapy.core.engine": debug_built,
        "crawler.spiders.site_audit": debug_built,
    }


STATS_PROBE = """
process.crawl(crawler)
process.start()
stats = crawler.stats
print(json.dumps({
    "class": type(stats).__name__,
    "finish_reason": stats.get_value("finish_reason"),
    "has_start_time": stats.get_value("start_time") is not None,
    "info_lines_counted": (stats.get_value("log_count/INFO") or 0) > 0,
}))
"""


def test_crawl_processes_keep_scrapy_stats_without_its_attribute_shim():
    """crawler/stats.py: the crawl's stats (finish_reason tells crawler/run.py whether a
    run timed out) are still kept, by the collector without Scrapy 2.19's per-attribute
    shim. A real Scrapy crawl, in a process of its own."""
    from crawler.stats import PlainStatsCollector

    assert PlainStatsCollector.__getattribute__ is object.__getattribute__
    assert probe_in_own_process(STATS_PROBE) == {
        "class": "PlainStatsCollector",
        "finish_reason": "finished",
        "has_start_time": True,
        "info_lines_counted": True,
    }


def test_the_crawls_of_a_run_are_started_together_each_with_its_own_site(db_url):
    """start_crawls inserts every crawl row of a run in one flush (batched INSERTs returning
    the ids): each id must still come back with its own site, in the order the sites were
    given, on the backend under test."""
    from audits.models import Crawl

    store = Store(db_url)
    with store.session() as session:
        for i in range(30):
            session.add(Site(domain=f"shop{i:02d}.test", start_url=f"http://shop{i:02d}.test/"))
    with store.session() as session:
        sites = list(session.scalars(select(Site).order_by(Site.id.desc())))
        session.expunge_all()
    options = pipeline.CrawlOptions(max_pages=3)
    crawls = pipeline.start_crawls(
        store, sites, options, start_urls={"shop07.test": "http://shop07.test/cn/"}
    )
    assert [c["domain"] for c in crawls] == [s.domain for s in sites]
    assert len({c["crawl_id"] for c in crawls}) == 30
    with store.session(readonly=True) as session:
        for c in crawls:
            row = session.get(Crawl, c["crawl_id"])
            assert row is not None and row.site.domain == c["domain"]
            assert row.start_url == c["start_url"] and row.status == "running"
            assert row.options["max_pages"] == 3 and row.options["runner"]["pid"] == os.getpid()
    assert crawls[-8]["start_url"] == "http://shop07.test/cn/"


# The CLI's own process, audited from the inside: at exit it reports whether Scrapy was ever
# imported there.
CLI_WITH_IMPORT_PROBE = """
import atexit, sys
atexit.register(lambda: print("scrapy loaded:", "scrapy" in sys.modules, file=sys.stderr))
from ectrust.cli import app
app(sys.argv[1:], prog_name="ectrust")
"""


def test_the_cli_audits_without_importing_scrapy(env, cli, site_farm):
    """The CLI judges and never crawls (its crawl processes do), yet it asks before every
    audit whether a browser can start: that question must not cost it Scrapy's import (about
    0.2 s of every `ectrust audit`, and its memory)."""
    farm, root = site_farm
    (domain,) = _shops(cli, root, 1)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI_WITH_IMPORT_PROBE,
            "audit",
            domain,
            "--json",
            "--render",
            "auto",
            "--connect-to",
            f"::127.0.0.1:{farm.port}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    audits = json.loads(done.stdout)["audits"]
    assert [a["domain"] for a in audits] == [domain]
    assert audits[0]["crawl_status"] == "finished" and audits[0]["pages_fetched"] == 2
    assert "scrapy loaded: False" in done.stderr, done.stderr[-2000:]
