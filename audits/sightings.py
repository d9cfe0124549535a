"""Badge sightings: the badge server's record of its badge shown on pages that are not the
certificate's site, and the queue of sites to check that follows from it.

A sighting is appended when ``/badge/<id>.svg`` or ``/cert/<id>`` is requested with a
Referer or Origin whose host the certificate does not cover (or for a certificate that does
not exist). The same page is recorded at most once per ``DEDUP_MINUTES`` so a busy page
cannot flood the table. The queue is derived, not stored: a sighted domain is due for a
``badge check`` when no check of it started after its latest sighting. At most
``MAX_PER_HOUR`` sightings are recorded per hour, whatever the Referers claim.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audits.models import BadgeCheck, BadgeSighting, Site, utcnow
from audits.registry import normalise_domain

DEDUP_MINUTES = 10
MAX_PER_HOUR = 2000
logger = logging.getLogger(__name__)


def referring_page(referer: str | None, origin: str | None) -> tuple[str, str] | None:
    """(host, page URL) of the page that asked, from Referer (preferred: it has the path)
    or Origin; None when neither names an http(s) host."""
    for value in (referer, origin):
        value = (value or "").strip()
        if not value or value == "null":
            continue
        parts = urlsplit(value)
        host = (parts.hostname or "").lower().rstrip(".")
        if parts.scheme in ("http", "https") and host:
            return host, value[:2000]
    return None


def record_sighting(
    session: Session,
    *,
    cert_id: str,
    domain: str,
    page: str,
    source: str,
    served: str,
    user_agent: str = "",
    now: datetime | None = None,
) -> bool:
    """Append a sighting unless the same page was recorded lately; True if appended."""
    now = now or utcnow()
    last_hour = session.scalar(
        select(func.count())
        .select_from(BadgeSighting)
        .where(BadgeSighting.at >= now - timedelta(hours=1))
    )
    if last_hour >= MAX_PER_HOUR:
        # Forged Referers must not fill the disk; the sites already queued still get checked.
        logger.warning("badge sightings: %d in the last hour, not recording more", last_hour)
        return False
    recent = session.scalar(
        select(func.count())
        .select_from(BadgeSighting)
        .where(
            BadgeSighting.cert_id == cert_id,
            BadgeSighting.page == page,
            BadgeSighting.source == source,
            BadgeSighting.at >= now - timedelta(minutes=DEDUP_MINUTES),
        )
    )
    if recent:
        return False
    session.add(
        BadgeSighting(
            cert_id=cert_id[:64],
            domain=domain[:253],
            page=page[:2000],
            source=source,
            served=served,
            user_agent=user_agent[:300],
            at=now,
        )
    )
    return True


@dataclass
class QueuedSite:
    domain: str
    url: str  # the latest page it was sighted on (where the check starts)
    cert_ids: list[str]
    sightings: int
    last_seen: datetime


def sighting_queue(session: Session) -> list[QueuedSite]:
    """Sighted sites due for a check: not checked since their latest sighting, and not
    registered holders of a current certificate (their own audits cover them). Domains
    that are not valid public host names (a forged Referer) are left out."""
    latest_check = dict(
        session.execute(
            select(BadgeCheck.domain, func.max(BadgeCheck.created_at)).group_by(BadgeCheck.domain)
        ).all()
    )
    registered = set(session.scalars(select(Site.domain).where(Site.registered.is_(True))))
    queue: dict[str, QueuedSite] = {}
    for s in session.scalars(select(BadgeSighting).order_by(BadgeSighting.at)):
        try:
            domain = normalise_domain(s.domain)
        except ValueError:
            continue
        if domain in registered:
            continue
        checked = latest_check.get(domain)
        if checked is not None and _naive(checked) >= _naive(s.at):
            continue
        item = queue.get(domain)
        url = s.page if urlsplit(s.page).path else s.page + "/"
        if item is None:
            queue[domain] = QueuedSite(domain, url, [s.cert_id], 1, s.at)
        else:
            item.sightings += 1
            item.url, item.last_seen = url, s.at
            if s.cert_id not in item.cert_ids:
                item.cert_ids.append(s.cert_id)
    return sorted(queue.values(), key=lambda q: q.last_seen)


def _naive(dt: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes, PostgreSQL aware ones: compare as naive UTC."""
    return dt if dt.tzinfo is None else dt.astimezone(UTC).replace(tzinfo=None)
