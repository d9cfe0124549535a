"""Warm crawl starts (ectrust/warmstart.py): crawls forked from a fork server that imported the
crawler once, as a distributed worker starts them. Each test runs the starting process as a
real separate process, as a worker's pool process would be."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from sqlalchemy import select

from audits.db import Store
from audits.models import Audit, Crawl, Finding
from ectrust.sitefarm import SiteFarm
from tests.conftest import DEMO_CSV

PROJECT = Path(__file__).resolve().parent.parent

# Audits the sites named in argv[1] (comma-separated) with warm starts, mapped to argv[2],
# within argv[3] seconds if given; prints the audit ids and whether a fork server started
# the crawls.
WARM_AUDIT = """
import json, sys
from multiprocessing import forkserver
from audits.db import Store
from audits.rulepack import load_rules
from ectrust import warmstart
from ectrust.config import Settings
from ectrust.pipeline import CrawlOptions, run_audits

warmstart.enable()
settings = Settings.from_env()
limit = float(sys.argv[3]) if len(sys.argv) > 3 else None
options = CrawlOptions(max_pages=8, connect_to=[sys.argv[2]], render="never", time_limit_s=limit,
                       scrapy_settings={"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False})
result = run_audits(Store(settings.db_url), settings, sys.argv[1].split(","), load_rules(),
                    options)
print(json.dumps({"audit_ids": result.audit_ids,
                  "fork_server": forkserver._forkserver._forkserver_pid is not None}))
"""


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT), env.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True, **kwargs)


def _findings(db_url: str, audit_ids: list[int]) -> list[list[tuple[str, str]]]:
    store = Store(db_url)
    try:
        with store.session(readonly=True) as s:
            return [
                sorted(
                    (f.rule_id, f.status)
                    for f in s.scalars(select(Finding).where(Finding.audit_id == audit_id))
                )
                for audit_id in audit_ids
            ]
    finally:
        store.dispose()


def test_the_fork_servers_preload_installs_no_reactor():
    """Each forked crawl installs its own asyncio reactor: the preload must not install one
    (importing twisted.internet.reactor would), yet it must hold what a crawl loads."""
    probe = _python(
        "import sys, crawler.warm; print(sorted(m for m in ("
        "'twisted.internet.reactor', 'scrapy_playwright.handler', "
        "'scrapy.extensions.memusage', 'crawler.spiders.site_audit') if m in sys.modules))",
        stdout=subprocess.PIPE,
    )
    out, _ = probe.communicate(timeout=120)
    assert probe.returncode == 0
    assert out.strip() == str(
        ["crawler.spiders.site_audit", "scrapy.extensions.memusage", "scrapy_playwright.handler"]
    )


def test_warm_and_fresh_crawls_record_the_same_findings(env, cli, db_url, demo_farm):
    connect = f"::127.0.0.1:{demo_farm.port}"
    cli("sites", "import", str(DEMO_CSV))
    fresh = cli.json(
        "audit",
        "--all",
        "--json",
        "--render",
        "never",
        "--max-pages",
        "8",
        "-s",
        "DOWNLOAD_DELAY=0",
        "-s",
        "AUTOTHROTTLE_ENABLED=false",
        "--connect-to",
        connect,
    )["audits"]
    domains = [a["domain"] for a in fresh]
    assert len(domains) >= 4
    proc = _python(WARM_AUDIT, ",".join(domains), connect, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    warm = json.loads(out)
    assert warm["fork_server"]
    fresh_ids = [a["audit_id"] for a in fresh]
    assert not set(warm["audit_ids"]) & set(fresh_ids)
    warm_findings = _findings(db_url, warm["audit_ids"])
    assert all(warm_findings)
    assert warm_findings == _findings(db_url, fresh_ids)
    # each warm crawl wrote its own log, as a fresh one does
    logs = sorted((env / "home" / "logs").glob("crawl-*.log"))
    assert len(logs) == 2 and all("Spider closed (finished)" in p.read_text() for p in logs)


def _slow_shop(root: Path, host: str) -> None:
    links = "".join(f'<a href="/p{i}.html">Product {i}</a> ' for i in range(20))
    (root / host).mkdir(parents=True)
    (root / host / "index.html").write_text(f"<html><body>{links}</body></html>")
    for i in range(20):
        (root / host / f"p{i}.html").write_text("<html><body>product</body></html>")


@contextlib.contextmanager
def _crawling(
    cli, root: Path, host: str, delay: float, *limit: str
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """A process auditing the slow shop ``host`` with warm starts (its own session), once
    its crawl has fetched two pages: (the process, the paths requested so far)."""
    _slow_shop(root, host)
    seen: list[str] = []
    with SiteFarm(root, on_request=lambda h, path: (seen.append(path), time.sleep(delay))) as farm:
        cli("sites", "add", host, "--url", f"http://{host}/")
        starter = _python(
            WARM_AUDIT,
            host,
            f"::127.0.0.1:{farm.port}",
            *limit,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while len(seen) < 2:
                assert starter.poll() is None and time.monotonic() < deadline, "no crawl"
                time.sleep(0.1)
            yield starter, seen
        finally:
            if starter.poll() is None:
                os.killpg(starter.pid, signal.SIGKILL)


def test_a_warm_crawl_dies_with_the_process_that_asked_for_it(env, cli, tmp_path):
    """SIGKILL to the starting process alone (not its group): the crawl it asked the fork
    server for is not its child, yet it does not go on crawling for nobody."""
    with _crawling(cli, tmp_path / "farm", "slow.test", 0.5) as (starter, seen):
        tree = psutil.Process(starter.pid).children(recursive=True)
        crawls = [p for p in tree if p.ppid() != starter.pid]  # the fork server's
        assert crawls, [p.cmdline() for p in tree]
        starter.send_signal(signal.SIGKILL)
        starter.wait()
        _gone, alive = psutil.wait_procs(tree, timeout=15)
        assert not alive, [p.cmdline() for p in alive]
        requests = len(seen)
        time.sleep(1.5)
        assert len(seen) == requests  # nothing fetched after the end


def test_a_warm_crawl_is_stopped_at_its_time_limit_even_without_its_fork_server(
    env, cli, db_url, tmp_path
):
    """The fork server killed mid-crawl (the OOM killer's likeliest pick: it holds the whole
    preload): the crawl is not the requester's child, yet its time limit still stops it and
    the audit is recorded, as timed out."""
    with _crawling(cli, tmp_path / "farm", "late.test", 1.5, "4") as (starter, _seen):
        tree = psutil.Process(starter.pid).children(recursive=True)
        (server,) = [
            p for p in tree if p.ppid() == starter.pid and "forkserver" in " ".join(p.cmdline())
        ]
        crawls = [p for p in tree if p.ppid() == server.pid]
        assert crawls
        server.kill()
        out, _ = starter.communicate(timeout=60)
        assert starter.returncode == 0
        _gone, alive = psutil.wait_procs(crawls, timeout=10)
        assert not alive
    (audit_id,) = json.loads(out)["audit_ids"]
    store = Store(db_url)
    try:
        with store.session(readonly=True) as s:
            crawl = s.get(Crawl, s.get(Audit, audit_id).crawl_id)
            assert crawl.status == "timed_out"
    finally:
        store.dispose()
