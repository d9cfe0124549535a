"""The job key of a distributed audit (issue #10), kept in its own file like the monitoring
tables; the class registers on the same ``Base`` (``audits.models`` imports this module).

A queue delivers each job at least once, so one job can run twice (a worker killed after
recording but before acknowledging, a visibility timeout passing while it still runs).
``job_receipts.job_key`` is the primary key and is inserted in the transaction that records
the audit: the second run's insert fails, its audit rolls back with it, and the job keeps
the one audit the first run recorded.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from audits.models import Base, utcnow


class JobReceipt(Base):
    """One finished distributed job: its key (the Celery task id) and the audit it recorded."""

    __tablename__ = "job_receipts"

    job_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
