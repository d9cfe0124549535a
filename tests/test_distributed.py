"""Distributed audits (issue #10): real Redis, real `ectrust worker` processes, local sites.

Every test has its own Redis key prefix and queue (ECTRUST_BROKER_NAMESPACE), removed at the
end, so runs sharing one Redis never see each other's jobs or locks. The database is the one
ECTRUST_TEST_DB picks (CI runs the suite on SQLite and on PostgreSQL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from sqlalchemy import func, select

from audits.db import Store
from audits.evidence import BlobStore
from audits.job_receipts import JobReceipt
from audits.judge import judge_crawl
from audits.models import Audit, Crawl, Site
from audits.rulepack import load_rules
from ectrust.config import BrokerConfig, Settings
from ectrust.sitefarm import SiteFarm
from tests.conftest import DEMO_CSV, DEMO_SITES, write_site
from tests.dbs import REQUIRE_SERVICES

REDIS_URL = os.environ.get("ECTRUST_TEST_REDIS", "redis://127.0.0.1:6379/0")
PROJECT = Path(__file__).resolve().parent.parent
FAST = ["--render", "never", "--max-pages", "8", "-s", "DOWNLOAD_DELAY=0",
        "-s", "AUTOTHROTTLE_ENABLED=false"]


@pytest.fixture
def redis_ns(env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private namespace on the local Redis, configured for the CLI and the workers."""
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except RedisError as exc:
        if REQUIRE_SERVICES:
            pytest.fail(f"Redis required (ECTRUST_REQUIRE_SERVICES=1) but unusable: {exc}")
        pytest.skip(f"Redis not available: {exc}")
    ns = f"t-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("ECTRUST_BROKER", REDIS_URL)
    monkeypatch.setenv("ECTRUST_BROKER_NAMESPACE", ns)
    monkeypatch.setenv("ECTRUST_HOST_LOCK_TTL", "3")
    monkeypatch.setenv("ECTRUST_HOST_LOCK_RETRY", "0.5")
    try:
        yield ns
    finally:
        for key in client.scan_iter(match=f"{ns}:*", count=500):
            client.delete(key)
        client.close()


class Worker:
    """One `ectrust worker` process in its own process group (so it can be killed whole)."""

    def __init__(self, log: Path, concurrency: int) -> None:
        self.log = log
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT), env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ectrust", "worker", "--concurrency", str(concurrency)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"),  # noqa: SIM115 (closed with the process)
            env=env,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.text()}")
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.text()}")

    def kill(self) -> None:
        """SIGKILL the whole worker: main process, pool processes and their crawlers."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def workers(env: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(concurrency: int = 1, ready: bool = True) -> Worker:
        w = Worker(env / f"worker-{len(started)}.log", concurrency)
        started.append(w)
        if ready:
            w.wait_ready()
        return w

    yield start
    for w in started:
        w.stop()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def findings_by_domain(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        a["domain"]: (
            a["reachable"],
            a["pages_fetched"],
            a["score"],
            sorted((f["rule_id"], f["status"]) for f in a["findings"]),
        )
        for a in doc["audits"]
    }


def counts(url: str, domain: str) -> tuple[int, int, list[str]]:
    """(audits, job_receipts, crawl statuses) of one site."""
    store = Store(url)
    try:
        with store.session(readonly=True) as s:
            site_id = s.scalar(select(Site.id).where(Site.domain == domain))
            audits = s.scalar(
                select(func.count()).select_from(Audit).where(Audit.site_id == site_id)
            )
            jobs = s.scalar(
                select(func.count()).select_from(JobReceipt).where(JobReceipt.site_id == site_id)
            )
            crawls = list(s.scalars(select(Crawl.status).where(Crawl.site_id == site_id)
                                    .order_by(Crawl.id)))
        return audits, jobs, crawls
    finally:
        store.dispose()


# -- the tests ---------------------------------------------------------------------------------
def test_distributed_audit_gives_the_local_findings(cli, db_url, redis_ns, workers):
    with SiteFarm(DEMO_SITES) as farm:
        connect = ["--connect-to", f"::127.0.0.1:{farm.port}"]
        cli("sites", "import", str(DEMO_CSV))
        local = cli.json("audit", "--all", "--json", *FAST, *connect)
        workers(concurrency=1)
        workers(concurrency=1)
        dist = cli.json("audit", "--all", "--distributed", "--json", *FAST, *connect)
    assert len(dist["audits"]) == len(local["audits"]) >= 4
    assert [a["domain"] for a in dist["audits"]] == [a["domain"] for a in local["audits"]]
    assert findings_by_domain(dist) == findings_by_domain(local)
    local_ids = {a["audit_id"] for a in local["audits"]}
    assert not local_ids & {a["audit_id"] for a in dist["audits"]}  # new audits, not old ones
    store = Store(db_url)
    try:
        with store.session(readonly=True) as s:
            jobs = s.scalars(select(JobReceipt)).all()
        assert sorted(j.audit_id for j in jobs) == sorted(a["audit_id"] for a in dist["audits"])
    finally:
        store.dispose()


def _slow_farm(root: Path, delay: float) -> SiteFarm:
    return SiteFarm(root, on_request=lambda host, path: time.sleep(delay))


def _write_shop(root: Path, host: str, pages: int) -> None:
    links = "".join(f'<a href="/p{i}.html">Product {i}</a> ' for i in range(pages))
    files: dict[str, str | bytes] = {
        "index.html": f"<html><body><h1>Shop</h1>{links}</body></html>",
        "robots.txt": "User-agent: *\nAllow: /\n",
    }
    for i in range(pages):
        files[f"p{i}.html"] = f"<html><body><h1>Product {i}</h1><a href='/'>home</a></body></html>"
    write_site(root, host, files)


def test_duplicate_delivery_records_one_audit(cli, db_url, redis_ns, workers, env):
    from ectrust.distributed import DistributedAuditRunner, make_app

    root = env / "farm"
    _write_shop(root, "www.dup.test", 4)
    with SiteFarm(root) as farm:
        cli("sites", "add", "dup.test", "--url", "http://www.dup.test/")
        w = workers(concurrency=2)
        app = make_app(BrokerConfig.from_env())
        options = {"max_pages": 5, "connect_to": [f"::127.0.0.1:{farm.port}"], "render": "never",
                   "time_limit_s": 60, "scrapy_settings": {"DOWNLOAD_DELAY": 0}}
        key = uuid.uuid4().hex
        # The same job delivered twice, at once: two pool processes get it.
        app.send_task("ectrust.audit_site", args=["dup.test", options, None], task_id=key)
        app.send_task("ectrust.audit_site", args=["dup.test", options, None], task_id=key)
        wait_until(lambda: w.text().count(f"audit_site[{key}] succeeded") == 2, 90,
                   "both deliveries to finish")
        audits, jobs, crawls = counts(db_url, "dup.test")
        assert (audits, jobs) == (1, 1)
        assert crawls == ["finished"]  # the second delivery did not even crawl
        assert "already recorded audit" in w.text()

        # The scheduler's runner goes through the same queue.
        from audits.cadence import Policy

        settings = Settings.from_env()
        settings = Settings(settings.db_url, settings.home, settings.badge_hosts,
                            (f"::127.0.0.1:{farm.port}",))
        runner = DistributedAuditRunner(settings, Policy(max_pages=3, audit_time_limit_s=90),
                                        BrokerConfig.from_env())
        status, audit_id, error = runner("dup.test")
        assert (status, error) == ("done", "") and audit_id is not None
        assert counts(db_url, "dup.test")[:2] == (2, 2)


def test_due_checks_run_on_the_workers(cli, redis_ns, workers, env):
    """`audit --due --distributed`: the due checks are claimed here, audited by a worker,
    and recorded as done with the worker's audit."""
    from audits.monitoring_models import ScheduledCheck

    (env / "sites.csv").write_text(
        "domain,name,start_url,industry,status,certificate_id,badge,valid_from,valid_until\n"
        "books.example,Books,http://books.example/,books,certified,ECT-2024-0001,red,"
        "2024-03-01,2027-02-28\n",
        encoding="utf-8",
    )
    with SiteFarm(DEMO_SITES) as farm:
        cli("sites", "import", "sites.csv")
        workers(concurrency=1)
        args = ["--due", "--distributed", "--json", *FAST,
                "--connect-to", f"::127.0.0.1:{farm.port}"]
        assert cli.json("audit", *args) == {"audits": []}  # just registered: not due yet
        # a red certificate is checked every 30 days (the worker keeps the real clock)
        with time_machine.travel(datetime.now(UTC) + timedelta(days=31), tick=True):
            (audit,) = cli.json("audit", *args)["audits"]
            assert audit["domain"] == "books.example" and audit["pages_fetched"] > 1
            assert cli.json("audit", *args) == {"audits": []}  # checked: not due any more
    store = Store(os.environ["ECTRUST_DB"])
    try:
        with store.session(readonly=True) as s:
            (check,) = s.scalars(select(ScheduledCheck)).all()
            assert (check.status, check.audit_id) == ("done", audit["audit_id"])
            assert s.scalar(select(JobReceipt.audit_id)) == audit["audit_id"]
    finally:
        store.dispose()


def test_same_job_key_judged_twice_keeps_one_audit(db_url, env):
    """The unique job key in the recording transaction: two runs of one job racing to record
    (threads, so on PostgreSQL both can be inside the transaction at once)."""
    store = Store(db_url)
    try:
        with store.session() as s:
            site = Site(domain="race.test", start_url="http://race.test/")
            s.add(site)
            s.flush()
            crawl_ids = []
            for _ in range(4):
                crawl = Crawl(site_id=site.id, start_url=site.start_url, status="unreachable")
                s.add(crawl)
                s.flush()
                crawl_ids.append(crawl.id)
        ruleset = load_rules()
        blobs = BlobStore(env / "home")
        results: list[int] = []
        barrier = threading.Barrier(len(crawl_ids))

        def run(crawl_id: int) -> None:
            barrier.wait()
            results.append(judge_crawl(store, crawl_id, ruleset, blobs, (), job_key="job-1"))

        threads = [threading.Thread(target=run, args=(c,)) for c in crawl_ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 4 and len(set(results)) == 1
        with store.session(readonly=True) as s:
            assert s.scalar(select(func.count()).select_from(Audit)) == 1
            job = s.get(JobReceipt, "job-1")
            assert job is not None and job.audit_id == results[0]
        # a different key records its own audit
        other = judge_crawl(store, crawl_ids[0], ruleset, blobs, (), job_key="job-2")
        assert other != results[0]
    finally:
        store.dispose()


def test_killed_worker_job_is_finished_by_another(cli, db_url, redis_ns, workers, env,
                                                  monkeypatch):
    monkeypatch.setenv("ECTRUST_BROKER_VISIBILITY_TIMEOUT", "8")
    root = env / "farm"
    _write_shop(root, "kill.test", 6)
    seen: list[str] = []
    with SiteFarm(root, on_request=lambda h, p: (seen.append(p), time.sleep(0.5))) as farm:
        cli("sites", "add", "kill.test", "--url", "http://kill.test/")
        first = workers(concurrency=1)
        out = cli.json("audit", "kill.test", "--distributed", "--no-wait", "--json",
                       "--render", "never", "--max-pages", "8",
                       "--connect-to", f"::127.0.0.1:{farm.port}")
        (job,) = out["jobs"]
        wait_until(lambda: len(seen) >= 3, 60, "the first worker to be crawling")
        first.kill()
        assert counts(db_url, "kill.test")[:2] == (0, 0)
        second = workers(concurrency=1)
        store = Store(db_url)
        try:
            def recorded() -> Any:
                with store.session(readonly=True) as s:
                    return s.get(JobReceipt, job["job_id"])

            row = wait_until(recorded, 90, "the job to be finished by the second worker")
        finally:
            store.dispose()
    assert job["job_id"] in second.text()
    audits, jobs, crawls = counts(db_url, "kill.test")
    assert (audits, jobs) == (1, 1)
    # the killed worker's crawl is marked crashed and not judged; the second one is the audit
    assert crawls == ["crashed", "finished"]
    store = Store(db_url)
    try:
        with store.session(readonly=True) as s:
            audit = s.get(Audit, row.audit_id)
            assert s.get(Crawl, audit.crawl_id).status == "finished"
            assert audit.summary is not None and audit.reachable
    finally:
        store.dispose()


def test_sigterm_lets_the_job_in_hand_finish(cli, redis_ns, workers, env):
    root = env / "farm"
    _write_shop(root, "term.test", 4)
    seen: list[str] = []
    with SiteFarm(root, on_request=lambda h, p: (seen.append(p), time.sleep(0.4))) as farm:
        cli("sites", "add", "term.test", "--url", "http://term.test/")
        w = workers(concurrency=1)
        (job,) = cli.json("audit", "term.test", "--distributed", "--no-wait", "--json",
                          "--render", "never", "--connect-to", f"::127.0.0.1:{farm.port}")["jobs"]
        wait_until(lambda: len(seen) >= 2, 60, "the worker to be crawling")
        w.proc.send_signal(signal.SIGTERM)  # the main process only: a warm shutdown
        assert w.proc.wait(90) == 0
        url = os.environ["ECTRUST_DB"]
        assert counts(url, "term.test") == (1, 1, ["finished"])
        assert "Warm shutdown" in w.text() and job["job_id"] in w.text()

        # SIGTERM to the whole group (pool process and crawler too): the crawl stops early
        # and is recorded as interrupted, as a local audit would; that is the job's result.
        from ectrust.distributed import Job, make_app, wait_for

        seen.clear()
        w = workers(concurrency=1)
        (job,) = cli.json("audit", "term.test", "--distributed", "--no-wait", "--json",
                          "--render", "never", "--connect-to", f"::127.0.0.1:{farm.port}")["jobs"]
        wait_until(lambda: len(seen) >= 2, 60, "the worker to be crawling")
        os.killpg(w.proc.pid, signal.SIGTERM)
        w.proc.wait(90)
        (outcome,) = wait_for(make_app(BrokerConfig.from_env()),
                              [Job(job["job_id"], "term.test")], timeout_s=30)
    assert outcome.interrupted and outcome.audit_id is not None
    assert counts(url, "term.test") == (2, 2, ["finished", "interrupted"])


def test_two_workers_never_crawl_one_host_at_once(cli, redis_ns, workers, env):
    """Two sites served by one host, two idle workers: the host lock makes the second crawl
    wait until the first is over (seen from the server's side)."""
    root = env / "farm"
    _write_shop(root, "www.shared.test", 4)
    log: list[tuple[float, str]] = []
    lock = threading.Lock()

    def on_request(host: str, path: str) -> None:
        with lock:
            log.append((time.monotonic(), path))
        time.sleep(0.3)

    with SiteFarm(root, on_request=on_request) as farm:
        cli("sites", "add", "shared.test", "--url", "http://www.shared.test/")
        cli("sites", "add", "www.shared.test", "--url", "http://www.shared.test/")
        workers(concurrency=1)
        workers(concurrency=1)
        doc = cli.json("audit", "shared.test", "www.shared.test", "--distributed", "--json",
                       "--render", "never", "--connect-to", f"::127.0.0.1:{farm.port}",
                       "-s", "DOWNLOAD_DELAY=0")
    pages = [a["pages_fetched"] for a in doc["audits"]]
    assert pages[0] == pages[1] >= 5  # home, four products, and what discovery probes
    paths = [p for _, p in sorted(log)]
    robots = [i for i, p in enumerate(paths) if p == "/robots.txt"]
    assert len(robots) == 2, paths
    first, second = paths[robots[0] + 1 : robots[1]], paths[robots[1] + 1 :]
    # sequential crawls: the first crawl fetched all its pages before the second began
    assert sorted(first) == sorted(second) and len(first) >= 5, paths


def test_broker_down_is_a_clear_error(cli, env, monkeypatch):
    monkeypatch.setenv("ECTRUST_BROKER", "redis://127.0.0.1:1/0")
    cli("sites", "add", "down.test", "--url", "http://down.test/")
    result = cli("audit", "down.test", "--distributed", "--render", "never", expect=3)
    assert "cannot reach the broker redis://127.0.0.1:1/0" in result.stderr
    result = cli("audit", "--all", "--distributed", "--broker", "redis://127.0.0.1:1/0",
                 "--no-wait", expect=3)
    assert "cannot reach the broker" in result.stderr and result.stdout == ""
    result = cli("worker", expect=3)
    assert "cannot reach the broker" in result.stderr
    monkeypatch.delenv("ECTRUST_BROKER")
    result = cli("audit", "down.test", "--distributed", expect=2)
    assert "ECTRUST_BROKER" in result.stderr


def test_schedule_configuration_selects_the_distributed_runner(env, monkeypatch):
    from audits.cadence import CadenceConfigError, Policy
    from ectrust.distributed import DistributedAuditRunner, scheduler_runner

    home = env / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.delenv("ECTRUST_BROKER", raising=False)
    settings = Settings.from_env()
    assert scheduler_runner(settings, Policy.from_env(home)) is None
    (home / "schedule.toml").write_text("[schedule]\ndistributed = 1\n")
    with pytest.raises(CadenceConfigError, match="true or false"):
        Policy.from_env(home)
    (home / "schedule.toml").write_text("[schedule]\ndistributed = true\n")
    policy = Policy.from_env(home)
    assert policy.distributed is True
    try:
        runner = scheduler_runner(settings, policy)
    except Exception as exc:  # the default broker is the local Redis
        if REQUIRE_SERVICES:
            raise
        pytest.skip(f"Redis not available: {exc}")
    assert isinstance(runner, DistributedAuditRunner)
    assert runner.cfg.url == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("ECTRUST_BROKER", "redis://127.0.0.1:1/0")
    from ectrust.config import BrokerError

    with pytest.raises(BrokerError, match="cannot reach"):
        scheduler_runner(settings, Policy())


def test_no_wait_prints_job_ids(cli, redis_ns, env):
    cli("sites", "add", "queued.test", "--url", "http://queued.test/")
    result = cli("audit", "queued.test", "--distributed", "--no-wait", "--render", "never")
    job_id, domain = result.stdout.split()
    assert domain == "queued.test" and len(job_id) == 32
    from redis import Redis

    client = Redis.from_url(REDIS_URL)
    try:  # the job waits in this test's queue, under this test's key prefix
        queued = client.lrange(f"{redis_ns}:{redis_ns}", 0, -1)
        assert len(queued) == 1 and json.loads(queued[0])["headers"]["id"] == job_id
    finally:
        client.close()


def test_an_audit_started_in_the_web_application_runs_on_a_worker(cli, redis_ns, workers, env,
                                                                   monkeypatch):
    """With a broker configured, the web application's background job only enqueues the site
    and waits: the worker crawls and records the audit, the job row gets its audit id."""
    from audits.account_models import AuditJob
    from ectrust.jobs import start_audit_job

    root = env / "farm"
    _write_shop(root, "www.web.test", 3)
    with SiteFarm(root) as farm:
        monkeypatch.setenv("ECTRUST_CONNECT_TO", f"::127.0.0.1:{farm.port}")
        cli("sites", "add", "web.test", "--url", "http://www.web.test/")
        w = workers(concurrency=1)
        settings = Settings.from_env()
        store = Store(settings.db_url)
        try:
            job_id = start_audit_job(store, settings, "web.test", "alice", render="never",
                                     max_pages=4)

            def finished() -> AuditJob | None:
                with store.session(readonly=True) as s:
                    job = s.get(AuditJob, job_id)
                    return job if job.status in ("done", "failed") else None

            job = wait_until(finished, 120, "the web job to finish")
            assert (job.status, job.error or "") == ("done", ""), job.error
            audits, receipts, crawls = counts(settings.db_url, "web.test")
            assert (audits, receipts, crawls) == (1, 1, ["finished"])
            with store.session(readonly=True) as s:
                assert s.scalar(select(JobReceipt.audit_id)) == job.audit_id
        finally:
            store.dispose()
    assert "auditing web.test" in w.text()  # the worker did the crawl, not this process
