"""The certificate lifecycle: issue, renew, suspend, reinstate, revoke; with its history.

Every change mirrors the new state onto the ``certificates`` row (for queries and the live
badge) and appends a ``certificate_events`` row with the reason and who made it; events are
append-only in the database. Nothing is ever deleted: a revoked certificate stays on record,
and a site that is certified again gets a new certificate id.

Expiry is not a stored state: a certificate whose ``valid_until`` has passed is ``expired``
whatever its status says (CONTRACT.md), computed from dates when it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import regex
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from audits.models import Certificate, CertificateEvent, Site, utcnow
from audits.registry import CERT_ID, TIERS, RegistryError, normalise_domain

TIER_NAMES = {"red": {"zh": "红标", "en": "red badge"}, "blue": {"zh": "蓝标", "en": "blue badge"}}
STATE_NAMES = {
    "certified": {"zh": "有效", "en": "valid"},
    "expired": {"zh": "已过期", "en": "expired"},
    "suspended": {"zh": "已暂停", "en": "suspended"},
    "revoked": {"zh": "已撤销", "en": "revoked"},
}
DEFAULT_PREFIX = "ECT"


class LifecycleError(RegistryError):
    """A change the lifecycle does not allow, or bad input (CLI exit status 2)."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise LifecycleError("a reason is required for every certificate change (--reason)")
    return reason


def add_years(day: date, years: int) -> date:
    """``day`` plus whole years, the day before the anniversary (a one-year certificate from
    2026-03-01 is valid until 2027-02-28)."""
    try:
        anniversary = day.replace(year=day.year + years)
    except ValueError:  # 29 February
        anniversary = day.replace(year=day.year + years, day=28)
    return anniversary - timedelta(days=1)


def get_certificate(session: Session, cert_id: str) -> Certificate:
    cert = session.scalar(
        select(Certificate)
        .where(Certificate.cert_id == cert_id)
        .options(selectinload(Certificate.site), selectinload(Certificate.events))
    )
    if cert is None:
        raise LifecycleError(f"no certificate {cert_id!r}")
    return cert


def next_cert_id(session: Session, year: int, prefix: str = DEFAULT_PREFIX) -> str:
    """ECT-<year>-<serial>: the next serial after the highest of that year."""
    pattern = regex.compile(rf"^{regex.escape(prefix)}-{year}-(\d+)$")
    serials = [
        int(m.group(1))
        for cid in session.scalars(
            select(Certificate.cert_id).where(Certificate.cert_id.like(f"{prefix}-{year}-%"))
        )
        if (m := pattern.match(cid))
    ]
    return f"{prefix}-{year}-{max(serials, default=0) + 1:04d}"


def _event(cert: Certificate, reason: str, actor: str) -> CertificateEvent:
    return CertificateEvent(
        certificate_id=cert.id,
        status=cert.status,
        tier=cert.tier,
        valid_from=cert.valid_from,
        valid_until=cert.valid_until,
        reason=reason,
        actor=actor,
    )


def issue(
    session: Session,
    domain: str,
    *,
    tier: str,
    reason: str,
    actor: str,
    valid_from: date,
    valid_until: date | None = None,
    years: int = 1,
    cert_id: str | None = None,
) -> Certificate:
    """A new certificate for a registered site. Refused while the site holds a current
    (certified or suspended, not expired) certificate: renew or revoke that one first."""
    reason = _reason(reason)
    try:
        domain = normalise_domain(domain)
    except ValueError as exc:
        raise LifecycleError(str(exc)) from exc
    site = session.scalar(
        select(Site).where(Site.domain == domain).options(selectinload(Site.certificates))
    )
    if site is None or not site.registered:
        raise LifecycleError(f"{domain} is not registered (add it with `ectrust sites add`)")
    if tier not in TIERS:
        raise LifecycleError(f"tier {tier!r} must be red or blue")
    today = valid_from
    for existing in site.certificates:
        if existing.effective_status(today) in ("certified", "suspended"):
            raise LifecycleError(
                f"{domain} already holds certificate {existing.cert_id} "
                f"({existing.effective_status(today)}); renew or revoke it instead"
            )
    until = valid_until or add_years(valid_from, years)
    if until < valid_from:
        raise LifecycleError("valid until is before valid from")
    cert_id = cert_id or next_cert_id(session, valid_from.year)
    if not CERT_ID.match(cert_id):
        raise LifecycleError(f"certificate id {cert_id!r} must be letters, digits, '.', '_', '-'")
    if session.scalar(select(func.count()).where(Certificate.cert_id == cert_id)):
        raise LifecycleError(f"certificate id {cert_id} is already taken")
    cert = Certificate(
        cert_id=cert_id,
        site_id=site.id,
        tier=tier,
        status="certified",
        valid_from=valid_from,
        valid_until=until,
    )
    session.add(cert)
    session.flush()
    session.add(_event(cert, reason, actor))
    session.flush()
    return cert


def renew(
    session: Session,
    cert_id: str,
    *,
    reason: str,
    actor: str,
    today: date,
    valid_until: date | None = None,
    years: int = 1,
    tier: str | None = None,
) -> Certificate:
    """Extend validity (default: one year after the current end, or after today if it has
    already passed); optionally change tier. A suspended or revoked certificate cannot be
    renewed."""
    reason = _reason(reason)
    cert = get_certificate(session, cert_id)
    if cert.status in ("suspended", "revoked"):
        hint = "reinstate it first" if cert.status == "suspended" else "issue a new certificate"
        raise LifecycleError(f"certificate {cert_id} is {cert.status}: {hint}")
    if tier is not None and tier not in TIERS:
        raise LifecycleError(f"tier {tier!r} must be red or blue")
    base = max(cert.valid_until or today, today - timedelta(days=1))
    until = valid_until or add_years(base + timedelta(days=1), years)
    if cert.valid_until is not None and until <= cert.valid_until:
        raise LifecycleError(
            f"new end {until.isoformat()} is not after the current end "
            f"{cert.valid_until.isoformat()}"
        )
    cert.valid_until = until
    cert.status = "certified"
    if tier is not None:
        cert.tier = tier
    cert.updated_at = utcnow()
    session.add(_event(cert, reason, actor))
    session.flush()
    return cert


def _set_status(
    session: Session, cert_id: str, status: str, allowed: tuple[str, ...], reason: str, actor: str
) -> Certificate:
    reason = _reason(reason)
    cert = get_certificate(session, cert_id)
    if cert.status not in allowed:
        raise LifecycleError(f"certificate {cert_id} is {cert.status}: cannot make it {status}")
    cert.status = status
    cert.updated_at = utcnow()
    session.add(_event(cert, reason, actor))
    session.flush()
    return cert


def suspend(session: Session, cert_id: str, *, reason: str, actor: str) -> Certificate:
    return _set_status(session, cert_id, "suspended", ("certified",), reason, actor)


def reinstate(session: Session, cert_id: str, *, reason: str, actor: str) -> Certificate:
    return _set_status(session, cert_id, "certified", ("suspended",), reason, actor)


def revoke(session: Session, cert_id: str, *, reason: str, actor: str) -> Certificate:
    """Final: a revoked certificate is never valid again."""
    return _set_status(session, cert_id, "revoked", ("certified", "suspended"), reason, actor)


@dataclass
class PublicCertificate:
    """What the public verification page and the badge show about a certificate."""

    cert_id: str
    holder: str
    domains: list[str]
    tier: str
    state: str  # certified | expired | suspended | revoked (effective today)
    valid_from: date | None
    valid_until: date | None
    changed: list[tuple[str, str]]  # (date, state) of each status change, oldest first


def certificate_domains(site: Site) -> list[str]:
    """The hosts a certificate covers: the site's domain and the start URL's host."""
    from urllib.parse import urlsplit

    hosts = [site.domain]
    start = (urlsplit(site.start_url).hostname or "").lower()
    if start and start not in hosts:
        hosts.append(start)
    return hosts


def covers(domains: list[str], host: str) -> bool:
    """Is ``host`` one of the certificate's domains (or a subdomain of one, e.g. www.)?"""
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)


EVENT_NAMES = {
    "certified": {"zh": "认证有效", "en": "certified"},
    "renewed": {"zh": "续期", "en": "renewed"},
    "expired": {"zh": "到期", "en": "expired"},
    "suspended": {"zh": "暂停", "en": "suspended"},
    "revoked": {"zh": "撤销", "en": "revoked"},
}


def public_view(cert: Certificate, today: date) -> PublicCertificate:
    """The public history shows status changes and renewals, never the internal reasons. The
    first entry is dated from ``valid_from`` (an imported certificate was issued before it
    was recorded here); expiry, which is not an event, is added when it has passed."""
    changed: list[tuple[str, str]] = []
    last_status, last_until = None, None
    for i, ev in enumerate(cert.events):
        day = ev.at.date()
        if i == 0 and ev.valid_from is not None:
            day = min(day, ev.valid_from)
        if ev.status != last_status:
            changed.append((day.isoformat(), ev.status))
        elif ev.valid_until != last_until and ev.status == "certified":
            changed.append((day.isoformat(), "renewed"))
        last_status, last_until = ev.status, ev.valid_until
    if cert.effective_status(today) == "expired" and cert.valid_until is not None:
        changed.append((cert.valid_until.isoformat(), "expired"))
    return PublicCertificate(
        cert_id=cert.cert_id,
        holder=cert.site.name or cert.site.domain,
        domains=certificate_domains(cert.site),
        tier=cert.tier,
        state=cert.effective_status(today),
        valid_from=cert.valid_from,
        valid_until=cert.valid_until,
        changed=changed,
    )


def certificate_record(cert: Certificate, today: date) -> dict[str, Any]:
    """``cert show --json``: the certificate now and its full history."""
    return {
        "certificate_id": cert.cert_id,
        "domain": cert.site.domain,
        "holder": cert.site.name,
        "tier": cert.tier,
        "status": cert.status,
        "effective_status": cert.effective_status(today),
        "valid_from": cert.valid_from.isoformat() if cert.valid_from else None,
        "valid_until": cert.valid_until.isoformat() if cert.valid_until else None,
        "history": [
            {
                "at": ev.at.isoformat(),
                "status": ev.status,
                "tier": ev.tier,
                "valid_from": ev.valid_from.isoformat() if ev.valid_from else None,
                "valid_until": ev.valid_until.isoformat() if ev.valid_until else None,
                "reason": ev.reason,
                "actor": ev.actor,
            }
            for ev in cert.events
        ],
    }
