"""Findings across sites, overriding a finding, and the stored evidence behind them.

Stored pages are crawled, hostile markup: ``/evidence/<hash>`` never lets a browser render
them. They are sent as ``text/plain`` with ``nosniff``, ``Content-Disposition: attachment``
and ``Content-Security-Policy: sandbox`` (RELIABILITY.md T38): no script runs, no
``<meta refresh>`` navigates, whatever the browser does with the bytes. Screenshots are
PNGs written by our own crawler and shown as images.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audits.evidence import BlobStore, EvidenceError
from audits.models import Audit, Finding, Screenshot, Snapshot
from audits.overrides import OverrideError, add_override
from ectrust.web import queries
from ectrust.web.common import form_text, settings, store

bp = Blueprint("findings", __name__)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
EVIDENCE_CSP = "sandbox; default-src 'none'"


@bp.get("/findings")
def index() -> Any:
    """The failing findings (after overrides) of every site's latest audit."""
    with store().session(readonly=True) as session:
        latest = select(func.max(Audit.id)).where(Audit.kind == "audit").group_by(Audit.site_id)
        rows = []
        for audit in session.scalars(select(Audit).where(Audit.id.in_(latest))):
            for f in queries.findings_view(session, audit):
                if f["in_force"] in ("fail", "error", "review"):
                    rows.append({**f, "domain": audit.site.domain, "audit_id": audit.id})
    rows.sort(key=lambda r: (r["domain"], r["rule_id"]))
    return render_template("findings.html.j2", rows=rows)


@bp.post("/findings/<int:finding_id>/override")
def override(finding_id: int) -> Any:
    try:
        with store().session() as session:
            add_override(
                session,
                finding_id,
                request.form.get("status", ""),
                form_text(request.form, "reason"),
                current_user.username,
            )
            audit_id = session.get(Finding, finding_id).audit_id
    except OverrideError as exc:
        with store().session(readonly=True) as session:
            found = session.get(Finding, finding_id)
            if found is None:
                abort(404)
            audit_id = found.audit_id
        flash(f"未保存 Not saved: {exc}")
        return redirect(url_for("sites.audit", audit_id=audit_id, _anchor=f"f{finding_id}"), 303)
    flash("已记录复核意见 Override recorded")
    return redirect(url_for("sites.audit", audit_id=audit_id, _anchor=f"f{finding_id}"), 303)


def _stored(digest: str, known: Callable[[Session], Any]) -> tuple[Any, bytes]:
    """An evidence file the database knows of, by its SHA-256: ``known`` looks it up (None:
    404); a file gone from the evidence store is 410."""
    if not SHA256.match(digest):
        abort(404)
    with store().session(readonly=True) as session:
        found = known(session)
    if found is None:
        abort(404)
    try:
        return found, BlobStore(settings().home).get(digest)
    except EvidenceError:
        abort(410)


@bp.get("/evidence/<digest>")
def evidence(digest: str) -> Response:
    known, body = _stored(
        digest,
        lambda s: s.scalar(select(Snapshot.url).where(Snapshot.content_hash == digest)),
    )
    resp = Response(body, mimetype="text/plain")
    resp.charset = "utf-8"
    resp.headers["Content-Disposition"] = f'attachment; filename="{digest}.txt"'
    resp.headers["X-Ectrust-Source-Url"] = known.encode("ascii", "replace").decode()[:500]
    resp.headers["Content-Security-Policy"] = EVIDENCE_CSP
    return resp


def _snapshot_source(session: Session, digest: str) -> tuple[str, str] | None:
    snap = session.scalars(select(Snapshot).where(Snapshot.content_hash == digest)).first()
    return None if snap is None else (snap.url, snap.crawl.site.domain)


@bp.get("/evidence/<digest>/view")
def evidence_page(digest: str) -> Any:
    """The stored page's source as escaped text inside our own page (never rendered)."""
    (url, domain), body = _stored(digest, lambda s: _snapshot_source(s, digest))
    text = body[:500_000].decode("utf-8", "replace")
    return render_template("evidence.html.j2", digest=digest, url=url, domain=domain, text=text)


@bp.get("/screenshots/<digest>.png")
def screenshot(digest: str) -> Response:
    _, body = _stored(
        digest,
        lambda s: s.scalar(select(Screenshot.id).where(Screenshot.content_hash == digest)),
    )
    if not body.startswith(b"\x89PNG\r\n\x1a\n"):
        abort(404)
    return Response(body, mimetype="image/png")
