"""Evidence integrity as a report shows it: which stored bodies and screenshots of an audit no
longer match the SHA-256 its manifest recorded, and which evidence entries they back.

audits/manifest.py decides what is intact (``verify_audit``); this module only adds the
mapping a reader needs: a failed file -> the page URLs (snapshots) and screenshot digests it
stands for, so a report can put its warning next to the affected evidence, and a summary for
the method section and the JSON/CSV exports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audits.evidence import BlobStore, EvidenceError, sha256_hex
from audits.manifest import row_hash, verify_audit
from audits.models import Audit, EvidenceManifest, Snapshot


@dataclass
class AuditIntegrity:
    """``status``: ok | integrity_failed | no_manifest | not_checked."""

    audit_id: int
    status: str
    problems: list[str] = field(default_factory=list)
    bad_files: dict[str, str] = field(default_factory=dict)  # sha256 -> missing | mismatch
    bad_urls: dict[str, set[str]] = field(default_factory=dict)  # page URL -> bad sha256s

    @property
    def failed(self) -> bool:
        return self.status == "integrity_failed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "audit_id": self.audit_id,
            "status": self.status,
            "problems": self.problems,
            "bad_files": dict(sorted(self.bad_files.items())),
            "bad_urls": sorted(self.bad_urls),
        }


def _file_problems(body: dict[str, Any], blobs: BlobStore) -> dict[str, str]:
    bad = {}
    for entry in body.get("files", []):
        try:
            blobs.get(entry["sha256"], verify=True)
        except EvidenceError as exc:
            bad[entry["sha256"]] = "missing" if "missing" in str(exc) else "mismatch"
    return bad


def _urls_of(
    session: Session, crawl_id: int, body: dict[str, Any], bad: set[str]
) -> dict[str, set[str]]:
    """Page URL (as fetched, and after redirects) -> the failed files of its snapshot."""
    files = {s["id"]: bad & set(s.get("files") or []) for s in body.get("snapshots", [])}
    files = {i: f for i, f in files.items() if f}
    out: dict[str, set[str]] = {}
    if files:
        for sid, url, final in session.execute(
            select(Snapshot.id, Snapshot.url, Snapshot.final_url).where(
                Snapshot.crawl_id == crawl_id, Snapshot.id.in_(list(files))
            )
        ):
            for u in {url, final} - {None, ""}:
                out.setdefault(u, set()).update(files[sid])
    return out


def check_audit(session: Session, audit: Audit, blobs: BlobStore | None) -> AuditIntegrity:
    """The full check (rows, chain, files) of one audit, with the affected URLs."""
    if blobs is None:
        return AuditIntegrity(audit.id, "not_checked")
    verdict = verify_audit(session, audit, blobs, files=False)
    if verdict.status == "no_manifest":
        return AuditIntegrity(audit.id, "no_manifest", verdict.problems)
    manifest = session.scalars(
        select(EvidenceManifest).where(EvidenceManifest.audit_id == audit.id)
    ).one()
    body = json.loads(manifest.body)
    bad = _file_problems(body, blobs)
    problems = list(verdict.problems) + [
        f"file {d[:16]}… " + ("missing" if why == "missing" else "does not match its hash")
        for d, why in sorted(bad.items())
    ]
    return AuditIntegrity(
        audit.id,
        "integrity_failed" if problems else "ok",
        problems,
        bad,
        _urls_of(session, audit.crawl_id, body, set(bad)),
    )


def check_audits(
    session: Session, audit_ids: list[int], blobs: BlobStore | None
) -> dict[int, AuditIntegrity]:
    out = {}
    for audit_id in dict.fromkeys(audit_ids):
        audit = session.get(Audit, audit_id)
        if audit is not None:
            out[audit_id] = check_audit(session, audit, blobs)
    return out


def check_audits_quick(
    session: Session, audits: list[Audit], blobs: BlobStore | None
) -> dict[int, AuditIntegrity]:
    """For cohort reports over many sites: the manifests in one query, the audit row (the
    survey's numbers come from its summary) and every evidence file re-hashed; the finding
    and snapshot rows and the chain are left to ``ectrust evidence verify``."""
    if blobs is None:
        return {a.id: AuditIntegrity(a.id, "not_checked") for a in audits}
    by_id = {a.id: a for a in audits}
    manifests: dict[int, EvidenceManifest] = {}
    ids = list(by_id)
    for chunk in range(0, len(ids), 500):
        for m in session.scalars(
            select(EvidenceManifest).where(EvidenceManifest.audit_id.in_(ids[chunk : chunk + 500]))
        ):
            manifests[m.audit_id] = m
    out = {}
    for audit_id, audit in by_id.items():
        manifest = manifests.get(audit_id)
        if manifest is None:
            out[audit_id] = AuditIntegrity(audit_id, "no_manifest", ["no manifest"])
            continue
        problems = []
        if sha256_hex(manifest.body.encode("utf-8")) != manifest.sha256:
            problems.append("manifest text does not match its SHA-256")
        body = json.loads(manifest.body)
        if row_hash(audit) != body["audit"]["row"]:
            problems.append(f"audit {audit_id} changed")
        bad = _file_problems(body, blobs)
        problems += [
            f"file {d[:16]}… " + ("missing" if why == "missing" else "does not match its hash")
            for d, why in sorted(bad.items())
        ]
        out[audit_id] = AuditIntegrity(
            audit_id,
            "integrity_failed" if problems else "ok",
            problems,
            bad,
            _urls_of(session, audit.crawl_id, body, set(bad)) if bad else {},
        )
    return out


def flag_evidence(items: list[dict[str, Any]], integrity: AuditIntegrity | None) -> int:
    """Mark each evidence entry whose page body or screenshot failed the check with
    ``integrity: {"status": "mismatch"|"missing", "files": [sha256, …]}``; returns how many."""
    if integrity is None or not integrity.bad_files:
        return 0
    flagged = 0
    for e in items:
        if not isinstance(e, dict):
            continue
        hits = set(integrity.bad_urls.get(e.get("url") or "", set()))
        for ref in e.get("screenshots") or []:
            digest = ref.get("sha256") if isinstance(ref, dict) else None
            if digest in integrity.bad_files:
                hits.add(digest)
        if hits:
            whys = {integrity.bad_files[d] for d in hits}
            e["integrity"] = {
                "status": "missing" if whys == {"missing"} else "mismatch",
                "files": sorted(hits),
            }
            flagged += 1
    return flagged


def summary(results: dict[int, AuditIntegrity]) -> dict[str, Any]:
    """For the method/summary section and the exports."""
    failed = [r for r in results.values() if r.failed]
    return {
        "audits_checked": sum(1 for r in results.values() if r.status != "not_checked"),
        "ok": sum(1 for r in results.values() if r.status == "ok"),
        "integrity_failed": len(failed),
        "no_manifest": sum(1 for r in results.values() if r.status == "no_manifest"),
        "failed_audits": [r.as_dict() for r in sorted(failed, key=lambda r: r.audit_id)],
    }
