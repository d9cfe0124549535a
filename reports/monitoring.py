"""The monitoring report's numbers for a period: audits/monitoring.py's ``monitoring_data``
narrowed to a cohort (industry, certificate status) and completed with what a reader of the
report asks next: were the re-checks on time, which certificates were suspended or are about
to expire, which alerts went out, and is the evidence behind each regression still intact.

Plain data in, plain data out (JSON-serialisable); the template and the CSV/JSON exports
show the same dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from audits.cadence import Policy
from audits.db import Store
from audits.evidence import BlobStore
from audits.models import Certificate, CertificateEvent, Finding, Site
from audits.monitoring import monitoring_data
from audits.monitoring_models import AlertDelivery, AlertDigest, Change
from reports import integrity as integ

EXPIRY_WINDOW_DAYS = 30  # "expiring": valid_until within this many days after the period
CHANGE_KINDS = (
    "regression",
    "fix",
    "badge_changed",
    "policy_changed",
    "evidence_changed",
    "unreachable",
)
_LIST_OF_KIND = {
    "regression": "regressions",
    "fix": "fixes",
    "badge_changed": "badge_changes",
    "policy_changed": "policy_changes",
    "evidence_changed": "evidence_changes",
    "unreachable": "unreachable",
}


@dataclass(frozen=True)
class Period:
    since: date
    until: date  # inclusive
    industry: str | None = None
    status: str | None = None  # certificate status at the end of the period

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, datetime.min.time(), UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.until + timedelta(days=1), datetime.min.time(), UTC)

    def describe(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "industry": self.industry,
            "status": self.status,
        }


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else _utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str | None) -> datetime | None:
    return (
        None
        if value is None
        else datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    )


def _rechecks(checks: list[dict[str, Any]], policy: Policy) -> list[dict[str, Any]]:
    """Each scheduled re-check with how late it started against its due time; on time when
    it started within ``overdue_after_hours`` (the cadence's own line between due and
    overdue)."""
    out = []
    for c in checks:
        due, started = _parse(c["scheduled_for"]), _parse(c["started_at"])
        late_h = round((started - due).total_seconds() / 3600, 1) if due and started else None
        on_time = late_h is not None and late_h <= policy.overdue_after_hours
        out.append({**c, "late_hours": late_h, "on_time": on_time})
    return out


def _certificates(session: Any, sites: dict[str, Site], period: Period) -> dict[str, Any]:
    ids = {s.id: d for d, s in sites.items()}
    suspended = []
    for ev, cert in session.execute(
        select(CertificateEvent, Certificate)
        .join(Certificate, Certificate.id == CertificateEvent.certificate_id)
        .where(
            CertificateEvent.status == "suspended",
            CertificateEvent.at >= period.start,
            CertificateEvent.at < period.end,
        )
        .order_by(CertificateEvent.id)
    ):
        if cert.site_id in ids:
            suspended.append(
                {
                    "domain": ids[cert.site_id],
                    "certificate_id": cert.cert_id,
                    "at": _iso(ev.at),
                    "reason": ev.reason,
                    "status_now": cert.effective_status(period.until),
                }
            )
    expiring, expired = [], []
    horizon = period.until + timedelta(days=EXPIRY_WINDOW_DAYS)
    for domain, site in sorted(sites.items()):
        for cert in site.certificates:
            if cert.valid_until is None or cert.status == "revoked":
                continue
            entry = {
                "domain": domain,
                "certificate_id": cert.cert_id,
                "valid_until": cert.valid_until.isoformat(),
                "status": cert.effective_status(period.until),
            }
            if period.since <= cert.valid_until <= period.until:
                expired.append(entry)
            elif period.until < cert.valid_until <= horizon:
                days = (cert.valid_until - period.until).days
                expiring.append({**entry, "days_left": days})
    return {
        "suspended": suspended,
        "expiring": expiring,
        "expired": expired,
        "expiry_window_days": EXPIRY_WINDOW_DAYS,
    }


def _alerts(session: Any, period: Period, domains: set[str], names: dict[int, str]) -> dict:
    """Digests built in the period, their deliveries, and the changes of the cohort they
    carried. The target (an address or webhook URL, which may hold a token) is not shown."""
    digests = session.scalars(
        select(AlertDigest)
        .where(AlertDigest.created_at >= period.start, AlertDigest.created_at < period.end)
        .order_by(AlertDigest.id)
    ).all()
    ids = [d.id for d in digests]
    deliveries = (
        session.scalars(
            select(AlertDelivery).where(AlertDelivery.digest_id.in_(ids)).order_by(AlertDelivery.id)
        ).all()
        if ids
        else []
    )
    carried = session.scalars(select(Change).where(Change.digest_id.in_(ids))).all() if ids else []
    mine = [c for c in carried if names.get(c.site_id) in domains]
    rows = [
        {
            "digest_id": d.digest_id,
            "channel": d.channel,
            "status": d.status,
            "attempts": d.attempts,
            "sent_at": _iso(d.sent_at),
            "last_error": d.last_error[:200] if d.status != "sent" else "",
        }
        for d in deliveries
    ]
    return {
        "digests": len(digests),
        "deliveries": rows,
        "sent": sum(1 for r in rows if r["status"] == "sent"),
        "pending": sum(1 for r in rows if r["status"] != "sent"),
        "changes_alerted": len(mine),
        "sites_alerted": len({c.site_id for c in mine}),
    }


def monitoring_report(
    store: Store,
    period: Period,
    *,
    policy: Policy | None = None,
    blobs: BlobStore | None = None,
    lang: str = "en",
) -> dict[str, Any]:
    """``lang``: the language of the rule titles quoted with each change."""
    policy = policy or Policy()
    base = monitoring_data(store, period.start, period.end, policy)
    with store.session(readonly=True) as session:
        sites = {
            s.domain: s
            for s in session.scalars(
                select(Site)
                .where(Site.registered.is_(True))
                .options(selectinload(Site.certificates))
            )
        }
        status_of = {r["domain"]: r["certificate_status"] for r in base["sites"]}
        wanted = {
            d
            for d, s in sites.items()
            if (not period.industry or (s.industry or "").lower() == period.industry.lower())
            and (not period.status or status_of.get(d) == period.status)
        }
        sites = {d: s for d, s in sites.items() if d in wanted}
        names = {s.id: d for d, s in sites.items()}
        certificates = _certificates(session, sites, period)
        alerts = _alerts(session, period, wanted, names)

        lists: dict[str, list[dict[str, Any]]] = {
            name: [c for c in base[name] if c["domain"] in wanted]
            for name in _LIST_OF_KIND.values()
        }
        # Evidence integrity of every audit a change quotes, flagged on its evidence.
        audit_ids = sorted(
            {
                a
                for items in lists.values()
                for c in items
                for a in (c["audit_id"], c["previous_audit_id"])
                if a
            }
        )
        checked = integ.check_audits(session, audit_ids, blobs)
        titles = (
            {
                (audit_id, rule_id): (title or {}).get(lang) or (title or {}).get("en")
                for audit_id, rule_id, title in session.execute(
                    select(Finding.audit_id, Finding.rule_id, Finding.title).where(
                        Finding.audit_id.in_(audit_ids)
                    )
                )
            }
            if audit_ids
            else {}
        )
    for items in lists.values():
        for c in items:
            title = titles.get((c["audit_id"], c["rule_id"]))
            if title and isinstance(c.get("detail"), dict) and "title" in c["detail"]:
                c["detail"]["title"] = title
    flagged = 0
    for items in lists.values():
        for c in items:
            detail = c.get("detail") or {}
            for side in ("before", "after"):
                ref = detail.get(side)
                if isinstance(ref, dict) and isinstance(ref.get("evidence"), list):
                    flagged += integ.flag_evidence(
                        ref["evidence"], checked.get(ref.get("audit_id"))
                    )
            bad = [
                a
                for a in (c["audit_id"], c["previous_audit_id"])
                if a and checked.get(a) and checked[a].failed
            ]
            c["integrity_failed_audits"] = bad

    site_rows = [r for r in base["sites"] if r["domain"] in wanted]
    for r in site_rows:
        r["industry"] = sites[r["domain"]].industry
    rechecks = _rechecks([c for c in base["checks"] if c["domain"] in wanted], policy)
    overdue = [o for o in base["overdue"] if o["domain"] in wanted]
    badge_now = {r["domain"]: r["badge"] for r in site_rows}
    integrity = integ.summary(checked)
    integrity["evidence_flagged"] = flagged
    totals = {
        "sites_in_scope": len(site_rows),
        "sites_monitored": sum(1 for r in site_rows if r["state"] != "on_demand"),
        "sites_checked": sum(1 for r in site_rows if r["audits"]),  # any audit in the period
        "sites_rechecked": len({c["domain"] for c in rechecks}),  # a scheduled re-check ran
        "audits": sum(len(r["audits"]) for r in site_rows),
        "rechecks": len(rechecks),
        "rechecks_done": sum(1 for c in rechecks if c["status"] == "done"),
        "rechecks_on_time": sum(1 for c in rechecks if c["on_time"]),
        "rechecks_late": sum(1 for c in rechecks if not c["on_time"]),
        "rechecks_failed": sum(1 for c in rechecks if c["status"] in ("timed_out", "failed")),
        "overdue_now": len(overdue),
        **{name: len(items) for name, items in lists.items()},
        "sites_with_regressions": len({c["domain"] for c in lists["regressions"]}),
        "certificates_suspended": len(certificates["suspended"]),
        "certificates_expiring": len(certificates["expiring"]),
        "certificates_expired": len(certificates["expired"]),
        "alert_digests": alerts["digests"],
        "alerts_sent": alerts["sent"],
        "alerts_pending": alerts["pending"],
        "integrity_failed": integrity["integrity_failed"],
    }
    return {
        "period": period.describe(),
        "policy": {
            "overdue_after_hours": policy.overdue_after_hours,
            "red_days": policy.red_days,
            "blue_days": policy.blue_days,
            "suspended_days": policy.suspended_days,
        },
        "totals": totals,
        "sites": site_rows,
        "rechecks": rechecks,
        "overdue": overdue,
        **lists,
        "badge_now": badge_now,
        "certificates": certificates,
        "alerts": alerts,
        "integrity": integrity,
    }
