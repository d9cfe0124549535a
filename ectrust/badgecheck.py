"""``ectrust badge check``: crawl any sites, registered or not, and judge the badge they show.

A site that is not in the registry is kept as an *observed* site (``sites.registered`` is
false: not listed, not audited with ``--all``) so its crawls and evidence have an owner. Only
the ``badge.valid`` rule runs, through the same crawl-then-judge pipeline as ``audit``. Each
check appends a ``badge_checks`` row with the misuse record (audits/misuse.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from audits.db import Store
from audits.judge import audit_document, certificate_index
from audits.misuse import misuse_record
from audits.models import Audit, BadgeCheck, Site
from audits.registry import RegistryError, check_start_url, normalise_domain
from audits.rulepack import RuleSet, load_rules
from audits.sightings import sighting_queue
from ectrust.config import Settings
from ectrust.pipeline import CrawlOptions, run_audits

BADGE_RULE = "badge.valid"


@dataclass
class Target:
    url: str
    domain: str


def parse_targets(urls: list[str]) -> list[Target]:
    """Validate the URLs (http(s), a public-looking host name); one site per domain."""
    targets: dict[str, Target] = {}
    problems = []
    for raw in urls:
        url = raw.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            problems.append(f"{raw!r}: give an http:// or https:// URL")
            continue
        try:
            domain = normalise_domain(parts.hostname or "")
            check_start_url(url, domain)
        except ValueError as exc:
            problems.append(f"{raw!r}: {exc}")
            continue
        targets.setdefault(domain, Target(url, domain))
    if problems:
        raise RegistryError(problems)
    return list(targets.values())


def badge_ruleset() -> RuleSet:
    full = load_rules()
    packs = []
    for pack in full.packs:
        rules = [r for r in pack.rules if r.id == BADGE_RULE]
        if rules:
            packs.append(dataclasses.replace(pack, rules=rules))
    return RuleSet(packs)


def queued_targets(store: Store) -> tuple[list[Target], dict[str, list[str]]]:
    """Sighted sites due for a check, and the certificate ids each was sighted with."""
    with store.session(readonly=True) as session:
        queue = sighting_queue(session)
    targets, certs = [], {}
    for item in queue:
        try:
            targets.extend(parse_targets([item.url]))
        except RegistryError:
            # The Referer named something that is no public page: skip it, not the queue.
            continue
        certs[item.domain] = item.cert_ids
    return targets, certs


def run_checks(
    store: Store,
    settings: Settings,
    targets: list[Target],
    options: CrawlOptions,
    *,
    trigger: str = "manual",
    on_progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Crawl and judge the targets; append one BadgeCheck each; return their documents."""
    with store.session() as session:
        for t in targets:
            site = session.scalar(select(Site).where(Site.domain == t.domain))
            if site is None:
                session.add(Site(domain=t.domain, start_url=t.url, registered=False))
    ruleset = badge_ruleset()
    result = run_audits(
        store,
        settings,
        [t.domain for t in targets],
        ruleset,
        options,
        on_progress,
        start_urls={t.domain: t.url for t in targets},
    )
    docs = []
    with store.session() as session:
        owners = {cid: domain for cid, (domain, _c) in certificate_index(session).items()}
        for target, audit_id in zip(targets, result.audit_ids, strict=True):
            audit = session.get(Audit, audit_id)
            site = session.scalar(
                select(Site)
                .where(Site.id == audit.site_id)
                .options(selectinload(Site.certificates))
            )
            current = site.current_certificate
            doc = audit_document(session, audit)
            record = misuse_record(
                domain=site.domain,
                url=target.url,
                registered=site.registered,
                own_certificate=current.cert_id if current else None,
                audit=doc,
                owners=owners,
            )
            check = BadgeCheck(
                url=target.url,
                domain=site.domain,
                site_id=site.id,
                crawl_id=audit.crawl_id,
                audit_id=audit.id,
                verdict=record["verdict"],
                misuse=record["misuse"],
                certificate_id=record["certificate_id"],
                trigger=trigger,
                record=record,
            )
            session.add(check)
            session.flush()
            docs.append({"check_id": check.id, "trigger": trigger, "url": target.url, **record})
    return docs
