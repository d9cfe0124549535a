"""What the evaluators' pages show, read from the store with the library functions the CLI
and the reports use (registry, certificates, cadence, changes, sightings). Plain data out:
the templates get no database objects."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from audits.account_models import AuditJob
from audits.certificates import certificate_record
from audits.changes import compare, load_record, previous_audit
from audits.db import Store
from audits.evidence import BlobStore
from audits.judge import finding_document
from audits.models import Audit, BadgeCheck, Certificate, Crawl, Finding, Site, Snapshot
from audits.monitoring_models import Change
from audits.overrides import overrides_for
from audits.registry import site_record
from audits.sightings import sighting_queue
from ectrust.config import Settings

logger = logging.getLogger(__name__)
FAILING = {"fail", "error"}
EXPIRY_WARNING_DAYS = 30
RECENT_DAYS = 14


def schedule_states(store: Store, settings: Settings) -> dict[str, dict[str, Any]]:
    """domain -> its re-check plan (ectrust/scheduler.py's ``schedule list``)."""
    from audits.cadence import CadenceConfigError, Policy
    from ectrust.scheduler import schedule_listing, utcnow

    try:
        policy = Policy.from_env(settings.home)
    except CadenceConfigError:
        logger.exception("cadence configuration unreadable; no due dates shown")
        return {}
    return {r["domain"]: r for r in schedule_listing(store, policy, utcnow())}


def _latest_audits(session: Session) -> dict[int, Audit]:
    ids = select(func.max(Audit.id)).where(Audit.kind == "audit").group_by(Audit.site_id)
    return {a.site_id: a for a in session.scalars(select(Audit).where(Audit.id.in_(ids)))}


def effective_status(finding: Finding, overrides: list[Any]) -> str:
    return overrides[-1].status if overrides else finding.status


def site_rows(store: Store, settings: Settings, today: date) -> list[dict[str, Any]]:
    plans = schedule_states(store, settings)
    with store.session(readonly=True) as session:
        sites = session.scalars(
            select(Site)
            .where(Site.registered.is_(True))
            .options(selectinload(Site.certificates))
            .order_by(Site.domain)
        ).all()
        latest = _latest_audits(session)
        findings = session.scalars(
            select(Finding).where(Finding.audit_id.in_([a.id for a in latest.values()]))
        ).all()
        overrides = overrides_for(session, [f.id for f in findings])
        failing: dict[int, int] = {}
        for f in findings:
            if effective_status(f, overrides[f.id]) in FAILING:
                failing[f.audit_id] = failing.get(f.audit_id, 0) + 1
        rows = []
        for site in sites:
            audit = latest.get(site.id)
            plan = plans.get(site.domain) or {}
            rows.append(
                {
                    **site_record(site, today),
                    "audit_id": audit.id if audit else None,
                    "audited_at": audit.started_at if audit else None,
                    "score": audit.score if audit else None,
                    "failing": failing.get(audit.id, 0) if audit else 0,
                    "schedule": plan.get("state"),
                    "due_at": plan.get("due_at"),
                }
            )
    return rows


def filter_rows(rows: list[dict[str, Any]], args: dict[str, str]) -> list[dict[str, Any]]:
    out = rows
    if args.get("status"):
        out = [r for r in out if r["status"] == args["status"]]
    if args.get("tier"):
        out = [r for r in out if r["badge"] == args["tier"]]
    if args.get("industry"):
        out = [r for r in out if r["industry"] == args["industry"]]
    if args.get("due"):
        out = [r for r in out if r["schedule"] in ("due", "overdue")]
    if args.get("failing"):
        out = [r for r in out if r["failing"]]
    return out


def findings_view(session: Session, audit: Audit) -> list[dict[str, Any]]:
    """An audit's findings for display: the original result, every override (who, when,
    why) and the status in force; each evidence item with the stored page it quotes."""
    rows = session.scalars(
        select(Finding).where(Finding.audit_id == audit.id).order_by(Finding.id)
    ).all()
    overrides = overrides_for(session, [f.id for f in rows])
    stored = dict(
        session.execute(
            select(Snapshot.url, Snapshot.content_hash).where(
                Snapshot.crawl_id == audit.crawl_id, Snapshot.content_hash.is_not(None)
            )
        ).all()
    )
    out = []
    for f in rows:
        doc = finding_document(f, "en")
        doc["title_zh"] = (f.title or {}).get("zh", "")
        doc["guidance_zh"] = (f.guidance or {}).get("zh", "")
        for item in doc["evidence"]:
            item["stored"] = stored.get(item.get("url") or "")
        doc["overrides"] = [
            {"status": o.status, "reason": o.reason, "actor": o.actor, "at": o.created_at}
            for o in overrides[f.id]
        ]
        doc["in_force"] = effective_status(f, overrides[f.id])
        out.append(doc)
    order = {"fail": 0, "error": 1, "review": 2, "warn": 3, "pass": 4, "not_applicable": 5}
    out.sort(key=lambda d: (order.get(d["in_force"], 9), d["rule_id"]))
    return out


def audit_summary(audit: Audit) -> dict[str, Any]:
    return {
        "audit_id": audit.id,
        "kind": audit.kind,
        "started_at": audit.started_at,
        "finished_at": audit.finished_at,
        "score": audit.score,
        "reachable": audit.reachable,
        "crawl_status": audit.crawl.status,
        "pages": audit.crawl.pages_fetched,
    }


def site_detail(store: Store, settings: Settings, domain: str, today: date) -> dict[str, Any]:
    blobs = BlobStore(settings.home)
    with store.session(readonly=True) as session:
        site = session.scalar(
            select(Site).where(Site.domain == domain).options(selectinload(Site.certificates))
        )
        if site is None:
            raise LookupError(domain)
        cert = site.current_certificate
        audits = session.scalars(
            select(Audit).where(Audit.site_id == site.id).order_by(Audit.id.desc())
        ).all()
        latest = next((a for a in audits if a.kind == "audit"), audits[0] if audits else None)
        changes = None
        if latest is not None:
            prev = previous_audit(session, latest)
            after = load_record(session, latest, blobs)
            before = load_record(session, prev, blobs) if prev is not None else None
            changes = {
                "previous_audit_id": prev.id if prev else None,
                "items": compare(before, after) if before is not None else [],
            }
        jobs = session.scalars(
            select(AuditJob)
            .where(AuditJob.site_id == site.id)
            .order_by(AuditJob.id.desc())
            .limit(10)
        ).all()
        return {
            "site": site_record(site, today),
            "certificate": certificate_record(cert, today) if cert else None,
            "audits": [audit_summary(a) for a in audits],
            "latest": audit_summary(latest) if latest else None,
            "findings": findings_view(session, latest) if latest else [],
            "changes": changes,
            "jobs": [job_view(session, j) for j in jobs],
        }


def job_view(session: Session, job: AuditJob) -> dict[str, Any]:
    site = session.get(Site, job.site_id)
    pages = 0
    crawl_id = job.crawl_id
    if crawl_id is None and job.started_at is not None and job.status == "running":
        crawl_id = session.scalar(
            select(func.max(Crawl.id)).where(
                Crawl.site_id == job.site_id, Crawl.started_at >= job.started_at
            )
        )
    if crawl_id is not None:
        pages = (
            session.scalar(
                select(func.count(Snapshot.id)).where(
                    Snapshot.crawl_id == crawl_id, Snapshot.status.is_not(None)
                )
            )
            or 0
        )
    return {
        "id": job.id,
        "domain": site.domain,
        "status": job.status,
        "stage": job.stage,
        "render": job.render,
        "max_pages": job.max_pages,
        "pages": pages,
        "audit_id": job.audit_id,
        "error": job.error,
        "requested_by": job.requested_by,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def dashboard(store: Store, settings: Settings, today: date) -> dict[str, Any]:
    """What needs attention today."""
    plans = schedule_states(store, settings)
    since = datetime.combine(today - timedelta(days=RECENT_DAYS), time.min, tzinfo=UTC)
    with store.session(readonly=True) as session:
        regressions = [
            {
                "domain": site.domain,
                "rule_id": ch.rule_id,
                "title": (ch.detail or {}).get("title", ""),
                "before": ((ch.detail or {}).get("before") or {}).get("status"),
                "after": ((ch.detail or {}).get("after") or {}).get("status"),
                "audit_id": ch.audit_id,
                "at": ch.created_at,
            }
            for ch, site in session.execute(
                select(Change, Site)
                .join(Site, Site.id == Change.site_id)
                .where(Change.kind.in_(("regression", "unreachable")), Change.created_at >= since)
                .order_by(Change.id.desc())
            ).all()
        ]
        queue = sighting_queue(session)
        misuse = session.scalars(
            select(BadgeCheck)
            .where(BadgeCheck.misuse.is_(True), BadgeCheck.created_at >= since)
            .order_by(BadgeCheck.id.desc())
        ).all()
        horizon = today + timedelta(days=EXPIRY_WARNING_DAYS)
        expiring = session.execute(
            select(Certificate, Site)
            .join(Site)
            .where(
                Certificate.status == "certified",
                Certificate.valid_until.is_not(None),
                Certificate.valid_until >= today,
                Certificate.valid_until <= horizon,
            )
            .order_by(Certificate.valid_until)
        ).all()
        running = session.scalars(
            select(AuditJob).where(AuditJob.status.in_(("queued", "running")))
        ).all()
        return {
            "regressions": regressions,
            "overdue": [p for p in plans.values() if p["state"] in ("overdue", "due")],
            "sightings": [
                {
                    "domain": q.domain,
                    "url": q.url,
                    "cert_ids": q.cert_ids,
                    "count": q.sightings,
                    "last_seen": q.last_seen,
                }
                for q in queue
            ],
            "misuse": [
                {
                    "domain": b.domain,
                    "url": b.url,
                    "verdict": b.verdict,
                    "certificate_id": b.certificate_id,
                    "at": b.created_at,
                }
                for b in misuse
            ],
            "expiring": [
                {
                    "cert_id": c.cert_id,
                    "domain": s.domain,
                    "holder": s.name,
                    "valid_until": c.valid_until,
                    "days": (c.valid_until - today).days,
                }
                for c, s in expiring
            ],
            "jobs": [job_view(session, j) for j in running],
        }
