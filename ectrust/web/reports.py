"""Generating and downloading reports: the same functions as ``ectrust report`` (reports/
data.py gathers, reports/render.py writes), into a private temporary folder, sent as a
download (``attachment``: a report of crawled text is never rendered on our origin). Several
files (CSV writes one per table) come as one ZIP."""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from sqlalchemy import func, select

from audits.evidence import BlobStore
from audits.models import Audit, Site
from ectrust.web.common import settings, store, today

bp = Blueprint("reports", __name__)
FORMATS = ("html", "pdf", "csv", "json")
KINDS = ("site", "survey", "monitoring", "misuse")
COHORT_STATUSES = ("applicant", "certified", "suspended", "revoked", "expired")


@bp.get("/reports")
def index() -> Any:
    with store().session(readonly=True) as session:
        domains = list(
            session.scalars(
                select(Site.domain)
                .join(Audit, Audit.site_id == Site.id)
                .where(Site.registered.is_(True))
                .group_by(Site.domain)
                .order_by(Site.domain)
            )
        )
        industries = sorted(i for i in session.scalars(select(Site.industry).distinct()) if i)
    return render_template(
        "reports.html.j2",
        domains=domains,
        industries=industries,
        formats=FORMATS,
        statuses=COHORT_STATUSES,
        selected=request.args.get("domain", ""),
        since=(today() - timedelta(days=30)).isoformat(),
        until=today().isoformat(),
    )


def _latest_audit(domain: str) -> int | None:
    with store().session(readonly=True) as session:
        return session.scalar(select(func.max(Audit.id)).join(Site).where(Site.domain == domain))


def _day(form: Any, name: str) -> date | None:
    raw = form.get(name) or ""
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        raise LookupError(f"{name} {raw!r}: expected YYYY-MM-DD") from None


def _monitoring(form: Any, lang: str, blobs: BlobStore) -> dict[str, Any]:
    """The period and cohort as ``ectrust report monitoring`` takes them (default: the last
    30 days), with the deployment's cadence policy (``$ECTRUST_HOME/schedule.toml``)."""
    from audits.cadence import CadenceConfigError, Policy
    from reports.monitoring import Period, monitoring_report

    status = form.get("status") or None
    if status is not None and status not in COHORT_STATUSES:
        raise LookupError(f"status {status!r}")
    until = _day(form, "until") or today()
    since = _day(form, "since") or until - timedelta(days=30)
    if since > until:
        raise LookupError(f"the period starts ({since}) after it ends ({until})")
    try:
        policy = Policy.from_env(settings().home)
    except CadenceConfigError as exc:
        raise LookupError(str(exc)) from exc
    period = Period(since, until, form.get("industry") or None, status)
    return monitoring_report(store(), period, policy=policy, blobs=blobs, lang=lang)


def _write(kind: str, form: Any, out: Path, fmt: str, lang: str) -> list[Path]:
    from reports import data, render

    blobs = BlobStore(settings().home)
    if kind == "site":
        audit_id = (
            int(form["audit_id"]) if form.get("audit_id") else _latest_audit(form.get("domain", ""))
        )
        with store().session(readonly=True) as session:
            if audit_id is None or session.get(Audit, audit_id) is None:
                raise LookupError("no audit for this site yet")
            entries = data.site_entries(session, [audit_id], lang, blobs)
        docs = [e["doc"] for e in entries]
        return render.write_site_report(docs, out, [fmt], lang, entries=entries)
    if kind == "survey":
        status = form.get("status") or None
        if status is not None and status not in COHORT_STATUSES:
            raise LookupError(f"status {status!r}")
        cohort = data.Cohort(form.get("industry") or None, status, None, None)
        with store().session(readonly=True) as session:
            result = data.survey(
                session, cohort, anonymous=bool(form.get("anonymise")), blobs=blobs
            )
        if not result["sites"]:
            raise LookupError("no audited sites in this cohort")
        return render.write_survey_report(result, out, [fmt], lang)
    if kind == "monitoring":
        return render.write_monitoring_report(_monitoring(form, lang, blobs), out, [fmt], lang)
    with store().session(readonly=True) as session:
        cases = data.misuse_cases(
            session, since=None, until=None, domains=None, lang=lang, blobs=blobs
        )
    return render.write_misuse_report(cases, out, [fmt], lang, selection={"domains": []})


@bp.post("/reports")
def generate() -> Any:
    kind, fmt = request.form.get("kind", ""), request.form.get("format", "html")
    lang = "zh" if request.form.get("lang") == "zh" else "en"
    if kind not in KINDS or fmt not in FORMATS:
        abort(400)
    with tempfile.TemporaryDirectory(prefix="ectrust-report-") as tmp:
        try:
            paths = _write(kind, request.form, Path(tmp), fmt, lang)
        except (LookupError, ValueError) as exc:
            flash(f"无法生成报告 No report: {exc}")
            return redirect(url_for("reports.index"), 303)
        stamp = today().isoformat()
        if len(paths) == 1:
            payload = io.BytesIO(paths[0].read_bytes())
            name = f"{paths[0].stem}-{stamp}{paths[0].suffix}"
        else:
            payload = io.BytesIO()
            with zipfile.ZipFile(payload, "w", zipfile.ZIP_DEFLATED) as zf:
                for p in paths:
                    zf.write(p, p.name)
            payload.seek(0)
            name = f"{kind}-{stamp}-{fmt}.zip"
    return send_file(payload, as_attachment=True, download_name=name)
