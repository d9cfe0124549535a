"""The numbers behind the reports, read from the store. Templates only lay them out, and the
CSV/JSON exports carry the same dictionaries, so a chart and its export cannot disagree.

Everything here is built from stored audits, findings and badge checks (DESIGN.md: reports
are built from findings only); nothing fetches.
"""

from __future__ import annotations

import base64
import io
import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from audits.checks.badge import MISUSE_VERDICTS
from audits.evidence import BlobStore, EvidenceError
from audits.judge import audit_document, certificate_index, iso
from audits.misuse import misuse_record
from audits.models import Audit, BadgeCheck, Certificate, Site
from reports import integrity

CLAUSES = (
    "collection",
    "purpose",
    "sharing",
    "cookies",
    "retention",
    "security",
    "rights",
    "contact",
    "children",
    "changes",
)
BLOCKING_SEVERITIES = ("critical", "major")
THUMB_WIDTH = 360
THUMB_MAX_HEIGHT = 420


# -- site audit report ------------------------------------------------------------------
def recommendation(doc: dict[str, Any]) -> dict[str, Any]:
    """Ready for certification or not, and why (the rules that decide it).

    ``not_ready``: unreachable, or a critical/major requirement failed. ``review``: nothing
    blocking failed but an evaluator must still decide something (review, error) or minor
    requirements fail. ``ready``: every decided requirement passed or only warned."""
    findings = doc["findings"]
    if not doc.get("reachable"):
        return {
            "verdict": "not_ready",
            "blocking": [],
            "open": [],
            "minor": [],
            "unreachable": True,
        }
    blocking = [
        f for f in findings if f["status"] == "fail" and f["severity"] in BLOCKING_SEVERITIES
    ]
    minor = [f for f in findings if f["status"] == "fail" and f not in blocking]
    open_ = [f for f in findings if f["status"] in ("review", "error")]
    verdict = "not_ready" if blocking else ("review" if open_ or minor else "ready")
    return {
        "verdict": verdict,
        "blocking": blocking,
        "open": open_,
        "minor": minor,
        "unreachable": False,
    }


def changes(doc: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """What changed since the site's previous audit: new failures, fixes, other changes."""
    if previous is None:
        return None
    before = {f["rule_id"]: f for f in previous["findings"]}
    new_failures, fixed, other = [], [], []
    for f in doc["findings"]:
        old = before.get(f["rule_id"])
        old_status = old["status"] if old else None
        if old_status == f["status"]:
            continue
        item = {
            "rule_id": f["rule_id"],
            "title": f["title"],
            "before": old_status,
            "after": f["status"],
            "severity": f["severity"],
        }
        if f["status"] == "fail":
            new_failures.append(item)
        elif old_status == "fail" and f["status"] in ("pass", "warn", "not_applicable"):
            fixed.append(item)
        else:
            other.append(item)
    now_ids = {f["rule_id"] for f in doc["findings"]}
    dropped = [r for r in before if r not in now_ids]
    score_delta = (
        round(doc["score"] - previous["score"], 1)
        if doc.get("score") is not None and previous.get("score") is not None
        else None
    )
    return {
        "previous_audit_id": previous["audit_id"],
        "previous_started_at": previous["started_at"],
        "previous_score": previous.get("score"),
        "score_delta": score_delta,
        "new_failures": new_failures,
        "fixed": fixed,
        "other": other,
        "not_checked_now": dropped,
    }


def thumbnail(blobs: BlobStore | None, ref: dict[str, Any]) -> dict[str, Any]:
    """A screenshot reference (``{"kind", "sha256", …}`` in an evidence entry) as an embedded
    PNG thumbnail; ``missing`` when the store does not have it (the report says so)."""
    out = {"kind": ref.get("kind", ""), "sha256": ref.get("sha256", ""), "data_uri": None}
    if blobs is None or not isinstance(ref.get("sha256"), str):
        return {**out, "missing": True}
    try:
        from PIL import Image

        raw = blobs.get(ref["sha256"])
        with Image.open(io.BytesIO(raw)) as img:
            img = img.convert("RGB")
            scale = min(1.0, THUMB_WIDTH / max(img.width, 1))
            img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))))
            if img.height > THUMB_MAX_HEIGHT:  # a full-page shot: keep its top
                img = img.crop((0, 0, img.width, THUMB_MAX_HEIGHT))
            buf = io.BytesIO()
            img.save(buf, "PNG", optimize=True)
    except (EvidenceError, OSError, ValueError):
        return {**out, "missing": True}
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return {**out, "missing": False, "data_uri": f"data:image/png;base64,{data}"}


def previous_audit_id(session: Session, audit_id: int) -> int | None:
    """The same site's audit before this one (any kind), judged on the full rule set."""
    audit = session.get(Audit, audit_id)
    if audit is None:
        return None
    return session.scalar(
        select(func.max(Audit.id)).where(Audit.site_id == audit.site_id, Audit.id < audit_id)
    )


def site_entries(
    session: Session, audit_ids: list[int], lang: str, blobs: BlobStore | None
) -> list[dict[str, Any]]:
    """One entry per audit: the CONTRACT document plus the previous audit's, the site's
    name and certificate, and screenshot thumbnails resolved from the evidence store."""
    entries = []
    for audit_id in audit_ids:
        audit = session.get(Audit, audit_id)
        doc = audit_document(session, audit, lang)
        prev_id = previous_audit_id(session, audit_id)
        prev = audit_document(session, session.get(Audit, prev_id), lang) if prev_id else None
        checked = integrity.check_audit(session, audit, blobs)
        for f in doc["findings"]:
            integrity.flag_evidence(f["evidence"], checked)
            for e in f["evidence"]:
                refs = e.get("screenshots")
                if isinstance(refs, list):
                    e["thumbnails"] = [thumbnail(blobs, r) for r in refs if isinstance(r, dict)]
        cert = audit.site.current_certificate
        entries.append(
            {
                "doc": doc,
                "site": {
                    "name": audit.site.name,
                    "industry": audit.site.industry,
                    "certificate": cert.cert_id if cert else None,
                },
                "recommendation": recommendation(doc),
                "changes": changes(doc, prev),
                "integrity": checked.as_dict(),
            }
        )
    return entries


# -- privacy-protection survey ----------------------------------------------------------
@dataclass(frozen=True)
class Cohort:
    industry: str | None = None
    status: str | None = None  # applicant | certified | suspended | revoked | expired
    since: date | None = None
    until: date | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "industry": self.industry,
            "status": self.status,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


def _status_of(cert: Certificate | None, on: date) -> str:
    return cert.effective_status(on) if cert is not None else "applicant"


def _cohort_query(cohort: Cohort) -> Select[Any]:
    """Latest audit per registered site within the date range (the audit id, max per site)."""
    query = (
        select(func.max(Audit.id))
        .join(Site, Site.id == Audit.site_id)
        .where(Site.registered.is_(True))
        .group_by(Audit.site_id)
    )
    if cohort.industry:
        query = query.where(func.lower(Site.industry) == cohort.industry.lower())
    if cohort.since:
        query = query.where(Audit.started_at >= datetime.combine(cohort.since, time(), UTC))
    if cohort.until:
        end = datetime.combine(cohort.until + timedelta(days=1), time(), UTC)
        query = query.where(Audit.started_at < end)
    return query


def _rows(session: Session, cohort: Cohort, blobs: BlobStore | None = None) -> list[dict[str, Any]]:
    ids = list(session.scalars(_cohort_query(cohort)))
    rows: list[dict[str, Any]] = []
    on = cohort.until or datetime.now(UTC).date()
    for chunk in range(0, len(ids), 500):
        audits = session.scalars(
            select(Audit)
            .where(Audit.id.in_(ids[chunk : chunk + 500]))
            .options(selectinload(Audit.site).selectinload(Site.certificates))
        ).all()
        checked = integrity.check_audits_quick(
            session, [a for a in audits if "privacy" in (a.packs or {})], blobs
        )
        for audit in audits:
            if "privacy" not in (audit.packs or {}):
                continue  # a badge-only check says nothing about the policy
            site = audit.site
            status = _status_of(site.current_certificate, on)
            if cohort.status and status != cohort.status:
                continue
            policy = (audit.summary or {}).get("privacy_policy")
            clauses = (policy or {}).get("clauses") or {}
            rows.append(
                {
                    "domain": site.domain,
                    "name": site.name,
                    "industry": site.industry,
                    "status": status,
                    "audit_id": audit.id,
                    "audited_at": iso(audit.started_at),
                    "reachable": bool(audit.reachable),
                    "pack_version": (audit.packs or {}).get("privacy", {}).get("version"),
                    "policy_url": (policy or {}).get("url"),
                    "found_by": (policy or {}).get("found_by", "link") if policy else None,
                    "clicks_from_home": (policy or {}).get("clicks_from_home"),
                    "clauses": {c: bool(clauses.get(c)) for c in CLAUSES},
                    "clauses_covered": sum(1 for c in CLAUSES if clauses.get(c)),
                    "has_policy": policy is not None,
                    # ok | integrity_failed | no_manifest | not_checked (reports/integrity.py)
                    "evidence_integrity": checked[audit.id].status,
                    "integrity_problems": checked[audit.id].problems
                    if checked[audit.id].failed
                    else [],
                }
            )
    rows.sort(key=lambda r: r["domain"])
    return rows


def _share(n: int, d: int) -> float | None:
    return round(100.0 * n / d, 1) if d else None


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    reachable = [r for r in rows if r["reachable"]]
    with_policy = [r for r in reachable if r["has_policy"]]
    linked = [r for r in with_policy if r["found_by"] == "link"]
    clicks = [r["clicks_from_home"] for r in linked if r["clicks_from_home"] is not None]
    coverage = {}
    for c in CLAUSES:
        n = sum(1 for r in with_policy if r["clauses"][c])
        coverage[c] = {
            "sites": n,
            "share_of_policies": _share(n, len(with_policy)),
            "share_of_sites": _share(n, len(reachable)),
        }
    dates = sorted(r["audited_at"] for r in rows if r["audited_at"])
    return {
        "sites": len(rows),
        "reachable": len(reachable),
        "unreachable": len(rows) - len(reachable),
        "with_policy": len(with_policy),
        "with_policy_share": _share(len(with_policy), len(reachable)),
        "linked": len(linked),
        "linked_share": _share(len(linked), len(reachable)),
        "last_resort_only": len(with_policy) - len(linked),
        "without_policy": len(reachable) - len(with_policy),
        "clicks": {
            "distribution": {str(k): clicks.count(k) for k in sorted(set(clicks))},
            "mean": round(statistics.fmean(clicks), 2) if clicks else None,
            "median": statistics.median(clicks) if clicks else None,
        },
        "coverage": coverage,
        "all_ten": sum(1 for r in with_policy if r["clauses_covered"] == len(CLAUSES)),
        "mean_clauses": round(statistics.fmean(r["clauses_covered"] for r in with_policy), 2)
        if with_policy
        else None,
        "audit_dates": {"first": dates[0] if dates else None, "last": dates[-1] if dates else None},
        "pack_versions": sorted({r["pack_version"] for r in rows if r["pack_version"]}),
        "integrity": {
            status: sum(1 for r in rows if r["evidence_integrity"] == status)
            for status in ("ok", "integrity_failed", "no_manifest", "not_checked")
        },
    }


def anonymise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with no domain, name or URL. Labels are given in order of results (best first),
    not of names, so the order gives nothing away."""
    ordered = sorted(
        rows,
        key=lambda r: (
            -r["clauses_covered"],
            not r["has_policy"],
            r["clicks_from_home"] or 9,
            r["domain"],
        ),
    )
    out = []
    for i, r in enumerate(ordered, 1):
        out.append(
            {
                **r,
                "domain": f"S{i:03d}",
                "name": "",
                "policy_url": None,
                "audit_id": None,
                "integrity_problems": [],  # they name files and audits
            }
        )
    return out


def survey(
    session: Session,
    cohort: Cohort,
    *,
    compare: Cohort | None = None,
    anonymous: bool = False,
    blobs: BlobStore | None = None,
) -> dict[str, Any]:
    """``blobs``: the evidence store, to check each audit's evidence against its manifest
    (None: not checked, and the report says so)."""
    rows = _rows(session, cohort, blobs)
    result: dict[str, Any] = {
        "cohort": cohort.describe(),
        "anonymised": anonymous,
        "totals": aggregate(rows),
        "sites": anonymise(rows) if anonymous else rows,
        "comparison": None,
    }
    if compare is not None:
        earlier_rows = _rows(session, compare, blobs)
        earlier = aggregate(earlier_rows)
        now = result["totals"]

        def delta(a: float | None, b: float | None) -> float | None:
            return round(a - b, 1) if a is not None and b is not None else None

        result["comparison"] = {
            "cohort": compare.describe(),
            "totals": earlier,
            "sites_in_both": len({r["domain"] for r in rows} & {r["domain"] for r in earlier_rows}),
            "delta": {
                "with_policy_share": delta(now["with_policy_share"], earlier["with_policy_share"]),
                "linked_share": delta(now["linked_share"], earlier["linked_share"]),
                "mean_clauses": delta(now["mean_clauses"], earlier["mean_clauses"]),
                "coverage": {
                    c: delta(
                        now["coverage"][c]["share_of_policies"],
                        earlier["coverage"][c]["share_of_policies"],
                    )
                    for c in CLAUSES
                },
            },
        }
    return result


# -- misuse report ----------------------------------------------------------------------
def misuse_cases(
    session: Session,
    *,
    since: date | None = None,
    until: date | None = None,
    domains: list[str] | None = None,
    lang: str = "en",
    blobs: BlobStore | None = None,
) -> list[dict[str, Any]]:
    """One case per site: its latest misuse record, from ``badge check`` records and from the
    badge findings of audits (a registered site's audit that failed ``badge.valid`` with a
    misuse verdict). A site whose latest look found no misuse is not a case.

    ``blobs``: a case from an audit gets that audit's evidence integrity (``integrity``) and
    each sighting on a page whose stored body failed its hash is flagged; a ``badge check``
    record has no manifest (``integrity.status``: ``not_checked``)."""
    start = datetime.combine(since, time(), UTC) if since else None
    end = datetime.combine(until + timedelta(days=1), time(), UTC) if until else None
    wanted = {d.lower() for d in domains} if domains else None
    latest: dict[str, tuple[datetime, dict[str, Any]]] = {}

    def consider(domain: str, at: datetime, record: dict[str, Any], source: str) -> None:
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        if wanted is not None and domain not in wanted:
            return
        if (start and at < start) or (end and at >= end):
            return
        if domain not in latest or at > latest[domain][0]:
            latest[domain] = (at, {**record, "source": source})

    checks = select(BadgeCheck).order_by(BadgeCheck.id)
    for check in session.scalars(checks):
        consider(
            check.domain, check.created_at, {**check.record, "check_id": check.id}, "badge_check"
        )

    owners = {cid: domain for cid, (domain, _c) in certificate_index(session).items()}
    last_audits = select(func.max(Audit.id)).group_by(Audit.site_id)
    for audit in session.scalars(
        select(Audit)
        .where(Audit.id.in_(last_audits))
        .options(selectinload(Audit.site).selectinload(Site.certificates))
    ):
        badge = (audit.summary or {}).get("badge") or {}
        if badge.get("verdict") not in MISUSE_VERDICTS:
            continue
        doc = audit_document(session, audit, lang)
        cert = audit.site.current_certificate
        record = misuse_record(
            domain=audit.site.domain,
            url=audit.crawl.start_url,
            registered=audit.site.registered,
            own_certificate=cert.cert_id if cert else None,
            audit=doc,
            owners=owners,
        )
        consider(audit.site.domain, audit.started_at, {**record, "audit_id": audit.id}, "audit")

    cases = []
    for domain in sorted(latest):
        _at, record = latest[domain]
        if not (record.get("misuse") or record.get("suspected")):
            continue
        site = session.scalar(select(Site).where(Site.domain == domain))
        audit = session.get(Audit, record["audit_id"]) if record.get("audit_id") else None
        checked = integrity.check_audit(session, audit, blobs) if audit is not None else None
        if checked is not None:
            for sighting in record.get("sightings") or []:
                bad = checked.bad_urls.get(sighting.get("page") or "")
                if bad:
                    sighting["integrity"] = {
                        "status": "missing"
                        if {checked.bad_files[d] for d in bad} == {"missing"}
                        else "mismatch",
                        "files": sorted(bad),
                    }
        cases.append(
            {
                **record,
                "name": site.name if site else "",
                "domain": domain,
                "integrity": checked.as_dict()
                if checked is not None
                else {"status": "not_checked", "problems": []},
            }
        )
    return cases
