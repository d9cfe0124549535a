"""The re-check scheduler (``ectrust schedule run``), ``schedule list`` and ``audit --due``.

- **APScheduler** (3.x) runs the jobs; its SQLAlchemy job store keeps them in the project's
  own database (table ``apscheduler_jobs``, created by the migration). Each site checked on
  a cadence has one interval job on its own staggered grid (audits/cadence.py), plus a
  one-off job before its certificate expires and a retry job after a failed check. Jobs
  coalesce (a scheduler that was down across several check times runs each site once) and
  have ``max_instances=1`` (a check still running when the next time comes is skipped and
  logged); a missed check older than ``misfire_grace_hours`` is skipped, logged, and shown
  as overdue by ``schedule list`` until ``audit --due`` or the next slot runs it.
- **One scheduler per database**: a lease row (``scheduler_lease``) names the owner and
  when the lease runs out; it is renewed while the scheduler lives. A second scheduler
  refuses to start while the lease is current and takes over a stale one (a killed
  scheduler never releases it). ``UNIQUE(site_id, scheduled_for)`` on ``scheduled_checks``
  is the second line: even a forced second scheduler cannot run one check twice.
- **A child process per audit** (``python -m ectrust audit DOMAIN --json``) in its own
  process group, killed with the whole group (the crawler grandchild included) when it
  overruns ``audit_time_limit_s``. The crawl inside gets a shorter limit, so normally a slow
  site ends as a partial audit and the hard kill is the last resort for a hung judge. A
  killed or failed check is recorded and retried after ``retry_after_minutes``.
- After each audit the changes since the site's previous audit are stored
  (audits/changes.py); every ``digest_minutes`` they are sent as one digest (ectrust/alerts.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from audits.cadence import Plan, Policy, SiteState, anchor, expiry_slot, plan_site
from audits.changes import record_changes
from audits.db import Store
from audits.evidence import BlobStore
from audits.models import Audit, Crawl, Site
from audits.monitoring_models import (
    APSCHEDULER_TABLE,
    ScheduledCheck,
    SchedulerLease,
    apscheduler_jobs,
)
from ectrust.alerts import AlertSettings, flush_alerts
from ectrust.config import Settings
from ectrust.pipeline import PROJECT_ROOT

logger = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(dt: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class SchedulerBusy(Exception):
    """Another scheduler holds this database's lease (exit status 3)."""


# -- the lease ------------------------------------------------------------------------------
def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def acquire_lease(store: Store, owner: str, now: datetime, ttl: timedelta) -> str | None:
    """Take the lease, or raise SchedulerBusy. Returns the previous owner when a stale
    lease was taken over."""
    try:
        with store.session() as session:
            row = session.get(SchedulerLease, LEASE_NAME, with_for_update=True)
            if row is None:
                session.add(
                    SchedulerLease(
                        name=LEASE_NAME, owner=owner, acquired_at=now, expires_at=now + ttl
                    )
                )
                return None
            expires = as_utc(row.expires_at)
            if row.owner != owner and expires > now:
                raise SchedulerBusy(
                    f"another scheduler is running on this database ({row.owner}, since "
                    f"{as_utc(row.acquired_at):%Y-%m-%d %H:%M:%S} UTC; its lease runs until "
                    f"{expires:%H:%M:%S} UTC). Stop it first; a scheduler that was killed "
                    "loses its lease when that time has passed."
                )
            previous = row.owner if row.owner != owner else None
            row.owner, row.acquired_at, row.expires_at = owner, now, now + ttl
            return previous
    except IntegrityError as exc:  # two schedulers inserting the first lease at once
        raise SchedulerBusy("another scheduler took the lease at the same moment") from exc


def renew_lease(store: Store, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Extend our lease; False when it is no longer ours (taken over after expiring)."""
    with store.session() as session:
        return bool(
            session.execute(
                update(SchedulerLease)
                .where(SchedulerLease.name == LEASE_NAME, SchedulerLease.owner == owner)
                .values(expires_at=now + ttl)
            ).rowcount
        )


def release_lease(store: Store, owner: str) -> None:
    with store.session() as session:
        row = session.get(SchedulerLease, LEASE_NAME)
        if row is not None and row.owner == owner:
            session.delete(row)


# -- due computation over the registry -----------------------------------------------------
def site_states(store: Store, now: datetime) -> list[SiteState]:
    """Every registered site with what the cadence needs. The last check is the later of
    its last crawl audit and its last finished scheduled check."""
    with store.session(readonly=True) as session:
        last_audit = dict(
            session.execute(
                select(Audit.site_id, func.max(Audit.started_at))
                .where(Audit.kind == "audit")
                .group_by(Audit.site_id)
            ).all()
        )
        last_done = dict(
            session.execute(
                select(ScheduledCheck.site_id, func.max(ScheduledCheck.started_at))
                .where(ScheduledCheck.status == "done")
                .group_by(ScheduledCheck.site_id)
            ).all()
        )
        sites = session.scalars(
            select(Site)
            .where(Site.registered.is_(True))
            .options(selectinload(Site.certificates))
            .order_by(Site.domain)
        ).all()
        states = []
        for site in sites:
            cert = site.current_certificate
            checks = [as_utc(t) for t in (last_audit.get(site.id), last_done.get(site.id)) if t]
            states.append(
                SiteState(
                    site_id=site.id,
                    domain=site.domain,
                    status=cert.effective_status(now.date()) if cert else "applicant",
                    tier=cert.tier if cert else None,
                    valid_until=cert.valid_until if cert else None,
                    last_check=max(checks) if checks else None,
                    registered_at=as_utc(site.created_at) if site.created_at else None,
                )
            )
        return states


def plans(store: Store, policy: Policy, now: datetime) -> list[tuple[SiteState, Plan | None]]:
    return [(s, plan_site(s, policy, now)) for s in site_states(store, now)]


def schedule_listing(store: Store, policy: Policy, now: datetime) -> list[dict[str, Any]]:
    """``schedule list``: every registered site, its next check and the last one's outcome."""
    with store.session(readonly=True) as session:
        next_runs = {
            row.id: row.next_run_time
            for row in session.execute(
                select(apscheduler_jobs.c.id, apscheduler_jobs.c.next_run_time)
            )
        }
        latest = {}
        for check in session.scalars(select(ScheduledCheck).order_by(ScheduledCheck.id)):
            latest[check.site_id] = check
    rows = []
    for state, plan in plans(store, policy, now):
        record: dict[str, Any] = {
            "domain": state.domain,
            "certificate_status": state.status,
            "tier": state.tier,
            "state": plan.state if plan else "on_demand",
            "reason": plan.reason if plan else None,
            "due_at": plan.as_dict()["due_at"] if plan else None,
            "interval_days": plan.interval_days if plan else None,
            "last_check": plan.as_dict()["last_check"] if plan else None,
            "scheduler_next_run": None,
            "last_scheduled_check": None,
        }
        nxt = [t for k, t in next_runs.items() if k.split(":")[-1] == str(state.site_id) and t]
        if nxt:
            record["scheduler_next_run"] = datetime.fromtimestamp(min(nxt), UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        check = latest.get(state.site_id)
        if check is not None:
            record["last_scheduled_check"] = {
                "status": check.status,
                "scheduled_for": as_utc(check.scheduled_for).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "audit_id": check.audit_id,
                "error": check.error,
            }
        rows.append(record)
    order = {"overdue": 0, "due": 1, "planned": 2, "on_demand": 3}
    rows.sort(key=lambda r: (order[r["state"]], r["due_at"] or "", r["domain"]))
    return rows


# -- one check -------------------------------------------------------------------------------
def claim_check(store: Store, site_id: int, plan: Plan, trigger: str, now: datetime) -> int | None:
    """Record that a check starts; None when this due time was already checked or is being
    checked (UNIQUE(site_id, scheduled_for)). A due time whose check failed or was killed is
    checked again under the time of the retry."""
    scheduled_for = plan.due_at
    with store.session(readonly=True) as session:
        earlier = session.scalars(
            select(ScheduledCheck).where(
                ScheduledCheck.site_id == site_id, ScheduledCheck.scheduled_for == scheduled_for
            )
        ).first()
        if earlier is not None:
            if earlier.status in ("done", "running"):
                return None
            scheduled_for = now.replace(microsecond=0)
    try:
        with store.session() as session:
            check = ScheduledCheck(
                site_id=site_id,
                scheduled_for=scheduled_for,
                reason=plan.reason if earlier is None else "retry",
                trigger=trigger,
                status="running",
                started_at=now,
            )
            session.add(check)
            session.flush()
            return check.id
    except IntegrityError:
        logger.info("check of site %d for %s already claimed", site_id, scheduled_for)
        return None


def finish_check(
    store: Store,
    check_id: int,
    status: str,
    now: datetime,
    audit_id: int | None = None,
    error: str = "",
    blobs: BlobStore | None = None,
) -> int:
    """Close a check; for a finished audit, store its changes. Returns the changes found."""
    found = 0
    with store.session() as session:
        check = session.get(ScheduledCheck, check_id)
        check.status, check.finished_at, check.audit_id, check.error = status, now, audit_id, error
        if audit_id is not None and blobs is not None:
            found = len(record_changes(session, audit_id, blobs))
    return found


@dataclass
class CheckOutcome:
    check_id: int
    domain: str
    status: str  # done | timed_out | failed
    audit_id: int | None
    changes: int
    error: str = ""


class ChildAuditRunner:
    """Runs one audit in a child process with a hard time limit."""

    def __init__(self, settings: Settings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy

    def command(self, domain: str) -> list[str]:
        crawl_limit = max(1.0, self.policy.audit_time_limit_s * 0.8)
        return [
            sys.executable,
            "-m",
            "ectrust",
            "audit",
            domain,
            "--json",
            "--max-pages",
            str(self.policy.max_pages),
            "--time-limit",
            f"{crawl_limit:.0f}",
        ]

    def __call__(self, domain: str) -> tuple[str, int | None, str]:
        """(status, audit id, error) for one audit of ``domain``."""
        env = dict(os.environ)
        env.update(
            ECTRUST_DB=self.settings.db_url,
            ECTRUST_HOME=str(self.settings.home),
            PYTHONPATH=os.pathsep.join(
                p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
            ),
        )
        log_dir = self.settings.home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"check-{domain}-{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                self.command(domain),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=True,  # its own process group: the crawler dies with it
            )
            try:
                stdout, _ = proc.communicate(timeout=self.policy.audit_time_limit_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return (
                    "timed_out",
                    None,
                    f"audit exceeded its time limit of {self.policy.audit_time_limit_s:g}s "
                    f"and was killed; log: {log_path}",
                )
        if proc.returncode != 0:
            return "failed", None, f"audit exited with status {proc.returncode}; log: {log_path}"
        try:
            audit_id = int(json.loads(stdout)["audits"][0]["audit_id"])
        except (ValueError, KeyError, IndexError, TypeError):
            return "failed", None, f"unexpected audit output; log: {log_path}"
        return "done", audit_id, ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def mark_abandoned_crawls(store: Store, site_id: int, since: datetime, now: datetime) -> None:
    """A killed audit leaves its crawl 'running'; say what happened to it."""
    with store.session() as session:
        session.execute(
            update(Crawl)
            .where(Crawl.site_id == site_id, Crawl.status == "running", Crawl.started_at >= since)
            .values(status="timed_out", finished_at=now)
        )


# -- the scheduler ----------------------------------------------------------------------------
_ACTIVE: Monitor | None = None


def run_site_check(site_id: int) -> None:
    """APScheduler job (referenced by name in the persistent job store)."""
    if _ACTIVE is None:
        logger.error("no scheduler is active in this process; job for site %d ignored", site_id)
        return
    _ACTIVE.check_site(site_id)


def _maintenance(task: str) -> None:
    if _ACTIVE is not None:
        getattr(_ACTIVE, task)()


class Monitor:
    """``ectrust schedule run``: APScheduler over the registry, with the lease held."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        policy: Policy,
        alerts: AlertSettings,
        *,
        clock: Clock = utcnow,
        runner: Callable[[str], tuple[str, int | None, str]] | None = None,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.policy = policy
        self.alerts = alerts
        self.clock = clock
        self.runner = runner or ChildAuditRunner(settings, policy)
        self.owner = owner or default_owner()
        self.blobs = BlobStore(settings.home)
        self._stopped = threading.Event()
        # What happened, for `wait_for` (tests, and anyone embedding the scheduler).
        self.events: list[tuple[int, str]] = []
        self._changed = threading.Condition()
        self.scheduler: BaseScheduler | None = None
        self.outcomes: list[CheckOutcome] = []
        self._running_sites: set[int] = set()
        self._lock = threading.Lock()
        self.lost_lease = False

    # lifecycle
    def start(self) -> None:
        global _ACTIVE
        ttl = timedelta(seconds=self.policy.lease_seconds)
        previous = acquire_lease(self.store, self.owner, self.clock(), ttl)
        if previous:
            logger.warning("took over the expired lease of scheduler %s", previous)
        _ACTIVE = self
        self.scheduler = BackgroundScheduler(
            jobstores={
                "default": MemoryJobStore(),
                "sites": SQLAlchemyJobStore(engine=self.store.engine, tablename=APSCHEDULER_TABLE),
            },
            executors={"default": ThreadPoolExecutor(max_workers=self.policy.workers + 2)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(self.policy.misfire_grace_hours * 3600),
            },
            timezone=UTC,  # no DST: a local-time cron would run twice or not at all
        )
        self.scheduler.add_listener(
            self._on_event,
            EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR | EVENT_JOB_EXECUTED,
        )
        renew = max(1.0, self.policy.lease_seconds / 3)
        self.scheduler.add_job(
            _maintenance, IntervalTrigger(seconds=renew), args=["renew"], id="lease"
        )
        self.scheduler.add_job(_maintenance, IntervalTrigger(minutes=10), args=["sync"], id="sync")
        self.scheduler.add_job(
            _maintenance,
            IntervalTrigger(minutes=self.policy.digest_minutes),
            args=["flush"],
            id="alerts",
        )
        self.scheduler.start(paused=True)
        self.sync()
        self.scheduler.resume()
        logger.info("scheduler started (%s)", self.owner)

    def wait(self) -> None:
        """Block until the scheduler stops (a signal, or a lost lease)."""
        while self.scheduler is not None and self.scheduler.running:
            self._stopped.wait(1.0)

    def shutdown(self, wait: bool = True) -> None:
        global _ACTIVE
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        if not self.lost_lease:
            release_lease(self.store, self.owner)
        if _ACTIVE is self:
            _ACTIVE = None
        self._stopped.set()

    def _on_event(self, event: Any) -> None:
        if event.code == EVENT_JOB_MISSED:
            logger.warning(
                "missed check %s scheduled for %s (scheduler down longer than the misfire "
                "grace time); shown as overdue by `schedule list`, run by `audit --due`",
                event.job_id,
                getattr(event, "scheduled_run_time", "?"),
            )
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            logger.warning(
                "check %s still running at its next time %s: this run is skipped",
                event.job_id,
                ", ".join(str(t) for t in getattr(event, "scheduled_run_times", [])),
            )
        elif isinstance(event, JobExecutionEvent) and event.exception is not None:
            logger.error("job %s failed: %r", event.job_id, event.exception)
        with self._changed:
            self.events.append((event.code, event.job_id))
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Wait (real time) until ``predicate()`` holds after some job event."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    # jobs
    def renew(self) -> None:
        ttl = timedelta(seconds=self.policy.lease_seconds)
        if not renew_lease(self.store, self.owner, self.clock(), ttl):
            logger.error("this scheduler lost its lease to another one; stopping")
            self.lost_lease = True
            if self.scheduler is not None:
                threading.Thread(target=self.shutdown, kwargs={"wait": False}).start()

    def desired_jobs(self) -> dict[str, tuple[Any, bool]]:
        """Job id -> (trigger, run now) for every site on a cadence."""
        now = self.clock()
        out: dict[str, tuple[Any, bool]] = {}
        for state, plan in plans(self.store, self.policy, now):
            if plan is None:
                continue
            interval = self.policy.interval(state.tier, state.status)
            assert interval is not None
            trigger = IntervalTrigger(
                seconds=int(interval.total_seconds()),
                start_date=anchor(state.domain, interval),
                timezone=UTC,
            )
            out[f"site:{state.site_id}"] = (trigger, plan.state != "planned")
            if state.valid_until is not None:
                before = expiry_slot(state.domain, state.valid_until, self.policy)
                if before > now:
                    out[f"expiry:{state.site_id}"] = (DateTrigger(before, timezone=UTC), False)
        return out

    @staticmethod
    def _same(a: Any, b: Any) -> bool:
        if type(a) is not type(b):
            return False
        if isinstance(a, IntervalTrigger):
            return a.interval == b.interval and a.start_date == b.start_date
        return a.run_date == b.run_date

    def sync(self) -> dict[str, int]:
        """Bring the jobs in line with the registry and the policy. Jobs that exist and have
        not changed are left alone: their missed run times are what a restart catches up."""
        assert self.scheduler is not None
        desired = self.desired_jobs()
        existing = {j.id: j for j in self.scheduler.get_jobs(jobstore="sites")}
        counts = {"added": 0, "changed": 0, "removed": 0}
        now = self.clock()
        for job_id, (trigger, run_now) in desired.items():
            site_id = int(job_id.split(":")[1])
            job = existing.get(job_id)
            if job is not None and self._same(job.trigger, trigger):
                continue
            if job is not None:
                counts["changed"] += 1
                self.scheduler.reschedule_job(job_id, jobstore="sites", trigger=trigger)
                continue
            counts["added"] += 1
            extra = {"next_run_time": now} if run_now else {}
            self.scheduler.add_job(
                run_site_check,
                trigger,
                args=[site_id],
                id=job_id,
                jobstore="sites",
                replace_existing=True,
                **extra,
            )
        for job_id in existing:
            if job_id not in desired and not job_id.startswith("retry:"):
                counts["removed"] += 1
                with contextlib.suppress(JobLookupError):
                    self.scheduler.remove_job(job_id, jobstore="sites")
        if any(counts.values()):
            logger.info("schedule synced: %s", counts)
        return counts

    def flush(self) -> dict[str, Any]:
        result = flush_alerts(self.store, self.alerts, self.clock())
        if result["digest_id"] or result["sent"] or result["failed"]:
            logger.info("alerts: %s", result)
        return result

    def check_site(self, site_id: int) -> CheckOutcome | None:
        """One job run: check the site if it is due (a manual audit since its time counts)."""
        with self._lock:
            if site_id in self._running_sites:
                logger.warning("site %d is being checked already; skipped", site_id)
                return None
            self._running_sites.add(site_id)
        try:
            return self._check_site(site_id)
        finally:
            with self._lock:
                self._running_sites.discard(site_id)

    def _check_site(self, site_id: int) -> CheckOutcome | None:
        now = self.clock()
        found = [(s, p) for s, p in plans(self.store, self.policy, now) if s.site_id == site_id]
        if not found or found[0][1] is None or found[0][1].state == "planned":
            logger.info("site %d is not due (checked since, or no longer on a cadence)", site_id)
            return None
        state, plan = found[0]
        assert plan is not None
        check_id = claim_check(self.store, site_id, plan, "scheduler", now)
        if check_id is None:
            return None
        logger.info("checking %s (%s, due %s)", state.domain, plan.reason, plan.due_at)
        status, audit_id, error = self.runner(state.domain)
        done = self.clock()
        if status != "done":
            mark_abandoned_crawls(self.store, site_id, now - timedelta(minutes=1), done)
        changes = finish_check(
            self.store, check_id, status, done, audit_id, error, self.blobs if audit_id else None
        )
        outcome = CheckOutcome(check_id, state.domain, status, audit_id, changes, error)
        if status != "done":
            retry_at = done + timedelta(minutes=self.policy.retry_after_minutes)
            logger.error("check of %s %s: %s; retry at %s", state.domain, status, error, retry_at)
            if self.scheduler is not None:
                self.scheduler.add_job(
                    run_site_check,
                    DateTrigger(retry_at, timezone=UTC),
                    args=[site_id],
                    id=f"retry:{site_id}",
                    jobstore="sites",
                    replace_existing=True,
                )
        else:
            logger.info("checked %s: audit %s, %d change(s)", state.domain, audit_id, changes)
        with self._changed:
            self.outcomes.append(outcome)
            self._changed.notify_all()
        return outcome


# -- audit --due -------------------------------------------------------------------------------
def run_due(
    store: Store,
    settings: Settings,
    policy: Policy,
    alerts: AlertSettings,
    audit: Callable[[list[str]], list[int]],
    now: datetime,
) -> tuple[list[int], list[CheckOutcome], dict[str, Any]]:
    """``audit --due``: claim every due check, audit those sites (``audit`` is the normal
    in-process pipeline, whose crawl child has its own time limit), store the changes and
    send one digest. Returns (audit ids, outcomes, alert result)."""
    claimed: list[tuple[int, str, int]] = []
    for state, plan in plans(store, policy, now):
        if plan is None or plan.state == "planned":
            continue
        check_id = claim_check(store, state.site_id, plan, "due", now)
        if check_id is not None:
            claimed.append((check_id, state.domain, state.site_id))
    if not claimed:
        return [], [], flush_alerts(store, alerts, now)
    blobs = BlobStore(settings.home)
    try:
        audit_ids = audit([domain for _, domain, _ in claimed])
    except BaseException as exc:
        for check_id, _, _ in claimed:
            finish_check(store, check_id, "failed", utcnow(), error=f"{type(exc).__name__}: {exc}")
        raise
    outcomes = []
    for (check_id, domain, _), audit_id in zip(claimed, audit_ids, strict=True):
        changes = finish_check(store, check_id, "done", now, audit_id, "", blobs)
        outcomes.append(CheckOutcome(check_id, domain, "done", audit_id, changes))
    return audit_ids, outcomes, flush_alerts(store, alerts, now)
