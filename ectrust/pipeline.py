"""Crawl then judge: the audit pipeline the CLI, the scheduler and the web app share.

The crawl runs in a child process (``python -m crawler.run``): a Twisted reactor cannot be
restarted, and a child can be killed when it overruns its time limit. The child prints one
JSON line per finished site; each site is judged here as soon as its line arrives, so judging
overlaps crawling.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update

from audits.db import Store
from audits.evidence import BlobStore
from audits.judge import judge_crawl
from audits.models import Audit, Crawl, Site, Snapshot
from audits.recovery import reconcile, runner_identity
from audits.rulepack import RuleSet
from crawler.netpolicy import parse_connect_to
from ectrust import judgepool, warmstart
from ectrust.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_MAX_PAGES = 30
TERMINATE_GRACE_S = 3.0
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class CrawlOptions:
    max_pages: int = DEFAULT_MAX_PAGES
    connect_to: list[str] = field(default_factory=list)
    render: str = "auto"
    time_limit_s: float | None = None  # whole run; default scales with the number of sites
    scrapy_settings: dict[str, Any] = field(default_factory=dict)

    def run_time_limit(self, sites: int) -> float:
        if self.time_limit_s is not None:
            return self.time_limit_s
        return 600.0 + 30.0 * sites


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child imports the same packages as we do, installed or from a checkout.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


def _die_with_parent() -> None:
    """In the child before exec: if the parent is killed (even SIGKILL), the kernel kills
    the crawl too, so no orphan crawler goes on writing for a run nobody will judge."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


#: Crawl processes run this much nicer than the process judging what they store. On a busy
#: machine the judging then keeps pace with the crawl (it is what the run waits for at its
#: end) instead of being left with a backlog to judge alone after the last fetch: the crawl
#: takes the CPU judging leaves. On 2 cores, 1,000 sites: the judging left after the crawl
#: fell from about 11 s to 2-4 s (bench/throughput.py). Downloads are not starved: a
#: process judges on one core at most, the crawl processes share the others.
CRAWL_NICENESS = 5


def _start_crawl_child() -> None:
    """``preexec_fn`` of a crawl process."""
    _die_with_parent()
    os.nice(CRAWL_NICENESS)


class Interrupted(Exception):
    """The run was stopped by SIGTERM/SIGINT; what was crawled is recorded as interrupted."""


class CrawlRun:
    """One child crawl process over several sites."""

    def __init__(
        self,
        settings: Settings,
        crawls: list[dict[str, Any]],
        options: CrawlOptions,
        hints: list[str],
    ) -> None:
        self.settings = settings
        self.crawls = crawls
        self.options = options
        self.hints = hints
        self.timed_out = False
        self.proc: subprocess.Popen[bytes] | warmstart.WarmCrawl | None = None
        self.terminated = False
        self.log_path: Path | None = None
        self._timer: threading.Timer | None = None

    def terminate(self) -> None:
        """Ask the crawl to stop gracefully (Scrapy closes the spider on SIGTERM); the sites
        still in flight are reported ``interrupted`` and judged as such."""
        self.terminated = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            # Scrapy's graceful close waits for every request already handed to the
            # downloader; a second SIGTERM (Scrapy's "force") after a short grace stops it.
            timer = threading.Timer(TERMINATE_GRACE_S, self._force_stop)
            timer.daemon = True
            timer.start()

    def _force_stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def start(self) -> None:
        """Launch the child (from the thread that later signals it: Popen's preexec_fn is
        not safe to run while another thread of this process forks)."""
        if self.proc is not None:
            return
        log_dir = self.settings.home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.log_path = log_dir / f"crawl-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}.log"
        job = {
            "db": self.settings.db_url,
            "home": str(self.settings.home),
            "sites": self.crawls,
            "max_pages": self.options.max_pages,
            "hints": self.hints,
            "connect_to": self.options.connect_to,
            "settings": self.options.scrapy_settings,
            "badge_hosts": list(self.settings.badge_hosts),
            "render": self.options.render,
        }
        if warmstart.enabled():
            self._start_warm(job)
            return
        with open(self.log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "crawler.run", "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=_child_env(),
                cwd=os.getcwd(),
                preexec_fn=_start_crawl_child,
            )
        self.proc = proc
        self._start_timer()
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(job).encode("utf-8"))
            proc.stdin.close()
        except BrokenPipeError:
            logger.error("the crawler exited before reading its job; see %s", self.log_path)

    def _start_warm(self, job: dict[str, Any]) -> None:
        """The same crawl, forked from this process's warm fork server (ectrust/warmstart.py)."""
        assert self.log_path is not None
        self.proc = warmstart.WarmCrawl(job, self.log_path, CRAWL_NICENESS)
        self._start_timer()

    def _start_timer(self) -> None:
        self._timer = threading.Timer(
            self.options.run_time_limit(len(self.crawls)), self._kill, args=(self.proc,)
        )
        self._timer.daemon = True
        self._timer.start()

    def ended(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def events(self) -> Any:
        """Yield the child's events as they come; enforce the wall-clock limit."""
        self.start()
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        try:
            for raw in proc.stdout:
                try:
                    yield json.loads(raw)
                except json.JSONDecodeError:
                    logger.warning("unexpected crawler output: %r", raw[:200])
            proc.wait()
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None  # it holds this run: let both go without a full collection
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()

    def _kill(self, proc: subprocess.Popen[bytes] | warmstart.WarmCrawl) -> None:
        self.timed_out = True
        logger.error("crawl exceeded its time limit; stopping it")
        proc.kill()


#: A run gets a second crawl process only from this many sites on: each costs about a
#: second of CPU to start (Scrapy, Twisted, the rules' hints), as much as crawling a few sites.
MIN_SITES_PER_CRAWLER = 24


def crawler_count(sites: int, configured: int = 0) -> int:
    """How many crawl processes a run over ``sites`` sites uses. One Scrapy process keeps
    one core busy (its reactor, link extraction, hashing and compressing bodies, with the
    database writes on its own thread), so on a machine with more cores a large run is split
    into one crawl per core, while this process judges what they store. ``configured``
    (``ECTRUST_CRAWLERS``) overrides the choice; 0 is automatic."""
    if sites <= 1:
        return 1
    if configured > 0:
        return min(configured, sites)
    return max(1, min(os.cpu_count() or 1, sites // MIN_SITES_PER_CRAWLER))


def _group_key(crawl: dict[str, Any]) -> str:
    host = urlsplit(crawl["start_url"]).hostname or crawl["domain"]
    return host.lower().removeprefix("www.")


def partition(crawls: list[dict[str, Any]], parts: int) -> list[list[dict[str, Any]]]:
    """Split the sites of a run between ``parts`` crawl processes. Sites on one host go to
    the same process, so its per-host pacing (crawler/middlewares/pacing.py) still sees
    every request to that host; otherwise the parts are filled evenly, in the run's order."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for crawl in crawls:
        by_key.setdefault(_group_key(crawl), []).append(crawl)
    out: list[list[dict[str, Any]]] = [[] for _ in range(parts)]
    for group in by_key.values():
        min(out, key=len).extend(group)
    return [part for part in out if part]


def _scaled_concurrency(scrapy_settings: dict[str, Any], parts: int) -> dict[str, Any]:
    """The run's CONCURRENT_REQUESTS shared between ``parts`` processes, so splitting a run
    does not multiply the requests in flight."""
    if parts <= 1:
        return scrapy_settings
    from crawler import settings as crawl_defaults

    total = scrapy_settings.get("CONCURRENT_REQUESTS", crawl_defaults.CONCURRENT_REQUESTS)
    try:
        total = int(total)
    except (TypeError, ValueError):
        return scrapy_settings  # Scrapy reports the bad value itself
    return {**scrapy_settings, "CONCURRENT_REQUESTS": max(1, -(-total // parts))}


class CrawlGroup:
    """Several crawl processes over one run's sites, read as one stream of events."""

    def __init__(
        self,
        settings: Settings,
        crawls: list[dict[str, Any]],
        options: CrawlOptions,
        hints: list[str],
        processes: int,
    ) -> None:
        parts = partition(crawls, max(1, processes))
        shared = dataclasses.replace(
            options, scrapy_settings=_scaled_concurrency(options.scrapy_settings, len(parts))
        )
        self.runs = [CrawlRun(settings, part, shared, hints) for part in parts]

    @property
    def timed_out(self) -> bool:
        return any(run.timed_out for run in self.runs)

    @property
    def terminated(self) -> bool:
        return any(run.terminated for run in self.runs)

    @property
    def log_path(self) -> Path | None:
        return self.runs[0].log_path if self.runs else None

    @property
    def log_paths(self) -> list[Path]:
        return [run.log_path for run in self.runs if run.log_path is not None]

    def terminate(self) -> None:
        for run in self.runs:
            run.terminate()

    def any_ended(self) -> bool:
        """Has a crawl process of the group exited (freeing a core)?"""
        return any(run.ended() for run in self.runs)

    def events(self) -> Any:
        if len(self.runs) == 1:
            yield from self.runs[0].events()
            return
        for run in self.runs:
            run.start()
        inbox: queue.Queue[Any] = queue.Queue()  # events, a reader's exception, or _END

        def read(run: CrawlRun) -> None:
            try:
                for event in run.events():
                    inbox.put(event)
            except BaseException as exc:  # handed to the consumer, which raises it
                inbox.put(exc)
            finally:
                inbox.put(_END)

        readers = [
            threading.Thread(target=read, args=(run,), name=f"crawl-reader-{i}", daemon=True)
            for i, run in enumerate(self.runs)
        ]
        for reader in readers:
            reader.start()
        open_runs = len(readers)
        try:
            while open_runs:
                event = inbox.get()
                if event is _END:
                    open_runs -= 1
                elif isinstance(event, BaseException):
                    raise event
                else:
                    yield event
        finally:
            for run in self.runs:  # the consumer stopped early: no crawl outlives the run
                if run.proc is not None and run.proc.poll() is None:
                    run.proc.kill()
            for reader in readers:
                reader.join(timeout=5)


_END = object()


@dataclass
class AuditRunResult:
    audit_ids: list[int]
    crawl_log: Path | None
    crawl_logs: list[Path] = field(default_factory=list)  # one per crawl process


def _forward_signals(run: CrawlRun | CrawlGroup) -> dict[int, Any]:
    """SIGTERM/SIGINT stop the crawl gracefully instead of killing this process outright
    (only possible from the main thread; elsewhere the defaults stay)."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, lambda *_: run.terminate())
    return previous


def start_crawls(
    store: Store,
    sites: list[Site],
    options: CrawlOptions,
    start_urls: dict[str, str] | None = None,
    job_keys: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``start_urls`` (domain -> URL) overrides a site's registered start URL (``badge
    check`` starts from the page it was given); ``job_keys`` (domain -> key) marks the crawls
    of distributed jobs (audits/recovery.py leaves those to the job's redelivery)."""
    runner = runner_identity()  # audits/recovery.py: is it still alive?
    with store.session() as session:
        rows: list[tuple[Crawl, Site]] = []
        for site in sites:
            start_url = (start_urls or {}).get(site.domain, site.start_url)
            crawl = Crawl(
                site_id=site.id,
                start_url=start_url,
                status="running",
                options={
                    "max_pages": options.max_pages,
                    "render": options.render,
                    "connect_to": options.connect_to,
                    "runner": runner,
                    **({"job": job_keys[site.domain]} if site.domain in (job_keys or {}) else {}),
                },
            )
            session.add(crawl)
            rows.append((crawl, site))
        # One flush for all: the rows go in batched INSERTs that return their ids (one flush
        # per crawl took 0.8 s for 1,000 sites, while no crawl could start).
        session.flush()
        return [
            {"crawl_id": crawl.id, "domain": site.domain, "start_url": crawl.start_url}
            for crawl, site in rows
        ]


def run_audits(
    store: Store,
    settings: Settings,
    domains: list[str],
    ruleset: RuleSet,
    options: CrawlOptions,
    on_progress: Callable[[str, dict[str, Any]], None] | None = None,
    start_urls: dict[str, str] | None = None,
    job_keys: dict[str, str] | None = None,
) -> AuditRunResult:
    """Crawl and judge the named sites; returns the new audit ids in the order given.

    ``job_keys`` (domain -> key): the run is a distributed job (ectrust/distributed.py); each audit
    is recorded under its job's key, once per key (audits/judge.py)."""
    parse_connect_to(options.connect_to)  # bad specs fail before anything is written
    blobs = BlobStore(settings.home)
    recovered = reconcile(
        store,
        blobs,
        lambda cid: judge_crawl(store, cid, ruleset, blobs, settings.badge_hosts),
    )
    if recovered.crashed or recovered.judged or recovered.tmp_removed:
        logger.warning(
            "recovered from an earlier killed run: %d crawl(s) marked crashed, %d audit(s) "
            "completed, %d unfinished evidence file(s) removed",
            len(recovered.crashed), len(recovered.judged), recovered.tmp_removed,
        )
    with store.session() as session:
        by_domain = {
            s.domain: s for s in session.scalars(select(Site).where(Site.domain.in_(domains)))
        }
    sites = [by_domain[d] for d in domains]
    crawls = start_crawls(store, sites, options, start_urls, job_keys)
    pending = {c["crawl_id"]: c["domain"] for c in crawls}
    audits: dict[int, int] = {}
    run = CrawlGroup(
        settings,
        crawls,
        options,
        ruleset.crawl_hints,
        crawler_count(len(crawls), settings.crawlers),
    )
    started = time.monotonic()

    def judge(crawl_id: int) -> None:
        record(
            crawl_id,
            judge_crawl(
                store,
                crawl_id,
                ruleset,
                blobs,
                settings.badge_hosts,
                job_key=(job_keys or {}).get(pending[crawl_id]),
            ),
        )

    def record(crawl_id: int, audit_id: int) -> None:
        audits[crawl_id] = audit_id
        if on_progress:
            with store.session(readonly=True) as session:
                # the score alone: loading the Audit would decode its JSON columns too
                score = session.scalar(select(Audit.score).where(Audit.id == audit_id))
            on_progress(
                "audited",
                {
                    "domain": pending[crawl_id],
                    "audit_id": audit_id,
                    "score": score,
                    "status": "done",
                },
            )

    # While the crawl runs, its processes and the judging here share the cores. Once a crawl
    # process has exited (and freed its memory and its core), a judging worker takes half of
    # what is left to judge, so the end of a long run is not judged on one core alone.
    pool: judgepool.JudgePool | None = None
    # A distributed job's audit is recorded under its job key here (the pool knows none).
    want_pool = judgepool.wanted(len(crawls)) and not job_keys

    by_worker: list[int] = []

    def collect(*, wait: bool = False) -> None:
        assert pool is not None
        for crawl_id, audit_id in pool.done(wait=wait):
            if audit_id is None:  # the worker failed: judge here (unless it did write)
                audit_id = judgepool.audit_of(store, crawl_id)
            if audit_id is None:
                judge(crawl_id)
            else:
                record(crawl_id, audit_id)
                by_worker.append(crawl_id)

    previous_handlers = _forward_signals(run)
    try:
        for event in run.events():
            if event.get("event") == "crawl_done" and event.get("crawl_id") in pending:
                if on_progress:
                    on_progress("crawled", {"domain": pending[event["crawl_id"]], **event})
                crawl_ended = run.any_ended()
                backlog = len(pending) - len(audits)
                if pool is None and want_pool and crawl_ended and backlog >= judgepool.MIN_BACKLOG:
                    pool = judgepool.JudgePool(
                        settings.db_url, ruleset, settings.home, settings.badge_hosts
                    )
                if pool is None:
                    judge(event["crawl_id"])
                    continue
                collect()
                if pool.has_room():
                    pool.submit(event["crawl_id"])  # judged in the worker process
                else:
                    judge(event["crawl_id"])  # meanwhile, in this one
        if pool is not None:
            collect(wait=True)
    finally:
        if pool is not None:
            pool.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    missing = [cid for cid in pending if cid not in audits]
    if missing:
        status = "timed_out" if run.timed_out else "interrupted" if run.terminated else "crashed"
        logger.error(
            "%d site(s) not finished by the crawler (%s); see %s",
            len(missing),
            status,
            ", ".join(map(str, run.log_paths)),
        )
        with store.session() as session:
            session.execute(
                update(Crawl)
                .where(Crawl.id.in_(missing), Crawl.status == "running")
                .values(
                    status=status,
                    finished_at=datetime.now(UTC),
                    # What did get stored before the end still counts.
                    pages_fetched=select(func.count(Snapshot.id))
                    .where(Snapshot.crawl_id == Crawl.id, Snapshot.status.is_not(None))
                    .scalar_subquery(),
                )
            )
        for crawl_id in missing:
            judge(crawl_id)
    logger.info(
        "audited %d site(s) in %.1fs (%d judged by the judging worker)",
        len(audits),
        time.monotonic() - started,
        len(by_worker),
    )
    if run.terminated:
        raise Interrupted(
            f"stopped by a signal: {len(audits)} audit(s) recorded, crawls marked interrupted"
        )
    return AuditRunResult(
        [audits[c["crawl_id"]] for c in crawls], run.log_path, run.log_paths
    )
