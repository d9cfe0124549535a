"""Tamper-evident evidence: a SHA-256 manifest per audit, chained per site.

When an audit is stored, its manifest lists, by SHA-256, every snapshot row and body file,
every screenshot file and every finding row of the audit, plus the audit and crawl rows, and
the SHA-256 of the site's previous manifest. The manifest is canonical JSON (sorted keys, no
spaces, UTF-8), stored append-only with its own hash. ``verify`` recomputes everything from
the database and the evidence files as they are now, so a file flipped, deleted or replaced,
a row edited (even with the triggers dropped), a finding added or removed, or a manifest
rewritten without rewriting every later one, is found. Keeping the newest hash of each chain
somewhere else (a report, an e-mail, a notary) extends that to a rewrite of the whole chain.

``export`` writes one audit as a self-contained folder (manifest, chain, snapshot bodies,
screenshots, findings JSON, SHA256SUMS, README) that can be checked with ``sha256sum`` alone.
"""

from __future__ import annotations

import json
import mimetypes
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Select, bindparam, inspect, select
from sqlalchemy.orm import Session

from audits.evidence import BlobStore, EvidenceError, sha256_hex
from audits.models import (
    Audit,
    Crawl,
    EvidenceManifest,
    Finding,
    Screenshot,
    Site,
    Snapshot,
)

FORMAT = "ectrust-evidence-manifest/1"


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _plain(value: Any) -> Any:
    """Column values in one canonical form, whatever the database hands back (SQLite returns
    naive datetimes, PostgreSQL aware ones)."""
    kind = type(value)
    if kind in _SCALARS:  # most values: nothing to convert
        return value
    if kind is dict:  # (scalars inline: most leaves)
        return {str(k): v if type(v) in _SCALARS else _plain(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else _plain(v) for v in value]
    if isinstance(value, datetime):
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def canonical(data: Any) -> bytes:
    return json.dumps(
        _plain(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def row_data(obj: Any) -> dict[str, Any]:
    """Every mapped column of a row (new columns other issues add are covered too)."""
    return {c.key: getattr(obj, c.key) for c in inspect(obj).mapper.column_attrs}


def data_hash(data: dict[str, Any]) -> str:
    """The hash of a row given as its column values (``row_data`` or ``_row_dicts``)."""
    return sha256_hex(canonical(data))


def row_hash(obj: Any) -> str:
    return data_hash(row_data(obj))


_ROW_QUERIES: dict[tuple[Any, str], tuple[list[str], Select]] = {}


def _row_dicts(session: Session, model: Any, column: str, value: Any) -> list[dict[str, Any]]:
    """``row_data`` of each row of ``model`` whose ``column`` is ``value``, in id order, read
    without building ORM objects: the same columns under the same keys, converted by the
    columns' own types. One statement per model, built once."""
    key = (model, column)
    if key not in _ROW_QUERIES:
        attrs = inspect(model).column_attrs
        table = model.__table__
        query = (
            select(*(a.columns[0] for a in attrs))
            .where(table.c[column] == bindparam("value"))
            .order_by(table.c.id)
        )
        _ROW_QUERIES[key] = ([a.key for a in attrs], query)
    keys, query = _ROW_QUERIES[key]
    rows = session.connection().execute(query, {"value": value}).all()
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _files_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in data.items():
        if key.endswith("_hash") and value:
            out.append(("snapshot" if key == "content_hash" else key[: -len("_hash")], value))
    return out


def evidence_files(snapshot: Snapshot) -> list[tuple[str, str]]:
    """(role, sha256) of the files a snapshot row points to: its body (``content_hash``) and
    any other ``*_hash`` column, e.g. a screenshot added by the rendering feature."""
    return _files_of(row_data(snapshot))


def build_body(session: Session, audit: Audit, previous: EvidenceManifest | None) -> dict:
    """The manifest of ``audit``. Snapshot, screenshot and finding rows are read as plain
    column values (``_row_dicts``): the same data ``row_hash`` of their ORM objects hashes,
    without building objects for them."""
    crawls = _row_dicts(session, Crawl, "id", audit.crawl_id)
    assert crawls, f"no crawl {audit.crawl_id}"
    crawl = crawls[0]
    sites = _row_dicts(session, Site, "id", audit.site_id)
    assert sites, f"no site {audit.site_id}"
    site = sites[0]
    snapshots = _row_dicts(session, Snapshot, "crawl_id", crawl["id"])
    findings = _row_dicts(session, Finding, "audit_id", audit.id)
    files: dict[str, dict[str, Any]] = {}
    snapshot_entries = []
    for s in snapshots:
        refs = _files_of(s)
        for role, digest in refs:
            files.setdefault(digest, {"sha256": digest, "role": role, "snapshots": []})
            files[digest]["snapshots"].append(s["id"])
        snapshot_entries.append(
            {
                "id": s["id"],
                "url": s["url"],
                "status": s["status"],
                "error": s["error"],
                "fetched_at": s["fetched_at"],
                "files": [d for _, d in refs],
                "row": data_hash(s),
            }
        )
    # browser screenshots of this crawl (issue #5) are evidence like the bodies
    shots = _row_dicts(session, Screenshot, "crawl_id", crawl["id"])
    screenshot_entries = []
    for shot in shots:
        files.setdefault(
            shot["content_hash"],
            {"sha256": shot["content_hash"], "role": "screenshot", "snapshots": []},
        )
        screenshot_entries.append(
            {
                "id": shot["id"],
                "url": shot["url"],
                "kind": shot["kind"],
                "row": data_hash(shot),
            }
        )
    return {
        "format": FORMAT,
        "site": {"id": site["id"], "domain": site["domain"]},
        "screenshots": screenshot_entries,
        "audit": {"id": audit.id, "row": row_hash(audit)},
        "crawl": {"id": crawl["id"], "row": data_hash(crawl)},
        "snapshots": snapshot_entries,
        "files": [files[k] for k in sorted(files)],
        "findings": [
            {
                "id": f["id"],
                "rule_id": f["rule_id"],
                "status": f["status"],
                "row": data_hash(f),
            }
            for f in findings
        ],
        "previous": None
        if previous is None
        else {"manifest_id": previous.id, "audit_id": previous.audit_id, "sha256": previous.sha256},
    }


def write_manifest(
    session: Session, audit: Audit, *, site_locked: bool = False
) -> EvidenceManifest:
    """Append the manifest of ``audit`` (flushed, with its findings) in the caller's
    transaction. The site's row is locked first (PostgreSQL; SQLite's write lock is already
    held), so two audits of one site cannot both chain to the same predecessor;
    ``site_locked``: the caller's transaction holds that lock already."""
    session.flush()
    if not site_locked:
        session.execute(select(Site.id).where(Site.id == audit.site_id).with_for_update())
    previous = session.scalars(
        select(EvidenceManifest)
        .where(EvidenceManifest.site_id == audit.site_id)
        .order_by(EvidenceManifest.id.desc())
        .limit(1)
    ).first()
    body = canonical(build_body(session, audit, previous)).decode("utf-8")
    manifest = EvidenceManifest(
        audit_id=audit.id,
        site_id=audit.site_id,
        previous_id=previous.id if previous else None,
        previous_sha256=previous.sha256 if previous else None,
        sha256=sha256_hex(body.encode("utf-8")),
        body=body,
    )
    session.add(manifest)
    session.flush()
    return manifest


# -- verification --------------------------------------------------------------------------
@dataclass
class Verdict:
    audit_id: int
    domain: str
    status: str  # ok | integrity_failed | no_manifest
    sha256: str | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "audit_id": self.audit_id,
            "domain": self.domain,
            "status": self.status,
            "sha256": self.sha256,
            "problems": self.problems,
        }


def _check_files(body: dict, blobs: BlobStore, problems: list[str]) -> None:
    for entry in body["files"]:
        try:
            blobs.get(entry["sha256"], verify=True)
        except EvidenceError as exc:
            kind = "missing" if "missing" in str(exc) else "does not match its hash"
            problems.append(f"{entry['role']} file {entry['sha256'][:16]}… {kind}")


def _check_rows(session: Session, body: dict, problems: list[str]) -> None:
    def compare(kind: str, model: Any, listed: list[dict], where: Any) -> None:
        current = {o.id: o for o in session.scalars(select(model).where(where))}
        for entry in listed:
            obj = current.pop(entry["id"], None)
            if obj is None:
                problems.append(f"{kind} {entry['id']} deleted")
            elif row_hash(obj) != entry["row"]:
                problems.append(f"{kind} {entry['id']} changed")
        for extra in sorted(current):
            problems.append(f"{kind} {extra} added afterwards")

    compare("snapshot", Snapshot, body["snapshots"], Snapshot.crawl_id == body["crawl"]["id"])
    compare("finding", Finding, body["findings"], Finding.audit_id == body["audit"]["id"])
    if "screenshots" in body:
        compare(
            "screenshot",
            Screenshot,
            body["screenshots"],
            Screenshot.crawl_id == body["crawl"]["id"],
        )
    for kind, model in (("audit", Audit), ("crawl", Crawl)):
        obj = session.get(model, body[kind]["id"])
        if obj is None:
            problems.append(f"{kind} {body[kind]['id']} deleted")
        elif row_hash(obj) != body[kind]["row"]:
            problems.append(f"{kind} {body[kind]['id']} changed")


def verify_audit(
    session: Session, audit: Audit, blobs: BlobStore, *, files: bool = True
) -> Verdict:
    domain = audit.site.domain
    manifest = session.scalars(
        select(EvidenceManifest).where(EvidenceManifest.audit_id == audit.id)
    ).first()
    if manifest is None:
        return Verdict(
            audit.id,
            domain,
            "no_manifest",
            problems=["no manifest (the audit predates evidence manifests)"],
        )
    problems: list[str] = []
    if sha256_hex(manifest.body.encode("utf-8")) != manifest.sha256:
        problems.append("manifest text does not match its SHA-256")
    body = json.loads(manifest.body)
    previous = session.get(EvidenceManifest, manifest.previous_id) if manifest.previous_id else None
    chained = (body.get("previous") or {}).get("sha256")
    if manifest.previous_id is not None and previous is None:
        problems.append("previous manifest deleted")
    elif previous is not None:
        if chained != previous.sha256 or manifest.previous_sha256 != previous.sha256:
            problems.append(
                f"chain broken: previous manifest {previous.id} is not the one "
                "this manifest was chained to"
            )
        elif sha256_hex(previous.body.encode("utf-8")) != previous.sha256:
            problems.append(f"chain broken: previous manifest {previous.id} was rewritten")
    elif chained is not None:
        problems.append("chain broken: the manifest names a predecessor that is gone")
    _check_rows(session, body, problems)
    if files:
        _check_files(body, blobs, problems)
    return Verdict(
        audit.id, domain, "integrity_failed" if problems else "ok", manifest.sha256, problems
    )


def verify(session: Session, blobs: BlobStore, audit_ids: list[int] | None = None) -> list[Verdict]:
    query = select(Audit).order_by(Audit.id)
    if audit_ids:
        query = query.where(Audit.id.in_(audit_ids))
    return [verify_audit(session, a, blobs) for a in session.scalars(query)]


# -- export ----------------------------------------------------------------------------------
README = """ectrust evidence package — audit {audit_id} of {domain}

manifest.json      the audit's evidence manifest exactly as stored (canonical JSON, UTF-8)
manifest.sha256    its SHA-256: `sha256sum manifest.json` must print this value
chain.json         the site's manifests up to this one: each names its predecessor's SHA-256
audit.json         the audit: score, findings with their evidence, rule pack versions
findings.json      the finding rows as stored
snapshots.json     every fetch of the crawl: URL, status, time, error, files
snapshots/         the bodies as received, named by their SHA-256
screenshots/       screenshots, named by their SHA-256 (when pages were rendered)
verification.json  the result of `ectrust evidence verify` when this package was written
SHA256SUMS         `sha256sum -c SHA256SUMS` checks every file of this package

Each file under snapshots/ and screenshots/ is listed in manifest.json by its SHA-256;
each finding and snapshot row is listed by the SHA-256 of its canonical JSON.
Verification at export: {status}
"""


def _ext(content_type: str | None, role: str) -> str:
    if role != "snapshot":
        return ".png"
    ctype = (content_type or "").split(";")[0].strip()
    return mimetypes.guess_extension(ctype) or ".bin" if ctype else ".bin"


def export(
    session: Session, audit: Audit, blobs: BlobStore, out_dir: Path, audit_doc: dict
) -> tuple[Path, Verdict]:
    """Write the package folder ``out_dir/ectrust-audit-<id>``; returns it and the verdict
    (the package is written either way, with the verdict inside)."""
    verdict = verify_audit(session, audit, blobs)
    if verdict.status == "no_manifest":
        return out_dir, verdict
    target = out_dir / f"ectrust-audit-{audit.id}"
    if target.exists():
        shutil.rmtree(target)
    (target / "snapshots").mkdir(parents=True)
    manifest = session.scalars(
        select(EvidenceManifest).where(EvidenceManifest.audit_id == audit.id)
    ).one()
    (target / "manifest.json").write_bytes(manifest.body.encode("utf-8"))
    (target / "manifest.sha256").write_text(manifest.sha256 + "\n")
    chain = session.scalars(
        select(EvidenceManifest)
        .where(EvidenceManifest.site_id == audit.site_id, EvidenceManifest.id <= manifest.id)
        .order_by(EvidenceManifest.id)
    ).all()
    _write_json(
        target / "chain.json",
        [
            {
                "manifest_id": m.id,
                "audit_id": m.audit_id,
                "sha256": m.sha256,
                "previous_sha256": m.previous_sha256,
            }
            for m in chain
        ],
    )
    snapshots = session.scalars(
        select(Snapshot).where(Snapshot.crawl_id == audit.crawl_id).order_by(Snapshot.id)
    ).all()
    rows = []
    for s in snapshots:
        entry = _plain(row_data(s))
        entry["files"] = {}
        ctype = (s.headers or {}).get("content-type")
        ctype = ctype[0] if isinstance(ctype, list) and ctype else ctype
        for role, digest in evidence_files(s):
            folder = "snapshots" if role == "snapshot" else "screenshots"
            (target / folder).mkdir(exist_ok=True)
            name = f"{folder}/{digest}{_ext(ctype, role)}"
            try:
                (target / name).write_bytes(blobs.get(digest, verify=False))
            except EvidenceError:
                name = f"(missing: {digest})"
            entry["files"][role] = name
        rows.append(entry)
    _write_json(target / "snapshots.json", rows)
    shots = []
    for shot in session.scalars(
        select(Screenshot).where(Screenshot.crawl_id == audit.crawl_id).order_by(Screenshot.id)
    ):
        entry = _plain(row_data(shot))
        (target / "screenshots").mkdir(exist_ok=True)
        name = f"screenshots/{shot.content_hash}.png"
        try:
            (target / name).write_bytes(blobs.get(shot.content_hash, verify=False))
        except EvidenceError:
            name = f"(missing: {shot.content_hash})"
        entry["file"] = name
        shots.append(entry)
    _write_json(target / "screenshots.json", shots)
    findings = session.scalars(
        select(Finding).where(Finding.audit_id == audit.id).order_by(Finding.id)
    ).all()
    _write_json(target / "findings.json", [_plain(row_data(f)) for f in findings])
    _write_json(target / "audit.json", audit_doc)
    _write_json(target / "verification.json", verdict.as_dict())
    (target / "README.txt").write_text(
        README.format(
            audit_id=audit.id,
            domain=audit.site.domain,
            status=verdict.status + "".join(f"\n  - {p}" for p in verdict.problems),
        ),
        encoding="utf-8",
    )
    sums = []
    for path in sorted(p for p in target.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        sums.append(f"{sha256_hex(path.read_bytes())}  {path.relative_to(target).as_posix()}")
    (target / "SHA256SUMS").write_text("\n".join(sums) + "\n", encoding="utf-8")
    return target, verdict


def _write_json(path: Path, data: Any) -> None:
    path.write_text(
        json.dumps(_plain(data), ensure_ascii=False, indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
