"""The store's tables (SQLAlchemy 2). Schema changes go through Alembic migrations.

Crawls, snapshots, audits, findings, overrides and certificate events are appended, never
rewritten; findings, overrides and certificate events are protected by database triggers
(see the initial migration), not only by this code.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012 - SQLAlchemy API


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    start_url: Mapped[str] = mapped_column(String(2000))
    industry: Mapped[str] = mapped_column(String(100), default="")
    # False for a site ectrust only looked at (``badge check`` of a site showing the badge
    # without applying): it is kept for the evidence, but it is not in the registry.
    registered: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    certificates: Mapped[list[Certificate]] = relationship(
        back_populates="site", order_by="Certificate.id"
    )

    @property
    def current_certificate(self) -> Certificate | None:
        return self.certificates[-1] if self.certificates else None


class Certificate(Base):
    """The centre's certificate for one site. Its current state is mirrored here for queries;
    every change is also appended to ``certificate_events``."""

    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    cert_id: Mapped[str] = mapped_column(String(64), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    tier: Mapped[str] = mapped_column(String(8))  # red | blue
    status: Mapped[str] = mapped_column(String(16))  # certified | suspended | revoked
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    site: Mapped[Site] = relationship(back_populates="certificates")
    events: Mapped[list[CertificateEvent]] = relationship(order_by="CertificateEvent.id")

    def effective_status(self, today: date) -> str:
        """CONTRACT.md: a certificate past ``valid_until`` is expired whatever its status says."""
        if self.status in ("suspended", "revoked"):
            return self.status
        if self.valid_until is not None and self.valid_until < today:
            return "expired"
        return self.status


class CertificateEvent(Base):
    __tablename__ = "certificate_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    tier: Mapped[str] = mapped_column(String(8))
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(100), default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Crawl(Base):
    """One visit to one site. ``status``: running, finished, unreachable, crashed, timed_out."""

    __tablename__ = "crawls"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    start_url: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pages_fetched: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)

    site: Mapped[Site] = relationship()
    snapshots: Mapped[list[Snapshot]] = relationship(back_populates="crawl", order_by="Snapshot.id")


class Snapshot(Base):
    """One fetched URL. The body lives in the content-addressed store under ``content_hash``
    (SHA-256 of the raw bytes as received); failed fetches have ``error`` and no body."""

    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("crawl_id", "url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    final_url: Mapped[str] = mapped_column(String(2000))
    status: Mapped[int | None] = mapped_column(Integer)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer, default=0)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    referrer: Mapped[str | None] = mapped_column(String(2000))
    link_text: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(String(32), default="start")  # why it was fetched
    error: Mapped[str | None] = mapped_column(String(64))
    rendered: Mapped[bool] = mapped_column(Boolean, default=False)
    render_reason: Mapped[str] = mapped_column(String(200), default="")

    crawl: Mapped[Crawl] = relationship(back_populates="snapshots")


class Screenshot(Base):
    """A browser screenshot of a rendered page (viewport, full page, or one element such as
    the footer or the badge). The PNG lives in the content-addressed store."""

    __tablename__ = "screenshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))  # the snapshot's url
    kind: Mapped[str] = mapped_column(String(16))  # viewport | full_page | footer | badge
    selector: Mapped[str] = mapped_column(String(200), default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer, default=0)
    height: Mapped[int] = mapped_column(Integer, default=0)
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Audit(Base):
    """The rules of some packs evaluated over one crawl's snapshots."""

    __tablename__ = "audits"

    id: Mapped[int] = mapped_column(primary_key=True)
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="audit")  # audit | reaudit
    packs: Mapped[dict[str, Any]] = mapped_column(default=dict)  # pack id -> version, sha256
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    score: Mapped[float | None] = mapped_column(Float)
    reachable: Mapped[bool] = mapped_column(Boolean, default=False)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)  # privacy_policy, badge

    crawl: Mapped[Crawl] = relationship()
    site: Mapped[Site] = relationship()
    findings: Mapped[list[Finding]] = relationship(order_by="Finding.id")


class Finding(Base):
    """One rule's result. Append-only (database triggers); a correction is a new row."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"), index=True)
    rule_id: Mapped[str] = mapped_column(String(200))
    pack: Mapped[str] = mapped_column(String(100))
    rule_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"zh": …, "en": …}
    message: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[list[Any]] = mapped_column(default=list)
    references: Mapped[list[Any]] = mapped_column(default=list)
    guidance: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"zh": …, "en": …}
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("findings.id"))


class Override(Base):
    """An evaluator's decision on a finding; the finding itself stays as it was."""

    __tablename__ = "overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BadgeSighting(Base):
    """A badge or verification page requested from a page that is not the certificate's own
    site (``ectrust serve``: Referer/Origin). Append-only; queues the page's site for
    ``badge check --sightings``. No visitor data (address, cookies) is kept."""

    __tablename__ = "badge_sightings"

    id: Mapped[int] = mapped_column(primary_key=True)
    cert_id: Mapped[str] = mapped_column(String(64), index=True)  # as requested; may not exist
    domain: Mapped[str] = mapped_column(String(253), index=True)  # host of the showing page
    page: Mapped[str] = mapped_column(String(2000))  # Referer (often only the origin)
    source: Mapped[str] = mapped_column(String(16))  # badge | cert_page
    served: Mapped[str] = mapped_column(String(16))  # the badge variant or page state shown
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class BadgeCheck(Base):
    """One ``badge check`` of one site (registered or not): the verdict and, for misuse, the
    record a misuse report and a notice letter are written from. Append-only."""

    __tablename__ = "badge_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    domain: Mapped[str] = mapped_column(String(253), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"))
    audit_id: Mapped[int | None] = mapped_column(ForeignKey("audits.id"))
    verdict: Mapped[str | None] = mapped_column(String(32))  # CONTRACT verdict; None: not judged
    misuse: Mapped[bool] = mapped_column(Boolean, default=False)
    certificate_id: Mapped[str | None] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16), default="manual")  # manual | sighting
    record: Mapped[dict[str, Any]] = mapped_column(default=dict)  # see audits/misuse.py
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    site: Mapped[Site] = relationship()


class EvidenceManifest(Base):
    """The SHA-256 manifest of one audit's evidence (audits/manifest.py), chained to the
    site's previous manifest: ``previous_sha256`` is that manifest's ``sha256``. Append-only
    (database triggers); ``previous_id`` is unique, so the chain cannot fork."""

    __tablename__ = "evidence_manifests"

    id: Mapped[int] = mapped_column(primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    previous_id: Mapped[int | None] = mapped_column(
        ForeignKey("evidence_manifests.id"), unique=True
    )
    previous_sha256: Mapped[str | None] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # canonical JSON; sha256 is over its UTF-8 bytes
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# The monitoring tables (issue #7), the web application's accounts and audit jobs (issue #9)
# and the distributed job receipts (issue #10) live in their own modules; import them so they
# are part of Base.metadata wherever the models are (migrations, `alembic check`).
from audits import account_models as _account_models  # noqa: E402, F401
from audits import job_receipts as _job_receipts  # noqa: E402, F401
from audits import monitoring_models as _monitoring_models  # noqa: E402, F401
