"""From stored crawls to stored audits: build the SiteView, evaluate, append the findings.

Nothing here touches the network: an audit is a function of a crawl's snapshots, the rules
and the registry, so ``reaudit`` can re-judge last month's crawls with new rules.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, Select, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from audits.db import Store
from audits.engine import Evaluation, evaluate
from audits.evidence import BlobStore, EvidenceError
from audits.job_receipts import JobReceipt
from audits.manifest import write_manifest
from audits.models import (
    Audit,
    Certificate,
    Crawl,
    Finding,
    Screenshot,
    Site,
    Snapshot,
    utcnow,
)
from audits.pages import CertificateInfo, Page, SiteView
from audits.rulepack import RuleSet
from audits.screenshots import link_screenshots

logger = logging.getLogger(__name__)


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def certificate_index(session: Session) -> dict[str, tuple[str, Certificate]]:
    """cert id -> (domain, certificate) for every certificate in the registry."""
    rows = session.execute(select(Certificate, Site.domain).join(Site)).all()
    return {cert.cert_id: (domain, cert) for cert, domain in rows}


def _info(cert: Certificate, domain: str, crawl_date: date) -> CertificateInfo:
    return CertificateInfo(
        cert.cert_id, domain, cert.tier, cert.effective_status(crawl_date), cert.valid_until
    )


class CertificateLookup(Mapping[str, CertificateInfo]):
    """The registry's certificates as a view sees them (status on the crawl date), looked up
    by id when a check asks for one: a badge names the certificate of its site, or another,
    or none, so a view needs one or two of them, not the whole registry (loading all of them
    for every crawl made judging a run O(sites x certificates)). Each id is read once, in a
    short read-only transaction of its own; iterating reads them all."""

    def __init__(self, bind: Any, crawl_date: date, known: dict[str, CertificateInfo]) -> None:
        self._bind = bind
        self._date = crawl_date
        self._found: dict[str, CertificateInfo | None] = dict(known)
        self._all: dict[str, CertificateInfo] | None = None

    def _query(self, where: Any = None) -> dict[str, CertificateInfo]:
        query = select(Certificate, Site.domain).join(Site)
        if where is not None:
            query = query.where(where)
        with Session(self._bind) as session:
            rows = session.execute(query).all()
            return {cert.cert_id: _info(cert, domain, self._date) for cert, domain in rows}

    def __getitem__(self, cert_id: str) -> CertificateInfo:
        if self._all is not None:
            return self._all[cert_id]
        if cert_id not in self._found:
            self._found[cert_id] = self._query(Certificate.cert_id == cert_id).get(cert_id)
        found = self._found[cert_id]
        if found is None:
            raise KeyError(cert_id)
        return found

    def _everything(self) -> dict[str, CertificateInfo]:
        if self._all is None:
            self._all = self._query()
        return self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self._everything())

    def __len__(self) -> int:
        return len(self._everything())


def _rows_of_crawl(table: Any) -> Select:
    return select(table).where(table.c.crawl_id == bindparam("crawl_id")).order_by(table.c.id)


# The rows as plain tuples (Page.from_snapshot reads them by column name): built once,
# and without an ORM object per row.
_SNAPSHOTS = _rows_of_crawl(Snapshot.__table__)
_SCREENSHOTS = _rows_of_crawl(Screenshot.__table__)


def site_view(
    session: Session,
    crawl: Crawl,
    blobs: BlobStore,
    badge_hosts: tuple[str, ...],
    certs: dict[str, tuple[str, Certificate]] | None = None,
) -> SiteView:
    """The view of ``crawl``. ``certs``: the registry index (``certificate_index``) when the
    caller has it; without it, certificates are looked up as the checks name them."""
    site = crawl.site
    crawl_date = (crawl.started_at or utcnow()).date()
    current = site.current_certificate
    own = _info(current, site.domain, crawl_date) if current is not None else None
    infos: Mapping[str, CertificateInfo]
    if certs is not None:
        infos = {cid: _info(c, domain, crawl_date) for cid, (domain, c) in certs.items()}
        own = infos.get(current.cert_id) if current is not None else None
    else:
        bind = session.get_bind()
        # lookups only read: on SQLite they take no write lock (audits/db.py)
        if isinstance(bind, Engine) and not bind.get_execution_options().get("ectrust_readonly"):
            bind = bind.execution_options(ectrust_readonly=True)
        infos = CertificateLookup(bind, crawl_date, {own.cert_id: own} if own is not None else {})
    pages = []
    shots: dict[str, list[dict[str, Any]]] = {}
    for shot in session.execute(_SCREENSHOTS, {"crawl_id": crawl.id}):
        shots.setdefault(shot.url, []).append(
            {
                "kind": shot.kind,
                "content_hash": shot.content_hash,
                "selector": shot.selector,
                "width": shot.width,
                "height": shot.height,
            }
        )
    for snap in session.execute(_SNAPSHOTS, {"crawl_id": crawl.id}).all():
        body, error = b"", snap.error
        if snap.content_hash:
            try:
                body = blobs.get(snap.content_hash)
            except EvidenceError:
                error = error or "evidence_missing"
        pages.append(Page.from_snapshot(snap, body, error, shots.get(snap.url, [])))
    return SiteView(
        domain=site.domain,
        start_url=crawl.start_url,
        pages=pages,
        crawl_date=crawl_date,
        certificate=own,
        certificates=infos,
        badge_hosts=badge_hosts,
    )


INCOMPLETE_CRAWLS = ("timed_out", "interrupted", "crashed", "running")


def judge_crawl(
    store: Store,
    crawl_id: int,
    ruleset: RuleSet,
    blobs: BlobStore,
    badge_hosts: tuple[str, ...],
    *,
    kind: str = "audit",
    job_key: str | None = None,
) -> int:
    """Judge one stored crawl and append the audit; returns the audit id.

    Reading and evaluating happen outside any write transaction, so on SQLite the crawl's
    writer is never kept waiting while rules run. With ``job_key`` (a distributed job,
    audits/job_receipts.py) the key is stored in the transaction that records the audit; when
    the job already recorded one, nothing is added and that audit's id is returned."""
    started = utcnow()
    with store.session(readonly=True) as session:
        crawl = session.get(Crawl, crawl_id, options=[joinedload(Crawl.site)])  # one query
        if crawl is None:
            raise LookupError(f"no crawl {crawl_id}")
        view = site_view(session, crawl, blobs, badge_hosts)
        status, site_id, crawl_started = crawl.status, crawl.site_id, crawl.started_at
    evaluation = evaluate(view, ruleset, incomplete=status if status in INCOMPLETE_CRAWLS else None)
    try:
        return _record(store, crawl_id, site_id, kind, ruleset, evaluation, view,
                       crawl_started if kind == "audit" else started, job_key)
    except IntegrityError:
        # The job's key was committed by another run between our check and our insert (the
        # site lock in _record normally queues them, so this is the last line): this audit
        # rolled back whole, and the job keeps the other run's.
        recorded = recorded_audit(store, job_key) if job_key else None
        if recorded is None:
            raise
        logger.info("job %s already recorded audit %d; this run's audit dropped",
                    job_key, recorded)
        return recorded


def recorded_audit(store: Store, job_key: str) -> int | None:
    """The audit a distributed job recorded, if it did."""
    with store.session(readonly=True) as session:
        row = session.get(JobReceipt, job_key)
        return row.audit_id if row is not None else None


def _record(
    store: Store,
    crawl_id: int,
    site_id: int,
    kind: str,
    ruleset: RuleSet,
    evaluation: Evaluation,
    view: SiteView,
    started_at: datetime,
    job_key: str | None,
) -> int:
    with store.session() as session:
        # Lock the site's row before inserting anything that references it: write_manifest
        # needs it (site_locked below), and taking it only there (after the audit's foreign
        # key has taken a share lock on it) deadlocks two audits of one site recorded at once
        # on PostgreSQL. Taken first, it queues them, and the job-key check below sees the
        # earlier commit.
        session.execute(select(Site.id).where(Site.id == site_id).with_for_update())
        if job_key is not None:
            earlier = session.get(JobReceipt, job_key)
            if earlier is not None:  # another run of this job recorded it first
                logger.info("job %s already recorded audit %d", job_key, earlier.audit_id)
                return earlier.audit_id
        rows = [
            {
                "rule_id": r.rule.id,
                "pack": r.rule.pack.id,
                "rule_sha256": r.rule.sha256,
                "status": r.outcome.status,
                "severity": r.rule.severity,
                "title": r.rule.title,
                "message": r.outcome.message,
                "evidence": link_screenshots(view, r.rule.id, r.outcome.status, r.outcome.evidence),
                "references": r.rule.references,
                "guidance": r.rule.guidance,
            }
            for r in evaluation.results
        ]
        audit = Audit(
            crawl_id=crawl_id,
            site_id=site_id,
            kind=kind,
            packs=ruleset.describe(),
            started_at=started_at,
            finished_at=utcnow(),  # judged: only storing is left
            score=evaluation.score,
            reachable=evaluation.reachable,
            summary=evaluation.summary,
        )
        session.add(audit)
        session.flush()
        # The findings in one INSERT of many rows, in the results' order (finding id order),
        # without ORM objects: nothing reads them back as objects here.
        if rows:  # (an empty list would insert one row of defaults)
            session.execute(
                insert(Finding.__table__), [{"audit_id": audit.id, **row} for row in rows]
            )
        # same transaction (no audit without its manifest), the site locked above
        write_manifest(session, audit, site_locked=True)
        if job_key is not None:  # same transaction: one audit per job (PRIMARY KEY job_key)
            session.add(JobReceipt(job_key=job_key, audit_id=audit.id, site_id=site_id))
            session.flush()
        return audit.id


def _evidence_item(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": item.get("url"),
        "excerpt": item.get("excerpt", ""),
        "selector": item.get("selector"),
        **{k: v for k, v in item.items() if k not in ("url", "excerpt", "selector")},
    }


def finding_document(f: Finding, lang: str = "en") -> dict[str, Any]:
    return {
        "rule_id": f.rule_id,
        "status": f.status,
        "severity": f.severity,
        "title": f.title.get(lang) or f.title.get("en", ""),
        "message": f.message,
        "evidence": [_evidence_item(e) for e in f.evidence or []],
        "pack": f.pack,
        "finding_id": f.id,
        "references": f.references or [],
        "guidance": (f.guidance or {}).get(lang) or (f.guidance or {}).get("en", ""),
    }


def audit_document(session: Session, audit: Audit, lang: str = "en") -> dict[str, Any]:
    """One entry of CONTRACT.md's ``audits`` list."""
    crawl = audit.crawl
    findings = session.scalars(
        select(Finding).where(Finding.audit_id == audit.id).order_by(Finding.id)
    ).all()
    summary = audit.summary or {}
    return {
        "audit_id": audit.id,
        "domain": audit.site.domain,
        "started_at": iso(audit.started_at),
        "finished_at": iso(audit.finished_at),
        "pages_fetched": crawl.pages_fetched,
        "reachable": audit.reachable,
        "score": audit.score,
        "findings": [finding_document(f, lang) for f in findings],
        "privacy_policy": summary.get("privacy_policy"),
        "badge": summary.get("badge"),
        "crawl_id": crawl.id,
        "crawl_status": crawl.status,
        "kind": audit.kind,
        "rule_packs": audit.packs,
    }
