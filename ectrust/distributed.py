"""Distributed audits (issue #10): Celery over Redis; the unit of work is "audit one site".

Why Celery: it is the established Python task queue, with what this needs built in: late
acknowledgement (``task_acks_late``: a job is acknowledged only after it ran, so a worker that
dies mid-job leaves it in the queue), ``task_reject_on_worker_lost`` (a pool process killed
mid-job puts the job back at once), Redis's visibility timeout (a whole worker killed: its
unacknowledged jobs become visible again after ``ECTRUST_BROKER_VISIBILITY_TIMEOUT``), retries
with a countdown, a result backend the enqueuer waits on, warm shutdown on SIGTERM.
scrapy-redis shares one crawl frontier (a request queue and a seen-set) between spiders; it
helps when one huge site is crawled by many machines. Here the unit is a whole small site,
judged as a unit from one crawl, so a shared frontier would only add cross-machine
coordination inside a site; each job runs the ordinary pipeline (ectrust/pipeline.py
``run_audits``, the same code as ``ectrust audit``) for its one site.

Delivery is at least once, so a job may run twice; results are idempotent: the job's key (its
Celery task id) is stored with its audit in one transaction under a unique key (audits/
job_receipts.py), and a job whose key is already recorded returns that audit without crawling.
Politeness holds across workers through a Redis lock per host (ectrust/hostlock.py).

Configuration (environment; the CLI's ``--broker`` overrides the URL):
``ECTRUST_BROKER`` Redis URL, broker and result backend; ``ECTRUST_BROKER_NAMESPACE`` queue
name and prefix of every Redis key (default ``ectrust``; separate deployments or test runs
sharing one Redis use different ones); ``ECTRUST_BROKER_VISIBILITY_TIMEOUT`` seconds before an
unacknowledged job is delivered again (default 3600; must exceed the longest audit, or a slow
job runs twice: harmless, but wasted); ``ECTRUST_HOST_LOCK_TTL`` lease of a host lock
(default 120 s, renewed while held); ``ECTRUST_HOST_LOCK_RETRY`` seconds before a job whose
host is busy tries again (default 2, with jitter).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, Task
from celery.signals import worker_process_init
from redis import Redis
from redis.exceptions import RedisError

from audits.db import Store
from audits.judge import recorded_audit
from audits.models import Site
from audits.rulepack import RuleSet, load_rules
from ectrust import warmstart
from ectrust.config import DEFAULT_BROKER, BrokerConfig, BrokerError, Settings
from ectrust.hostlock import HostLocks

logger = logging.getLogger(__name__)

TASK_NAME = "ectrust.audit_site"
def check_broker(cfg: BrokerConfig, timeout_s: float = 3.0) -> None:
    """Raise BrokerError with a readable message when Redis does not answer."""
    client = Redis.from_url(cfg.url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        client.ping()
    except RedisError as exc:
        raise BrokerError(f"cannot reach the broker {cfg.url}: {exc}") from exc
    finally:
        client.close()


def make_app(cfg: BrokerConfig) -> Celery:
    """The Celery app for one deployment (the enqueuer, the scheduler and the workers)."""
    app = Celery("ectrust", broker=cfg.url, backend=cfg.url, set_as_current=False)
    restore_every = max(1, min(10, int(cfg.visibility_timeout_s / 4)))
    app.conf.update(
        broker_transport_options={
            "visibility_timeout": cfg.visibility_timeout_s,
            "global_keyprefix": cfg.key_prefix,
            # how often a worker looks for jobs a dead worker left unacknowledged
            "unacked_restore_interval": restore_every,
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"global_keyprefix": cfg.key_prefix},
        broker_connection_retry_on_startup=True,
        task_default_queue=cfg.namespace,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds only the jobs it runs: fair spreading
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        task_track_started=True,
        worker_hijack_root_logger=True,
    )
    app.ectrust_config = cfg  # type: ignore[attr-defined]
    # max_retries=None: a job whose host is busy waits its turn however long that takes
    # (each lock's lease bounds how long a dead holder can keep it)
    app.task(bind=True, name=TASK_NAME, max_retries=None)(_audit_site)
    return app


# -- the worker side ----------------------------------------------------------------------------
@dataclass
class _WorkerContext:
    """What a worker process opens once (after the fork: nothing is shared with the parent)."""

    settings: Settings
    store: Store
    redis: Redis
    rulesets: dict[tuple[str, ...] | None, RuleSet] = field(default_factory=dict)

    def ruleset(self, packs: list[str] | None) -> RuleSet:
        """Loaded once per process (about a second each time): restart the workers after
        changing the rule packs."""
        key = tuple(packs) if packs else None
        if key not in self.rulesets:
            self.rulesets[key] = load_rules(pack_ids=list(key) if key else None)
        return self.rulesets[key]


_CONTEXTS: dict[int, _WorkerContext] = {}


def _context(cfg: BrokerConfig) -> _WorkerContext:
    ctx = _CONTEXTS.get(os.getpid())
    if ctx is None:
        settings = Settings.from_env()
        ctx = _WorkerContext(settings, Store(settings.db_url), Redis.from_url(cfg.url))
        _CONTEXTS.clear()  # a forked child drops the parent's (never reuse its connections)
        _CONTEXTS[os.getpid()] = ctx
    return ctx


def site_hosts(store: Store, domain: str) -> tuple[int, list[str]]:
    """(site id, the hosts a crawl of the site visits first: its domain and start URL host)."""
    with store.session(readonly=True) as session:
        site = session.query(Site).filter(Site.domain == domain).one_or_none()
        if site is None:
            raise LookupError(f"not registered: {domain}")
        host = urlsplit(site.start_url).hostname or ""
        return site.id, [domain, host]


def _audit_site(
    task: Task, domain: str, options: dict[str, Any], rules: list[str] | None = None
) -> dict[str, Any]:
    """Audit one site: crawl and judge it through ``run_audits``, recorded once per job."""
    from ectrust.pipeline import CrawlOptions, Interrupted, run_audits

    cfg: BrokerConfig = task.app.ectrust_config  # type: ignore[attr-defined]
    job_key = str(task.request.id)
    ctx = _context(cfg)
    done = recorded_audit(ctx.store, job_key)
    if done is not None:
        logger.info("job %s (%s) already recorded audit %d: delivered again, skipped",
                    job_key, domain, done)
        return {"audit_id": done, "domain": domain, "duplicate": True}
    _site_id, hosts = site_hosts(ctx.store, domain)
    locks = HostLocks(ctx.redis, cfg.key_prefix, hosts, cfg.host_lock_ttl_s)
    if not locks.acquire():
        delay = cfg.lock_retry_s * (1 + random.random())
        logger.info("%s is being crawled by another job; job %s retries in %.1fs",
                    ", ".join(locks.hosts), job_key, delay)
        raise task.retry(countdown=delay)
    try:
        # Another delivery of this job may have finished while we waited for the host.
        done = recorded_audit(ctx.store, job_key)
        if done is not None:
            return {"audit_id": done, "domain": domain, "duplicate": True}
        logger.info("auditing %s (job %s)", domain, job_key)
        started = time.monotonic()
        try:
            audit_id = run_audits(
                ctx.store,
                ctx.settings,
                [domain],
                ctx.ruleset(rules),
                CrawlOptions(**options),
                job_keys={domain: job_key},
            ).audit_ids[0]
        except Interrupted:
            # SIGTERM/SIGINT reached this process (a signal to the worker's whole process
            # group; one to its main process alone lets the job finish). As in a local
            # audit, what was crawled is judged and recorded as interrupted: that audit is
            # the job's result, so the job is not run again.
            audit_id = recorded_audit(ctx.store, job_key)
            if audit_id is None:
                raise
            logger.warning("job %s (%s) stopped by a signal: audit %d is partial (interrupted)",
                           job_key, domain, audit_id)
            return {"audit_id": audit_id, "domain": domain, "duplicate": False,
                    "interrupted": True}
    finally:
        locks.release()
    logger.info("audited %s: audit %d in %.1fs (job %s)",
                domain, audit_id, time.monotonic() - started, job_key)
    return {"audit_id": audit_id, "domain": domain, "duplicate": False}


def _start_fork_server(**_: Any) -> None:
    warmstart.enable(start_now=True)


def run_worker(cfg: BrokerConfig, concurrency: int) -> None:
    """``ectrust worker``: a Celery worker in the foreground (SIGTERM: warm shutdown, the
    jobs in hand finish and are acknowledged; a second SIGTERM or SIGQUIT stops at once and
    the queue delivers the unfinished jobs again)."""
    app = make_app(cfg)
    # A worker starts one crawl per job: each pool process forks them from its own warm fork
    # server (ectrust/warmstart.py), started as the pool process starts.
    warmstart.enable(start_now=False)
    worker_process_init.connect(_start_fork_server, weak=False)
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            f"--queues={cfg.namespace}",
            f"--hostname=ectrust-{os.getpid()}-{uuid.uuid4().hex[:4]}@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


# -- the enqueuing side ---------------------------------------------------------------------------
@dataclass
class Job:
    job_id: str
    domain: str


@dataclass
class JobOutcome:
    job_id: str
    domain: str
    audit_id: int | None
    error: str = ""
    interrupted: bool = False  # the worker was stopped mid-audit: the audit is partial


def enqueue(
    app: Celery, domains: Iterable[str], options: dict[str, Any], rules: list[str] | None
) -> list[Job]:
    """One job per site; returns them in the order given."""
    jobs = []
    for domain in domains:
        job_id = uuid.uuid4().hex
        app.send_task(TASK_NAME, args=[domain, options, rules], task_id=job_id)
        jobs.append(Job(job_id, domain))
    return jobs


def workers_answering(app: Celery, timeout_s: float = 1.0) -> int:
    try:
        return len(app.control.ping(timeout=timeout_s) or [])
    except Exception:  # the answer is advice for the user only
        return 0


def wait_for(
    app: Celery,
    jobs: list[Job],
    on_done: Callable[[JobOutcome], None] | None = None,
    timeout_s: float | None = None,
) -> list[JobOutcome]:
    """Wait until every job has finished (or ``timeout_s``); outcomes in the jobs' order.
    A job still unfinished at the timeout has ``error`` set and no audit."""
    by_id = {j.job_id: j for j in jobs}
    outcomes: dict[str, JobOutcome] = {}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def check_deadline() -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError

    try:
        for job_id, meta in app.backend.get_many(
            list(by_id), interval=0.5, on_interval=check_deadline
        ):
            job = by_id[job_id]
            if meta.get("status") == "SUCCESS":
                outcome = JobOutcome(
                    job_id,
                    job.domain,
                    int(meta["result"]["audit_id"]),
                    interrupted=bool(meta["result"].get("interrupted")),
                )
            else:
                outcome = JobOutcome(
                    job_id, job.domain, None, f"{meta.get('status')}: {meta.get('result')!r}"
                )
            outcomes[job_id] = outcome
            if on_done is not None:
                on_done(outcome)
    except TimeoutError:
        pass
    return [
        outcomes.get(j.job_id)
        or JobOutcome(j.job_id, j.domain, None, f"not finished within {timeout_s:g}s")
        for j in jobs
    ]


class DistributedAuditRunner:
    """The scheduler's runner (ectrust/scheduler.py ``Monitor``) when checks are distributed:
    enqueue one job and wait for it, so the check's bookkeeping (changes, retries, digests)
    stays with the scheduler while a worker audits. ``audit_time_limit_s`` covers waiting in
    the queue too; a job not finished by then is revoked and the check retried later."""

    def __init__(self, settings: Settings, policy: Any, cfg: BrokerConfig) -> None:
        self.settings = settings
        self.policy = policy
        self.cfg = cfg
        self.app = make_app(cfg)

    def options(self) -> dict[str, Any]:
        return {
            "max_pages": self.policy.max_pages,
            "connect_to": list(self.settings.connect_to),
            "render": "auto",
            "time_limit_s": max(1.0, self.policy.audit_time_limit_s * 0.8),
            "scrapy_settings": {},
        }

    def __call__(self, domain: str) -> tuple[str, int | None, str]:
        try:
            (job,) = enqueue(self.app, [domain], self.options(), None)
        except Exception as exc:  # broker down: the check fails and is retried later
            return "failed", None, f"cannot enqueue the audit: {exc}"
        logger.info("enqueued the check of %s as job %s", domain, job.job_id)
        (outcome,) = wait_for(self.app, [job], timeout_s=self.policy.audit_time_limit_s)
        if outcome.audit_id is not None:
            return "done", outcome.audit_id, ""
        if outcome.error.startswith("not finished"):
            self.app.control.revoke(job.job_id)
            return "timed_out", None, f"job {job.job_id}: {outcome.error}; revoked"
        return "failed", None, f"job {job.job_id}: {outcome.error}"


def scheduler_runner(settings: Settings, policy: Any) -> DistributedAuditRunner | None:
    """The distributed runner when the deployment says so ($ECTRUST_BROKER, or
    ``distributed = true`` in schedule.toml), else None (audit in child processes here)."""
    if not (os.environ.get("ECTRUST_BROKER") or policy.distributed):
        return None
    cfg = BrokerConfig.from_env(default=DEFAULT_BROKER)
    check_broker(cfg)
    return DistributedAuditRunner(settings, policy, cfg)
