"""The site registry: sites and their certificates, imported from CSV or added one by one.

An import is all or nothing: every row is validated first, and one bad row means nothing
from the file is written. Applicant-supplied URLs are checked here (first line of the address
policy; the crawler checks again when it connects).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import regex
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from audits.models import Certificate, CertificateEvent, Site, utcnow

CSV_COLUMNS = [
    "domain",
    "name",
    "start_url",
    "industry",
    "status",
    "certificate_id",
    "badge",
    "valid_from",
    "valid_until",
]
STATUSES = ("applicant", "certified", "suspended", "revoked")
TIERS = ("red", "blue")
LABEL = regex.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
CERT_ID = regex.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
BLOCKED_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "metadata.google.internal")


class RegistryError(ValueError):
    """Bad input for the registry; ``problems`` name the line and what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _numeric_host(name: str) -> bool:
    """True for the numeric host forms resolvers accept as IPv4 addresses (inet_aton):
    ``127.1``, ``0x7f.1``, ``2130706433``, ``017700000001``."""
    import socket

    try:
        socket.inet_aton(name)
    except OSError:
        return False
    return True


def normalise_domain(value: str) -> str:
    domain = value.strip().lower().rstrip(".")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"domain {value!r} is not a valid host name") from exc
    labels = domain.split(".")
    if len(labels) < 2 or not all(LABEL.match(label) for label in labels):
        raise ValueError(f"domain {value!r} is not a host name like shop.example")
    if domain in BLOCKED_NAMES or labels[-1] in ("localhost", "local", "internal"):
        raise ValueError(f"domain {value!r} names a local host, not a website")
    if all(label.isdigit() for label in labels) or _numeric_host(domain):
        raise ValueError(f"domain {value!r} is an IP address; register the site's host name")
    return domain


def check_start_url(url: str, domain: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"start_url {url!r} must be an http:// or https:// URL")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError(f"start_url {url!r} has no host")
    # The domain is a host name, never an IP address, so this also keeps IP-literal URLs
    # (127.0.0.1, [::1], 2130706433 …) out of the registry.
    if host != domain and not host.endswith("." + domain):
        raise ValueError(f"start_url host {host!r} is not {domain!r} or one of its subdomains")
    if parts.username or parts.password:
        raise ValueError(f"start_url {url!r} must not carry a user name or password")
    return url


def _date(value: str, column: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"{column} {value!r} is not an ISO date (YYYY-MM-DD)") from exc


@dataclass
class SiteRow:
    line: int
    domain: str
    name: str
    start_url: str
    industry: str
    status: str
    certificate_id: str | None
    badge: str | None
    valid_from: date | None
    valid_until: date | None


def parse_row(row: dict[str, str], line: int) -> SiteRow:
    def get(col: str) -> str:
        return (row.get(col) or "").strip()

    domain = normalise_domain(get("domain"))
    status = get("status").lower() or "applicant"
    if status not in STATUSES:
        raise ValueError(f"status {get('status')!r} must be one of {', '.join(STATUSES)}")
    start_url = check_start_url(get("start_url") or f"http://{domain}/", domain)
    cert_id, badge = get("certificate_id") or None, get("badge").lower() or None
    valid_from = _date(get("valid_from"), "valid_from") if get("valid_from") else None
    valid_until = _date(get("valid_until"), "valid_until") if get("valid_until") else None
    if status == "applicant":
        if cert_id or badge or valid_from or valid_until:
            raise ValueError(
                "an applicant has no certificate: leave certificate_id, badge, "
                "valid_from and valid_until empty"
            )
    else:
        missing = [
            c
            for c, v in (
                ("certificate_id", cert_id),
                ("badge", badge),
                ("valid_from", valid_from),
                ("valid_until", valid_until),
            )
            if not v
        ]
        if missing:
            raise ValueError(f"status {status} needs {', '.join(missing)}")
        if not CERT_ID.match(cert_id or ""):
            raise ValueError(f"certificate_id {cert_id!r} must be letters, digits, '.', '_' or '-'")
        if badge not in TIERS:
            raise ValueError(f"badge {badge!r} must be red or blue")
        if valid_from and valid_until and valid_until < valid_from:
            raise ValueError("valid_until is before valid_from")
    return SiteRow(
        line,
        domain,
        get("name"),
        start_url,
        get("industry"),
        status,
        cert_id,
        badge,
        valid_from,
        valid_until,
    )


@dataclass
class ImportCounts:
    sites_added: int = 0
    sites_updated: int = 0
    sites_unchanged: int = 0
    certificates_added: int = 0
    certificates_changed: int = 0


def read_csv(path: Path) -> list[SiteRow]:
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise RegistryError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise RegistryError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise RegistryError(
            [
                f"{path}:1: missing column(s) {', '.join(missing)}; expected "
                f"header: {','.join(CSV_COLUMNS)}"
            ]
        )
    reader.fieldnames = header
    rows, problems, domains, certs = [], [], {}, {}
    for row in reader:
        line = reader.line_num
        if None in row:
            problems.append(f"{path}:{line}: more fields than the header has")
            continue
        if not any((v or "").strip() for v in row.values()):
            continue
        try:
            parsed = parse_row(row, line)
        except ValueError as exc:
            problems.append(f"{path}:{line}: {exc}")
            continue
        if parsed.domain in domains:
            problems.append(
                f"{path}:{line}: domain {parsed.domain} already on line {domains[parsed.domain]}"
            )
        domains[parsed.domain] = line
        if parsed.certificate_id:
            if parsed.certificate_id in certs:
                problems.append(
                    f"{path}:{line}: certificate_id {parsed.certificate_id} already "
                    f"on line {certs[parsed.certificate_id]}"
                )
            certs[parsed.certificate_id] = line
        rows.append(parsed)
    if problems:
        raise RegistryError(problems)
    return rows


def import_rows(
    session: Session, rows: list[SiteRow], source: str, actor: str = "import"
) -> ImportCounts:
    counts = ImportCounts()
    existing = {
        s.domain: s for s in session.scalars(select(Site).options(selectinload(Site.certificates)))
    }
    certs = {c.cert_id: c for c in session.scalars(select(Certificate))}
    problems = []
    for row in rows:
        owner = certs.get(row.certificate_id or "")
        if owner is not None and owner.site.domain != row.domain:
            problems.append(
                f"{source}:{row.line}: certificate_id {row.certificate_id} belongs "
                f"to {owner.site.domain}"
            )
    if problems:
        raise RegistryError(problems)
    for row in rows:
        site = existing.get(row.domain)
        if site is None:
            site = Site(
                domain=row.domain, name=row.name, start_url=row.start_url, industry=row.industry
            )
            session.add(site)
            session.flush()
            counts.sites_added += 1
        elif (site.name, site.start_url, site.industry, site.registered) != (
            row.name,
            row.start_url,
            row.industry,
            True,
        ):
            site.name, site.start_url, site.industry = row.name, row.start_url, row.industry
            site.registered = True  # a site seen by a badge check may apply later
            site.updated_at = utcnow()
            counts.sites_updated += 1
        else:
            counts.sites_unchanged += 1
        if row.status == "applicant":
            continue
        cert = certs.get(row.certificate_id or "")
        state = (row.badge, row.status, row.valid_from, row.valid_until)
        if cert is None:
            cert = Certificate(
                cert_id=row.certificate_id,
                site_id=site.id,
                tier=row.badge,
                status=row.status,
                valid_from=row.valid_from,
                valid_until=row.valid_until,
            )
            session.add(cert)
            session.flush()
            counts.certificates_added += 1
            reason = f"imported from {source} line {row.line}"
        elif (cert.tier, cert.status, cert.valid_from, cert.valid_until) != state:
            cert.tier, cert.status = row.badge, row.status
            cert.valid_from, cert.valid_until = row.valid_from, row.valid_until
            cert.updated_at = utcnow()
            counts.certificates_changed += 1
            reason = f"updated from {source} line {row.line}"
        else:
            continue
        session.add(
            CertificateEvent(
                certificate_id=cert.id,
                status=row.status,
                tier=row.badge,
                valid_from=row.valid_from,
                valid_until=row.valid_until,
                reason=reason,
                actor=actor,
            )
        )
    return counts


def add_site(session: Session, domain: str, url: str, name: str = "", industry: str = "") -> Site:
    try:
        domain = normalise_domain(domain)
        url = check_start_url(url, domain)
    except ValueError as exc:
        raise RegistryError([str(exc)]) from exc
    existing = session.scalar(select(Site).where(Site.domain == domain))
    if existing is not None and existing.registered:
        raise RegistryError([f"{domain} is already registered (use `sites import` to update)"])
    if existing is not None:  # only seen by a badge check so far: it applies now
        existing.name, existing.start_url, existing.industry = name, url, industry
        existing.registered, existing.updated_at = True, utcnow()
        session.flush()
        return existing
    site = Site(domain=domain, name=name, start_url=url, industry=industry)
    session.add(site)
    session.flush()
    return site


def site_status(site: Site, today: date) -> str:
    cert = site.current_certificate
    return "applicant" if cert is None else cert.effective_status(today)


def site_record(site: Site, today: date) -> dict[str, Any]:
    cert = site.current_certificate
    return {
        "domain": site.domain,
        "name": site.name,
        "start_url": site.start_url,
        "industry": site.industry,
        "status": site_status(site, today),
        "certificate_id": cert.cert_id if cert else None,
        "badge": cert.tier if cert else None,
        "valid_from": cert.valid_from.isoformat() if cert and cert.valid_from else None,
        "valid_until": cert.valid_until.isoformat() if cert and cert.valid_until else None,
    }
