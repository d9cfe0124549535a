"""Audits started from the web application, run in the background.

``start_audit_job`` is the one call the web app makes: it records an ``audit_jobs`` row and
hands the job to a small thread pool in this process. The job runs the same pipeline as the
``audit`` command (ectrust/pipeline.py: the crawl in a child process, judging here) and
writes its progress to the row, which the job page reads. A later queue (e.g. Celery
workers) replaces ``_submit`` only: the row and ``run_audit_job`` stay as they are.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from audits.account_models import AuditJob
from audits.changes import record_changes
from audits.db import Store
from audits.evidence import BlobStore
from audits.models import Site, utcnow
from ectrust.config import Settings

logger = logging.getLogger(__name__)
WORKERS = 2  # crawls are heavy (a child process, maybe a browser); the machine is shared
RENDER_CHOICES = ("auto", "never", "always")
_queue: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()
_workers: list[threading.Thread] = []
_lock = threading.Lock()


class JobError(ValueError):
    pass


def _worker() -> None:
    while True:
        fn, args = _queue.get()
        try:
            fn(*args)
        finally:
            _queue.task_done()


def _submit(fn: Callable[..., Any], *args: Any) -> None:
    """Hand a job to the in-process workers. They are daemon threads: stopping the server
    does not wait for a crawl to end (the crawl child dies with us, PR_SET_PDEATHSIG, and
    the next start marks the job failed: ``fail_abandoned_jobs``)."""
    with _lock:
        while len(_workers) < WORKERS:
            thread = threading.Thread(target=_worker, name="audit-job", daemon=True)
            thread.start()
            _workers.append(thread)
    _queue.put((fn, args))


def start_audit_job(
    store: Store,
    settings: Settings,
    domain: str,
    requested_by: str,
    *,
    render: str = "auto",
    max_pages: int = 30,
) -> int:
    """Queue an audit of one registered site; returns the job id at once."""
    if render not in RENDER_CHOICES:
        raise JobError(f"render {render!r}: one of {', '.join(RENDER_CHOICES)}")
    if not 1 <= max_pages <= 500:
        raise JobError("pages per site: 1 to 500")
    with store.session() as session:
        site = session.scalar(select(Site).where(Site.domain == domain, Site.registered.is_(True)))
        if site is None:
            raise JobError(f"not registered: {domain}")
        job = AuditJob(
            site_id=site.id, render=render, max_pages=max_pages, requested_by=requested_by
        )
        session.add(job)
        session.flush()
        job_id = job.id
    _submit(run_audit_job, store, settings, job_id)
    return job_id


def _update(store: Store, job_id: int, **values: Any) -> None:
    with store.session() as session:
        session.execute(update(AuditJob).where(AuditJob.id == job_id).values(**values))


def run_audit_job(store: Store, settings: Settings, job_id: int) -> None:
    """Run one queued job to its end; never raises (the outcome is in the row)."""
    from audits.rulepack import load_rules
    from ectrust.pipeline import CrawlOptions, run_audits

    with store.session(readonly=True) as session:
        job = session.get(AuditJob, job_id)
        domain = session.get(Site, job.site_id).domain
        render, max_pages = job.render, job.max_pages
    _update(store, job_id, status="running", stage="crawling", started_at=utcnow())
    try:
        if render != "never":
            from crawler.egress import browser_problem

            problem = browser_problem()
            if problem:
                raise JobError(f"rendering {render}: {problem}; audit without rendering")
        options = CrawlOptions(
            max_pages=max_pages, connect_to=list(settings.connect_to), render=render
        )
        if os.environ.get("ECTRUST_BROKER"):
            audit_id = _audit_on_workers(store, job_id, domain, options)
        else:

            def on_progress(kind: str, info: dict[str, Any]) -> None:
                if kind == "crawled":
                    _update(store, job_id, stage="judging", crawl_id=info.get("crawl_id"))

            result = run_audits(store, settings, [domain], load_rules(), options, on_progress)
            audit_id = result.audit_ids[0]
        with store.session() as session:
            # Like a scheduled check: the changes since the previous audit feed the
            # dashboard and the alert digest.
            record_changes(session, audit_id, BlobStore(settings.home))
        _update(store, job_id, status="done", stage="", audit_id=audit_id, finished_at=utcnow())
    except Exception as exc:  # the job page shows what went wrong
        logger.exception("audit job %d failed", job_id)
        _update(
            store,
            job_id,
            status="failed",
            stage="",
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=utcnow(),
        )


def _audit_on_workers(store: Store, job_id: int, domain: str, options: Any) -> int:
    """With ``$ECTRUST_BROKER`` set the deployment audits on ``ectrust worker``s (issue #10):
    this thread only enqueues the site and waits, so the server keeps no crawl of its own and
    the per-host politeness locks cover web-started audits too."""
    from dataclasses import asdict

    from ectrust.config import BrokerConfig
    from ectrust.distributed import check_broker, enqueue, make_app, wait_for

    cfg = BrokerConfig.from_env()
    check_broker(cfg)
    app = make_app(cfg)
    (job,) = enqueue(app, [domain], asdict(options), None)
    _update(store, job_id, stage="queued")
    (outcome,) = wait_for(app, [job])
    if outcome.audit_id is None:
        raise JobError(f"worker job {job.job_id}: {outcome.error}")
    return outcome.audit_id


def fail_abandoned_jobs(store: Store) -> int:
    """At server start: jobs a previous server process left queued or running will never
    finish (their thread is gone); mark them failed so nobody waits for them."""
    with store.session() as session:
        result = session.execute(
            update(AuditJob)
            .where(AuditJob.status.in_(("queued", "running")))
            .values(
                status="failed",
                error="the server stopped before the job finished",
                finished_at=utcnow(),
            )
        )
        return result.rowcount or 0
