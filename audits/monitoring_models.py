"""Tables of the re-check scheduler, change detection and alerting (issue #7).

Kept apart from ``audits/models.py`` so the monitoring feature stays in its own files; the
classes register on the same ``Base`` (``audits.models`` imports this module at its end).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from audits.models import Base, utcnow

# APScheduler's SQLAlchemyJobStore table, declared here (same columns as APScheduler 3.x
# creates) so the migration owns it and `alembic check` sees no drift.
APSCHEDULER_TABLE = "apscheduler_jobs"
apscheduler_jobs = Table(
    APSCHEDULER_TABLE,
    Base.metadata,
    Column("id", String(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class SchedulerLease(Base):
    """The one row that says which scheduler process owns this database, until when.

    A scheduler renews ``expires_at`` while it runs; a second scheduler refuses to start
    while the lease is current and takes it over once it has expired (a killed scheduler
    never releases it)."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ScheduledCheck(Base):
    """One scheduled re-check of one site for one due time. ``status``: running, done,
    timed_out, failed. UNIQUE(site_id, scheduled_for) stops two schedulers (or a scheduler
    and ``audit --due``) from running the same check twice."""

    __tablename__ = "scheduled_checks"
    __table_args__ = (UniqueConstraint("site_id", "scheduled_for"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    scheduled_for: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(String(32))  # certified | suspended | expiry | retry
    trigger: Mapped[str] = mapped_column(String(16))  # scheduler | due (audit --due)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    audit_id: Mapped[int | None] = mapped_column(ForeignKey("audits.id"))
    error: Mapped[str] = mapped_column(Text, default="")


class Change(Base):
    """One change between a site's audit and its previous one (audits/changes.py). Waits
    for the next alert digest (``digest_id`` null until then)."""

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"), index=True)
    previous_audit_id: Mapped[int | None] = mapped_column(ForeignKey("audits.id"))
    kind: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("alert_digests.id"), index=True)


class AlertDigest(Base):
    """One digest: every change not yet alerted, as sent (``payload``)."""

    __tablename__ = "alert_digests"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AlertDelivery(Base):
    """The outbox: one digest to one channel. A failed attempt stays ``pending`` with the
    error and a later ``next_attempt_at``; nothing is deleted."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("alert_digests.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # email | webhook
    target: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
