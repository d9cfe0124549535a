"""Starting an audit from the web and watching it: the job runs in the background
(ectrust/jobs.py); its page refreshes itself until the job is over."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from audits.account_models import AuditJob
from audits.models import Site
from ectrust.jobs import JobError, start_audit_job
from ectrust.web import queries
from ectrust.web.common import settings, store

bp = Blueprint("runs", __name__)
REFRESH_SECONDS = 2


def _start(domain: str, render: str, max_pages: int) -> Any:
    try:
        job_id = start_audit_job(
            store(),
            settings(),
            domain,
            current_user.username,
            render=render,
            max_pages=max_pages,
        )
    except JobError as exc:
        flash(str(exc))
        return redirect(url_for("sites.detail", domain=domain), 303)
    return redirect(url_for("runs.show", job_id=job_id), 303)


@bp.post("/sites/<domain>/audit")
def start(domain: str) -> Any:
    try:
        max_pages = int(request.form.get("max_pages") or 30)
    except ValueError:
        max_pages = 0
    return _start(domain, request.form.get("render", "auto"), max_pages)


@bp.post("/runs/<int:job_id>/rerun")
def rerun(job_id: int) -> Any:
    with store().session(readonly=True) as session:
        job = session.get(AuditJob, job_id)
        if job is None:
            abort(404)
        domain = session.get(Site, job.site_id).domain
        render, max_pages = job.render, job.max_pages
    return _start(domain, render, max_pages)


@bp.get("/runs")
def index() -> Any:
    with store().session(readonly=True) as session:
        jobs = [
            queries.job_view(session, j)
            for j in session.scalars(select(AuditJob).order_by(AuditJob.id.desc()).limit(100))
        ]
    return render_template("runs.html.j2", jobs=jobs)


@bp.get("/runs/<int:job_id>")
def show(job_id: int) -> Any:
    with store().session(readonly=True) as session:
        job = session.get(AuditJob, job_id)
        if job is None:
            abort(404)
        view = queries.job_view(session, job)
    active = view["status"] in ("queued", "running")
    return render_template("run.html.j2", job=view, refresh=REFRESH_SECONDS if active else None)
