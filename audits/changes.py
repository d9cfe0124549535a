"""What changed between two audits of one site: a pure function of two stored audits.

``load_record`` reads what the comparison needs from the store (findings, the badge verdict,
the privacy policy's sentences from its stored snapshot, how many checks in a row found the
site unreachable); ``compare`` is pure and needs no database; ``record_changes`` stores the
result for the next alert digest and the monitoring report.

Kinds of change (``Change.kind``, and ``kind`` in each dict ``compare`` returns):

- ``regression``: a rule's result got worse: pass (or not applicable) to warn, review or
  fail, or warn/review to fail; a new rule that fails or needs review counts too;
- ``fix``: a rule's result got better (fail to warn, review or pass; warn or review to pass);
- ``evidence_changed``: same status, different evidence (URL, quoted text or element);
- ``policy_changed``: the privacy policy's text changed: sentences added and removed, the
  size before and after; ``significant`` when it shrank by half or more, or disappeared;
- ``badge_changed``: the badge verdict differs;
- ``unreachable``: the site was unreachable at ``UNREACHABLE_STREAK`` checks in a row (one
  failed visit is noise, so it is reported once, when the streak reaches that length).

An unreachable audit is not compared rule by rule (its findings say "could not check"); when
the site is back it is compared with its last reachable audit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audits.checks.privacy import sentences
from audits.evidence import BlobStore, EvidenceError
from audits.models import Audit, Finding, Snapshot
from audits.monitoring_models import Change
from audits.pages import Page

UNREACHABLE_STREAK = 3
# How bad a status is; ``error`` (the check could not run) says nothing about the site.
RANK = {"pass": 0, "not_applicable": 0, "warn": 1, "review": 1, "fail": 2}
SHRINK_IS_NEWS = 0.5  # a policy at half its former length or less
MAX_LISTED_SENTENCES = 20  # sentences quoted per change; the counts are always complete


@dataclass(frozen=True)
class FindingRecord:
    rule_id: str
    status: str
    severity: str
    title: str
    message: str
    evidence: tuple[dict[str, Any], ...]


@dataclass
class AuditRecord:
    """One stored audit, as the comparison sees it."""

    audit_id: int
    domain: str
    reachable: bool
    started_at: str | None
    findings: dict[str, FindingRecord]
    badge_verdict: str | None
    policy_url: str | None
    policy_sentences: list[str] | None  # None: no policy, or its text could not be read
    unreachable_streak: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


def _evidence_key(items: tuple[dict[str, Any], ...]) -> list[tuple[Any, ...]]:
    # Compared on what a reader sees: where, what was quoted, which element.
    return sorted(
        (str(e.get("url") or ""), str(e.get("excerpt") or ""), str(e.get("selector") or ""))
        for e in items
    )


def _finding_ref(audit: AuditRecord, f: FindingRecord | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {
        "audit_id": audit.audit_id,
        "status": f.status,
        "message": f.message,
        "evidence": list(f.evidence),
    }


def compare(before: AuditRecord | None, after: AuditRecord) -> list[dict[str, Any]]:
    """The changes from ``before`` (the site's previous reachable audit, None for the first)
    to ``after``. Each change: ``kind``, ``rule_id`` (or None), ``detail``."""
    changes: list[dict[str, Any]] = []
    if not after.reachable:
        if after.unreachable_streak == UNREACHABLE_STREAK:
            changes.append(
                {
                    "kind": "unreachable",
                    "rule_id": None,
                    "detail": {
                        "streak": after.unreachable_streak,
                        "message": f"{after.domain} was unreachable at "
                        f"{after.unreachable_streak} checks in a row",
                    },
                }
            )
        return changes
    if before is None:
        return changes
    for rule_id in sorted(set(before.findings) | set(after.findings)):
        old, new = before.findings.get(rule_id), after.findings.get(rule_id)
        if new is None:
            continue  # a rule no longer evaluated (pack changed) is not a change of the site
        detail = {
            "title": new.title,
            "severity": new.severity,
            "before": _finding_ref(before, old),
            "after": _finding_ref(after, new),
        }
        now = RANK.get(new.status)
        was = RANK.get(old.status) if old is not None else 0
        if now is not None and was is not None and now > was:
            changes.append({"kind": "regression", "rule_id": rule_id, "detail": detail})
        elif now is not None and was is not None and now < was:
            changes.append({"kind": "fix", "rule_id": rule_id, "detail": detail})
        elif (
            old is not None
            and old.status == new.status
            and _evidence_key(old.evidence) != _evidence_key(new.evidence)
        ):
            changes.append({"kind": "evidence_changed", "rule_id": rule_id, "detail": detail})
    policy = compare_policies(before, after)
    if policy is not None:
        changes.append({"kind": "policy_changed", "rule_id": None, "detail": policy})
    if before.badge_verdict != after.badge_verdict:
        changes.append(
            {
                "kind": "badge_changed",
                "rule_id": "badge.valid",
                "detail": {
                    "before": before.badge_verdict,
                    "after": after.badge_verdict,
                    "before_audit_id": before.audit_id,
                    "after_audit_id": after.audit_id,
                },
            }
        )
    return changes


def compare_policies(before: AuditRecord, after: AuditRecord) -> dict[str, Any] | None:
    """Sentences added and removed between the two policies, or None when unchanged."""
    old = before.policy_sentences or []
    new = after.policy_sentences or []
    if before.policy_url is None and after.policy_url is None:
        return None
    if old == new and before.policy_url == after.policy_url:
        return None
    old_set, new_set = set(old), set(new)
    added = [s for s in new if s not in old_set]
    removed = [s for s in old if s not in new_set]
    old_chars, new_chars = sum(map(len, old)), sum(map(len, new))
    ratio = (new_chars / old_chars) if old_chars else None
    gone = before.policy_url is not None and after.policy_url is None
    significant = gone or (ratio is not None and ratio <= SHRINK_IS_NEWS)
    if not added and not removed and not gone and before.policy_url == after.policy_url:
        return None
    return {
        "url_before": before.policy_url,
        "url_after": after.policy_url,
        "before_audit_id": before.audit_id,
        "after_audit_id": after.audit_id,
        "sentences_before": len(old),
        "sentences_after": len(new),
        "chars_before": old_chars,
        "chars_after": new_chars,
        "ratio": None if ratio is None else round(ratio, 3),
        "added": added[:MAX_LISTED_SENTENCES],
        "removed": removed[:MAX_LISTED_SENTENCES],
        "added_count": len(added),
        "removed_count": len(removed),
        "significant": significant,
        "removed_policy": gone,
    }


# -- reading stored audits ------------------------------------------------------------------
def _policy_sentences(
    session: Session, audit: Audit, url: str | None, blobs: BlobStore
) -> list[str] | None:
    if not url:
        return None
    snap = session.scalars(
        select(Snapshot).where(
            Snapshot.crawl_id == audit.crawl_id,
            (Snapshot.url == url) | (Snapshot.final_url == url),
            Snapshot.content_hash.is_not(None),
        )
    ).first()
    if snap is None:
        return None
    try:
        body = blobs.get(snap.content_hash or "")
    except EvidenceError:
        return None
    return sentences(Page.from_snapshot(snap, body).main_text)


def _streak(session: Session, audit: Audit) -> int:
    """How many audits in a row, ending with this one, found the site unreachable."""
    rows = session.scalars(
        select(Audit.reachable)
        .where(Audit.site_id == audit.site_id, Audit.kind == "audit", Audit.id <= audit.id)
        .order_by(Audit.id.desc())
        .limit(UNREACHABLE_STREAK + 1)
    ).all()
    streak = 0
    for reachable in rows:
        if reachable:
            break
        streak += 1
    return streak


def load_record(session: Session, audit: Audit, blobs: BlobStore) -> AuditRecord:
    findings = session.scalars(
        select(Finding).where(Finding.audit_id == audit.id).order_by(Finding.id)
    ).all()
    summary = audit.summary or {}
    policy_url = (summary.get("privacy_policy") or {}).get("url")
    return AuditRecord(
        audit_id=audit.id,
        domain=audit.site.domain,
        reachable=audit.reachable,
        started_at=audit.started_at.isoformat() if audit.started_at else None,
        findings={
            f.rule_id: FindingRecord(
                f.rule_id,
                f.status,
                f.severity,
                (f.title or {}).get("en", ""),
                f.message,
                tuple(f.evidence or ()),
            )
            for f in findings
        },
        badge_verdict=(summary.get("badge") or {}).get("verdict"),
        policy_url=policy_url,
        policy_sentences=_policy_sentences(session, audit, policy_url, blobs),
        unreachable_streak=0 if audit.reachable else _streak(session, audit),
    )


def previous_audit(session: Session, audit: Audit) -> Audit | None:
    """The site's last reachable crawl audit before ``audit`` (re-judgements excluded)."""
    return session.scalars(
        select(Audit)
        .where(
            Audit.site_id == audit.site_id,
            Audit.kind == "audit",
            Audit.id < audit.id,
            Audit.reachable.is_(True),
        )
        .order_by(Audit.id.desc())
        .limit(1)
    ).first()


def record_changes(session: Session, audit_id: int, blobs: BlobStore) -> list[Change]:
    """Compare an audit with the site's previous one and append the changes."""
    audit = session.get(Audit, audit_id)
    if audit is None:
        raise LookupError(f"no audit {audit_id}")
    prev = previous_audit(session, audit)
    after = load_record(session, audit, blobs)
    before = load_record(session, prev, blobs) if prev is not None else None
    rows = [
        Change(
            site_id=audit.site_id,
            audit_id=audit.id,
            previous_audit_id=prev.id if prev is not None else None,
            kind=c["kind"],
            rule_id=c["rule_id"],
            detail=c["detail"],
        )
        for c in compare(before, after)
    ]
    session.add_all(rows)
    session.flush()
    return rows
