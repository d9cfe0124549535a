"""Monitoring figures for a period, for the monitoring report (issue #8 renders them).

``monitoring_data`` returns plain data (JSON-serialisable) read from the store: the
scheduled checks and crawl audits in the period, the changes found between audits
(audits/changes.py), and the sites overdue at the end of the period.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from audits.cadence import Policy, SiteState, plan_site
from audits.db import Store
from audits.models import Audit, Site
from audits.monitoring_models import Change, ScheduledCheck


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else _utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def monitoring_data(
    store: Store,
    since: datetime,
    until: datetime,
    policy: Policy | None = None,
) -> dict[str, Any]:
    """Everything the monitoring report shows for ``since`` <= t < ``until`` (UTC).

    Shape (every timestamp an ISO 8601 UTC string)::

        {
          "period": {"since": str, "until": str},
          "totals": {"sites_monitored": int,   # sites on a cadence at ``until``
                     "sites_checked": int,     # distinct sites with a crawl audit in the period
                     "audits": int, "checks_scheduled": int,
                     "checks_failed": int,     # scheduled checks timed out or failed
                     "overdue": int, "regressions": int, "fixes": int,
                     "badge_changes": int, "policy_changes": int, "unreachable": int},
          "sites": [{"domain", "name", "certificate_id", "certificate_status", "tier",
                     "audits": [{"audit_id", "started_at", "score", "reachable"}],
                     "regressions": int, "fixes": int, "last_score": float | None,
                     "badge": str | None,       # last badge verdict in the period
                     "next_due": str | None, "state": "due|overdue|planned|on_demand"}],
          "checks": [{"domain", "scheduled_for", "started_at", "finished_at", "status",
                      "trigger", "reason", "audit_id", "error"}],
          "overdue": [{"domain", "due_at", "reason", "overdue_hours": float}],
          "regressions": [CHANGE], "fixes": [CHANGE], "evidence_changes": [CHANGE],
          "badge_changes": [CHANGE], "policy_changes": [CHANGE], "unreachable": [CHANGE],
        }

    where CHANGE is ``{"change_id", "domain", "kind", "rule_id", "audit_id",
    "previous_audit_id", "found_at", "detail"}``; ``detail`` is audits/changes.py's:
    for regressions and fixes ``{"title", "severity", "before": {"audit_id", "status",
    "message", "evidence": [...]}, "after": {...}}``; for badge changes ``{"before",
    "after", "before_audit_id", "after_audit_id"}``; for policy changes the sentence counts,
    ``added``/``removed`` sentences, ``ratio`` and ``significant``; for unreachable
    ``{"streak", "message"}``.
    """
    policy = policy or Policy()
    since, until = _utc(since), _utc(until)
    with store.session(readonly=True) as session:
        sites = {
            s.id: s
            for s in session.scalars(
                select(Site)
                .where(Site.registered.is_(True))
                .options(selectinload(Site.certificates))
            )
        }
        audits = session.scalars(
            select(Audit)
            .where(Audit.kind == "audit", Audit.started_at >= since, Audit.started_at < until)
            .order_by(Audit.id)
        ).all()
        checks = session.scalars(
            select(ScheduledCheck)
            .where(ScheduledCheck.started_at >= since, ScheduledCheck.started_at < until)
            .order_by(ScheduledCheck.id)
        ).all()
        changes = session.scalars(
            select(Change)
            .where(Change.created_at >= since, Change.created_at < until)
            .order_by(Change.id)
        ).all()
        last_audit: dict[int, datetime] = {}
        for site_id, started in session.execute(
            select(Audit.site_id, Audit.started_at).where(
                Audit.kind == "audit", Audit.started_at < until
            )
        ):
            t = _utc(started)
            if site_id not in last_audit or t > last_audit[site_id]:
                last_audit[site_id] = t
        for site_id, started in session.execute(
            select(ScheduledCheck.site_id, ScheduledCheck.started_at).where(
                ScheduledCheck.status == "done", ScheduledCheck.started_at < until
            )
        ):
            t = _utc(started)
            if site_id not in last_audit or t > last_audit[site_id]:
                last_audit[site_id] = t

        rows: dict[int, dict[str, Any]] = {}
        overdue = []
        for site in sorted(sites.values(), key=lambda s: s.domain):
            cert = site.current_certificate
            status = cert.effective_status(until.date()) if cert else "applicant"
            plan = plan_site(
                SiteState(
                    site.id,
                    site.domain,
                    status,
                    cert.tier if cert else None,
                    cert.valid_until if cert else None,
                    last_audit.get(site.id),
                    _utc(site.created_at) if site.created_at else None,
                ),
                policy,
                until,
            )
            rows[site.id] = {
                "domain": site.domain,
                "name": site.name,
                "certificate_id": cert.cert_id if cert else None,
                "certificate_status": status,
                "tier": cert.tier if cert else None,
                "audits": [],
                "regressions": 0,
                "fixes": 0,
                "last_score": None,
                "badge": None,
                "next_due": _iso(plan.due_at) if plan else None,
                "state": plan.state if plan else "on_demand",
            }
            if plan is not None and plan.state == "overdue":
                overdue.append(
                    {
                        "domain": site.domain,
                        "due_at": _iso(plan.due_at),
                        "reason": plan.reason,
                        "overdue_hours": round((until - plan.due_at).total_seconds() / 3600, 1),
                    }
                )
        for a in audits:
            row = rows.get(a.site_id)
            if row is None:
                continue
            row["audits"].append(
                {
                    "audit_id": a.id,
                    "started_at": _iso(a.started_at),
                    "score": a.score,
                    "reachable": a.reachable,
                }
            )
            row["last_score"] = a.score
            row["badge"] = ((a.summary or {}).get("badge") or {}).get("verdict")
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for c in changes:
            domain = sites[c.site_id].domain if c.site_id in sites else None
            by_kind.setdefault(c.kind, []).append(
                {
                    "change_id": c.id,
                    "domain": domain,
                    "kind": c.kind,
                    "rule_id": c.rule_id,
                    "audit_id": c.audit_id,
                    "previous_audit_id": c.previous_audit_id,
                    "found_at": _iso(c.created_at),
                    "detail": c.detail,
                }
            )
            if c.site_id in rows and c.kind in ("regression", "fix"):
                rows[c.site_id]["fixes" if c.kind == "fix" else "regressions"] += 1
        check_rows = [
            {
                "domain": sites[c.site_id].domain if c.site_id in sites else None,
                "scheduled_for": _iso(c.scheduled_for),
                "started_at": _iso(c.started_at),
                "finished_at": _iso(c.finished_at),
                "status": c.status,
                "trigger": c.trigger,
                "reason": c.reason,
                "audit_id": c.audit_id,
                "error": c.error,
            }
            for c in checks
        ]
    return {
        "period": {"since": _iso(since), "until": _iso(until)},
        "totals": {
            "sites_monitored": sum(1 for r in rows.values() if r["state"] != "on_demand"),
            "sites_checked": len({a.site_id for a in audits}),
            "audits": len(audits),
            "checks_scheduled": len(checks),
            "checks_failed": sum(1 for c in checks if c.status in ("timed_out", "failed")),
            "overdue": len(overdue),
            "regressions": len(by_kind.get("regression", [])),
            "fixes": len(by_kind.get("fix", [])),
            "badge_changes": len(by_kind.get("badge_changed", [])),
            "policy_changes": len(by_kind.get("policy_changed", [])),
            "unreachable": len(by_kind.get("unreachable", [])),
        },
        "sites": list(rows.values()),
        "checks": check_rows,
        "overdue": overdue,
        "regressions": by_kind.get("regression", []),
        "fixes": by_kind.get("fix", []),
        "evidence_changes": by_kind.get("evidence_changed", []),
        "badge_changes": by_kind.get("badge_changed", []),
        "policy_changes": by_kind.get("policy_changed", []),
        "unreachable": by_kind.get("unreachable", []),
    }
