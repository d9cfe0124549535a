"""Tables of the evaluators' web application (issue #9): accounts, login attempts (for
throttling) and background audit jobs with their progress.

Imported by audits/models.py so the tables are part of ``Base.metadata`` wherever the
models are (migrations, ``alembic check``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from audits.models import Base, utcnow

ROLES = ("evaluator", "administrator")


class User(Base):
    """A local account. ``session_epoch`` is part of the login session's id: changing the
    password or disabling the account bumps it, so every existing session stops working."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(16))  # evaluator | administrator
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LoginAttempt(Base):
    """Every login attempt, kept for throttling (per account and per client address)."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    success: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class AuditJob(Base):
    """An audit started from the web: ``status`` queued, running, done or failed;
    ``stage`` says where a running job is (crawling, judging)."""

    __tablename__ = "audit_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    stage: Mapped[str] = mapped_column(String(16), default="")
    render: Mapped[str] = mapped_column(String(8), default="auto")
    max_pages: Mapped[int] = mapped_column(Integer, default=30)
    crawl_id: Mapped[int | None] = mapped_column(ForeignKey("crawls.id"))
    audit_id: Mapped[int | None] = mapped_column(ForeignKey("audits.id"))
    error: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
