"""Alert digests and their delivery by e-mail (SMTP) and webhook (JSON POST).

Changes found by audits/changes.py wait in the ``changes`` table until the next digest: one
digest gathers all of them (one message per run, not one per finding). Each digest is put in
the outbox (``alert_deliveries``) once per configured channel before anything is sent; a
failed delivery stays there with its error and is tried again later with growing pauses, so
an alert is never lost to a mail server being down.

Configuration (environment):

==============================  ==========================================================
``ECTRUST_ALERT_TO``            e-mail recipients (space- or comma-separated)
``ECTRUST_ALERT_FROM``          sender address (default ``ectrust@localhost``)
``ECTRUST_SMTP_HOST``           SMTP server (default ``localhost``)
``ECTRUST_SMTP_PORT``           default 25 (465 with ``ECTRUST_SMTP_TLS=ssl``)
``ECTRUST_SMTP_USER``/``_PASSWORD``  login, when the server needs one
``ECTRUST_SMTP_TLS``            ``starttls`` (default: used when the server offers it),
                                ``require``, ``ssl`` or ``none``
``ECTRUST_ALERT_WEBHOOK``       URL that receives each digest as a JSON POST
``ECTRUST_ALERT_WEBHOOK_SECRET`` signs the body: ``X-Ectrust-Signature: sha256=<HMAC>``
==============================  ==========================================================
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from audits.db import Store
from audits.models import Audit, Site
from audits.monitoring_models import AlertDelivery, AlertDigest, Change

logger = logging.getLogger(__name__)

ALERT_KINDS = ("regression", "unreachable", "badge_changed", "policy_changed")
MAX_BACKOFF = timedelta(hours=6)
CLAIM_FOR = timedelta(minutes=5)  # a delivery being sent is not picked up by another process
HTTP_TIMEOUT_S = 15


class AlertConfigError(ValueError):
    """A bad alert setting (exit status 2)."""


@dataclass(frozen=True)
class AlertSettings:
    to: tuple[str, ...] = ()
    sender: str = "ectrust@localhost"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_tls: str = "starttls"
    webhook: str = ""
    webhook_secret: str = ""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> AlertSettings:
        env = os.environ if environ is None else environ
        tls = (env.get("ECTRUST_SMTP_TLS") or "starttls").lower()
        if tls not in ("starttls", "require", "ssl", "none"):
            raise AlertConfigError(
                f"ECTRUST_SMTP_TLS={tls!r}: expected starttls, require, ssl or none"
            )
        port_text = env.get("ECTRUST_SMTP_PORT") or ("465" if tls == "ssl" else "25")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise AlertConfigError(f"ECTRUST_SMTP_PORT={port_text!r}: not a port number")
        webhook = env.get("ECTRUST_ALERT_WEBHOOK") or ""
        if webhook and not webhook.startswith(("http://", "https://")):
            raise AlertConfigError(f"ECTRUST_ALERT_WEBHOOK={webhook!r}: not an http(s) URL")
        return cls(
            to=tuple(a for a in (env.get("ECTRUST_ALERT_TO") or "").replace(",", " ").split()),
            sender=env.get("ECTRUST_ALERT_FROM") or "ectrust@localhost",
            smtp_host=env.get("ECTRUST_SMTP_HOST") or "localhost",
            smtp_port=int(port_text),
            smtp_user=env.get("ECTRUST_SMTP_USER") or "",
            smtp_password=env.get("ECTRUST_SMTP_PASSWORD") or "",
            smtp_tls=tls,
            webhook=webhook,
            webhook_secret=env.get("ECTRUST_ALERT_WEBHOOK_SECRET") or "",
        )

    def channels(self) -> list[tuple[str, str]]:
        out = []
        if self.to:
            out.append(("email", ", ".join(self.to)))
        if self.webhook:
            out.append(("webhook", self.webhook))
        return out


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _links(change: Change) -> list[str]:
    """The pages where the evidence was seen, before and after."""
    urls: list[str] = []
    detail = change.detail or {}
    for side in ("before", "after"):
        ref = detail.get(side)
        if isinstance(ref, dict):
            urls += [str(e["url"]) for e in ref.get("evidence") or [] if e.get("url")]
    for key in ("url_before", "url_after"):
        if detail.get(key):
            urls.append(str(detail[key]))
    return list(dict.fromkeys(urls))


def build_digest(session: Session, now: datetime) -> AlertDigest | None:
    """Gather every change not yet in a digest into one, and queue it on every channel.
    Returns None when nothing changed."""
    pending = session.scalars(
        select(Change).where(Change.digest_id.is_(None)).order_by(Change.site_id, Change.id)
    ).all()
    if not pending:
        return None
    site_ids = {c.site_id for c in pending}
    sites = {
        s.id: s
        for s in session.scalars(
            select(Site).where(Site.id.in_(site_ids)).options(selectinload(Site.certificates))
        )
    }
    by_site: dict[int, list[Change]] = {}
    for change in pending:
        by_site.setdefault(change.site_id, []).append(change)
    counts: dict[str, int] = {}
    site_docs = []
    for site_id, changes in by_site.items():
        site = sites[site_id]
        cert = site.current_certificate
        audit_ids = sorted({c.audit_id for c in changes})
        previous = sorted({c.previous_audit_id for c in changes if c.previous_audit_id})
        started = {
            a.id: _iso(a.started_at)
            for a in session.scalars(select(Audit).where(Audit.id.in_(audit_ids + previous)))
        }
        docs = []
        for c in changes:
            counts[c.kind] = counts.get(c.kind, 0) + 1
            docs.append(
                {
                    "change_id": c.id,
                    "kind": c.kind,
                    "alert": c.kind in ALERT_KINDS,
                    "rule_id": c.rule_id,
                    "audit_id": c.audit_id,
                    "previous_audit_id": c.previous_audit_id,
                    "detail": c.detail,
                    "links": _links(c),
                }
            )
        site_docs.append(
            {
                "domain": site.domain,
                "name": site.name,
                "certificate_id": cert.cert_id if cert else None,
                "certificate_status": cert.effective_status(now.date()) if cert else "applicant",
                "audits": [{"audit_id": i, "started_at": started.get(i)} for i in audit_ids],
                "previous_audits": [
                    {"audit_id": i, "started_at": started.get(i)} for i in previous
                ],
                "changes": docs,
                # Where an evaluator reads the full evidence of both audits.
                "commands": [f"ectrust findings {i}" for i in [*previous, *audit_ids]]
                + [
                    "ectrust report site "
                    + " ".join(f"--audit {i}" for i in [*previous, *audit_ids])
                    + " --out reports/"
                ],
            }
        )
    digest = AlertDigest(created_at=now, payload={})
    session.add(digest)
    session.flush()
    digest.payload = {
        "digest_id": digest.id,
        "created_at": _iso(now),
        "counts": counts,
        "alerts": sum(counts.get(k, 0) for k in ALERT_KINDS),
        "sites": site_docs,
    }
    session.execute(
        update(Change).where(Change.id.in_([c.id for c in pending])).values(digest_id=digest.id)
    )
    return digest


def queue_digest(session: Session, digest: AlertDigest, settings: AlertSettings) -> int:
    channels = settings.channels()
    if not channels:
        logger.warning(
            "alert digest %d kept in the database only: no alert channel is configured "
            "(ECTRUST_ALERT_TO, ECTRUST_ALERT_WEBHOOK)",
            digest.id,
        )
    for channel, target in channels:
        session.add(
            AlertDelivery(
                digest_id=digest.id,
                channel=channel,
                target=target,
                next_attempt_at=digest.created_at,
            )
        )
    return len(channels)


def subject(payload: dict[str, Any]) -> str:
    counts = payload.get("counts", {})
    parts = [f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(counts.items())]
    alert = "ALERT " if payload.get("alerts") else ""
    return f"[ectrust] {alert}{len(payload.get('sites', []))} site(s): {', '.join(parts)}"


def _evidence_lines(ref: dict[str, Any] | None, label: str) -> list[str]:
    if not ref:
        return [f"    {label}: (no finding)"]
    lines = [f"    {label} (audit {ref['audit_id']}): {ref['status']} — {ref['message']}"]
    for e in (ref.get("evidence") or [])[:5]:
        where = " ".join(str(x) for x in (e.get("url"), e.get("selector")) if x)
        lines.append(f"      · {where}")
        if e.get("excerpt"):
            lines.append(f"        “{str(e['excerpt'])[:300]}”")
    return lines


def render_text(payload: dict[str, Any]) -> str:
    """The e-mail body: plain text (crawled text is hostile input; no HTML)."""
    lines = [subject(payload).removeprefix("[ectrust] "), ""]
    for site in payload["sites"]:
        lines.append(
            f"{site['domain']} ({site['name'] or '—'}) · certificate "
            f"{site['certificate_id'] or '—'} ({site['certificate_status']})"
        )
        for c in site["changes"]:
            d = c["detail"]
            head = f"  [{c['kind']}]"
            if c["kind"] in ("regression", "fix", "evidence_changed"):
                lines.append(f"{head} {c['rule_id']} — {d.get('title', '')}")
                lines += _evidence_lines(d.get("before"), "before")
                lines += _evidence_lines(d.get("after"), "now")
            elif c["kind"] == "badge_changed":
                lines.append(
                    f"{head} badge {d['before'] or 'not judged'} → {d['after'] or 'not judged'}"
                    f" (audits {d['before_audit_id']} → {d['after_audit_id']})"
                )
            elif c["kind"] == "policy_changed":
                news = " SIGNIFICANT" if d.get("significant") else ""
                lines.append(
                    f"{head}{news} privacy policy {d['url_before'] or '—'} → "
                    f"{d['url_after'] or 'none found'}: {d['chars_before']} → "
                    f"{d['chars_after']} characters, {d['added_count']} sentence(s) added, "
                    f"{d['removed_count']} removed"
                )
                lines += [f"      - {s[:300]}" for s in d.get("removed", [])[:5]]
                lines += [f"      + {s[:300]}" for s in d.get("added", [])[:5]]
            else:
                lines.append(f"{head} {d.get('message', '')}")
            if c["links"]:
                lines.append("    evidence: " + "  ".join(c["links"]))
        lines.append("  full evidence: " + " ; ".join(site["commands"]))
        lines.append("")
    return "\n".join(lines)


def send_email(settings: AlertSettings, target: str, payload: dict[str, Any]) -> None:
    msg = EmailMessage()
    msg["Subject"] = subject(payload)
    msg["From"] = settings.sender
    msg["To"] = target
    msg["Message-ID"] = make_msgid(idstring=f"ectrust-digest-{payload['digest_id']}")
    msg.set_content(render_text(payload))
    msg.add_attachment(
        json.dumps(payload, ensure_ascii=False, indent=2).encode("utf-8"),
        maintype="application",
        subtype="json",
        filename=f"ectrust-digest-{payload['digest_id']}.json",
    )
    context = ssl.create_default_context()
    cls = smtplib.SMTP_SSL if settings.smtp_tls == "ssl" else smtplib.SMTP
    kwargs: dict[str, Any] = {"timeout": HTTP_TIMEOUT_S}
    if settings.smtp_tls == "ssl":
        kwargs["context"] = context
    with cls(settings.smtp_host, settings.smtp_port, **kwargs) as smtp:
        smtp.ehlo()
        if settings.smtp_tls in ("starttls", "require"):
            if smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
            elif settings.smtp_tls == "require":
                raise smtplib.SMTPException(
                    f"{settings.smtp_host} does not offer STARTTLS (ECTRUST_SMTP_TLS=require)"
                )
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(msg, to_addrs=[a.strip() for a in target.split(",") if a.strip()])


def send_webhook(settings: AlertSettings, target: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "ectrust-alerts"}
    if settings.webhook_secret:
        mac = hmac.new(settings.webhook_secret.encode("utf-8"), body, hashlib.sha256)
        headers["X-Ectrust-Signature"] = "sha256=" + mac.hexdigest()
    request = urllib.request.Request(target, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        if not 200 <= response.status < 300:
            raise OSError(f"webhook answered HTTP {response.status}")


SENDERS = {"email": send_email, "webhook": send_webhook}


def backoff(attempts: int) -> timedelta:
    return min(timedelta(minutes=2 ** max(0, attempts - 1)), MAX_BACKOFF)


def deliver_pending(store: Store, settings: AlertSettings, now: datetime) -> dict[str, int]:
    """Try every delivery that is due; returns counts of ``sent`` and ``failed``."""
    result = {"sent": 0, "failed": 0}
    with store.session(readonly=True) as session:
        due = [
            d.id
            for d in session.scalars(
                select(AlertDelivery)
                .where(AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now)
                .order_by(AlertDelivery.id)
            )
        ]
    for delivery_id in due:
        with store.session() as session:
            # Claim it, so a scheduler and an `audit --due` never both send it.
            claimed = session.execute(
                update(AlertDelivery)
                .where(
                    AlertDelivery.id == delivery_id,
                    AlertDelivery.status == "pending",
                    AlertDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + CLAIM_FOR)
            ).rowcount
            if not claimed:
                continue
            delivery = session.get(AlertDelivery, delivery_id)
            digest = session.get(AlertDigest, delivery.digest_id)
            channel, target, payload = delivery.channel, delivery.target, digest.payload
        try:
            SENDERS[channel](settings, target, payload)
            error = None
        except (OSError, smtplib.SMTPException, urllib.error.URLError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        with store.session() as session:
            delivery = session.get(AlertDelivery, delivery_id)
            delivery.attempts += 1
            if error is None:
                delivery.status, delivery.sent_at, delivery.last_error = "sent", now, ""
                result["sent"] += 1
                logger.info("alert digest %d sent by %s to %s", digest.id, channel, target)
            else:
                delivery.last_error = error
                delivery.next_attempt_at = now + backoff(delivery.attempts)
                result["failed"] += 1
                logger.warning(
                    "alert digest %d by %s to %s failed (attempt %d, next at %s): %s",
                    digest.id,
                    channel,
                    target,
                    delivery.attempts,
                    delivery.next_attempt_at.isoformat(),
                    error,
                )
    return result


def flush_alerts(store: Store, settings: AlertSettings, now: datetime) -> dict[str, Any]:
    """Build the digest of new changes (if any), queue it, and send what is due."""
    with store.session() as session:
        digest = build_digest(session, now)
        digest_id = digest.id if digest else None
        if digest is not None:
            queue_digest(session, digest, settings)
    return {"digest_id": digest_id, **deliver_pending(store, settings, now)}
