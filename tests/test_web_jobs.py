"""Background audit jobs (ectrust/jobs.py) apart from the browser: bad requests are refused
before anything is queued, and a server restart fails the jobs it left unfinished."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from audits.account_models import AuditJob
from audits.db import Store
from audits.models import Site
from ectrust.jobs import JobError, fail_abandoned_jobs, start_audit_job
from tests.web_support import make_settings


@pytest.fixture
def store(db_url: str) -> Store:
    s = Store(db_url)
    with s.session() as session:
        session.add(Site(domain="books.example", start_url="http://books.example/"))
        session.add(Site(domain="seen.example", start_url="http://seen.example/", registered=False))
    return s


def test_bad_requests_queue_nothing(store: Store, tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path, db_url)
    with pytest.raises(JobError, match="not registered"):
        start_audit_job(store, settings, "nowhere.example", "eve")
    with pytest.raises(JobError, match="not registered"):
        start_audit_job(store, settings, "seen.example", "eve")  # observed, not registered
    with pytest.raises(JobError, match="render"):
        start_audit_job(store, settings, "books.example", "eve", render="sometimes")
    with pytest.raises(JobError, match="pages"):
        start_audit_job(store, settings, "books.example", "eve", max_pages=0)
    with store.session(readonly=True) as session:
        assert session.scalars(select(AuditJob)).all() == []


def test_restart_fails_unfinished_jobs(store: Store) -> None:
    with store.session() as session:
        site_id = session.scalar(select(Site.id).where(Site.domain == "books.example"))
        for status in ("queued", "running", "done", "failed"):
            session.add(AuditJob(site_id=site_id, status=status, requested_by="eve"))
    assert fail_abandoned_jobs(store) == 2
    with store.session(readonly=True) as session:
        jobs = session.scalars(select(AuditJob).order_by(AuditJob.id)).all()
        assert [j.status for j in jobs] == ["failed", "failed", "done", "failed"]
        assert "server stopped" in jobs[0].error and jobs[0].finished_at is not None
        assert jobs[3].error == ""  # an earlier failure keeps its own message
