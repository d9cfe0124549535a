"""The site list (with filters), a site's page, an audit's page, registering an applicant."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from audits.models import Audit, Snapshot
from audits.overrides import STATUSES as OVERRIDE_STATUSES
from audits.registry import RegistryError, add_site
from ectrust.jobs import RENDER_CHOICES
from ectrust.web import queries
from ectrust.web.common import form_text, settings, store, today

bp = Blueprint("sites", __name__)
FILTERS = ("status", "tier", "industry", "due", "failing")
STATUSES = ("applicant", "certified", "suspended", "revoked", "expired")


@bp.get("/sites")
def index() -> Any:
    rows = queries.site_rows(store(), settings(), today())
    args = {k: request.args.get(k, "") for k in FILTERS}
    industries = sorted({r["industry"] for r in rows if r["industry"]})
    return render_template(
        "sites.html.j2",
        rows=queries.filter_rows(rows, args),
        total=len(rows),
        args=args,
        industries=industries,
        statuses=STATUSES,
    )


@bp.route("/sites/new", methods=["GET", "POST"])
def register() -> Any:
    if request.method == "GET":
        return render_template("register.html.j2", form={})
    form = {k: form_text(request.form, k, 253 if k == "domain" else 2000)
            for k in ("domain", "url", "name", "industry")}  # fmt: skip
    try:
        with store().session() as session:
            site = add_site(session, form["domain"], form["url"], form["name"], form["industry"])
            domain = site.domain
    except RegistryError as exc:
        for problem in exc.problems:
            flash(problem)
        return render_template("register.html.j2", form=form), 400
    flash(f"已登记 Registered {domain}")
    return redirect(url_for("sites.detail", domain=domain))


@bp.get("/sites/<domain>")
def detail(domain: str) -> Any:
    try:
        data = queries.site_detail(store(), settings(), domain, today())
    except LookupError:
        abort(404)
    return render_template(
        "site.html.j2",
        d=data,
        today=today(),
        render_choices=RENDER_CHOICES,
        override_statuses=OVERRIDE_STATUSES,
    )


@bp.get("/audits/<int:audit_id>")
def audit(audit_id: int) -> Any:
    with store().session(readonly=True) as session:
        found = session.get(Audit, audit_id)
        if found is None:
            abort(404)
        summary = queries.audit_summary(found)
        domain = found.site.domain
        findings = queries.findings_view(session, found)
        pages = [
            {"url": s.url, "status": s.status, "error": s.error, "link_text": s.link_text,
             "reason": s.reason, "content_hash": s.content_hash, "depth": s.depth}
            for s in session.scalars(
                select(Snapshot).where(Snapshot.crawl_id == found.crawl_id).order_by(Snapshot.id)
            )
        ]  # fmt: skip
    return render_template(
        "audit.html.j2",
        a=summary,
        domain=domain,
        findings=findings,
        pages=pages,
        override_statuses=OVERRIDE_STATUSES,
    )
