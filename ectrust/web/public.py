"""Public routes, no login: the verification page, the live badge, the certified list.

A badge or verification page requested from a page the certificate does not cover (by
Referer or Origin) gets the "invalid" badge, or a warning on the verification page, the way
SAMR's 电子营业执照亮照 page warns when the displaying site is not the registered one, and
the sighting is recorded (audits/sightings.py) so the site is queued for a badge check.
Requests without Referer/Origin (privacy settings, direct visits) see the live status.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from audits.badgeart import render_svg
from audits.certificates import (
    EVENT_NAMES,
    STATE_NAMES,
    TIER_NAMES,
    LifecycleError,
    certificate_domains,
    covers,
    get_certificate,
    public_view,
)
from audits.checks.badge import CERT_ID
from audits.models import Certificate, Site
from audits.sightings import record_sighting, referring_page
from ectrust.web import ectrust_state

logger = logging.getLogger(__name__)
bp = Blueprint("public", __name__)

BADGE_STATE = {"certified": "valid", "expired": "expired", "suspended": "suspended",
               "revoked": "revoked"}  # fmt: skip


def _ctx() -> dict[str, Any]:
    return ectrust_state(current_app)


def _own_hosts() -> set[str]:
    hosts = set(_ctx()["settings"].badge_hosts)
    if request.host:
        hosts.add(request.host.split(":")[0].lower())
    return hosts


def _foreign_referrer(domains: list[str]) -> tuple[str, str] | None:
    """(host, page) of the asking page when it is neither the certificate's site nor ours."""
    found = referring_page(request.headers.get("Referer"), request.headers.get("Origin"))
    if found is None:
        return None
    host, page = found
    if host in _own_hosts() or covers(domains, host):
        return None
    return host, page


def _record(cert_id: str, host: str, page: str, source: str, served: str) -> None:
    try:
        with _ctx()["store"].session() as session:
            record_sighting(
                session,
                cert_id=cert_id,
                domain=host,
                page=page,
                source=source,
                served=served,
                user_agent=request.headers.get("User-Agent", ""),
            )
    except Exception:  # the badge must still be served when the write fails
        logger.exception("could not record a badge sighting")


@bp.get("/cert/<cert_id>")
def certificate_page(cert_id: str) -> Any:
    if not CERT_ID.match(cert_id):
        abort(404)
    today = _ctx()["today"]()
    with _ctx()["store"].session(readonly=True) as session:
        try:
            cert = get_certificate(session, cert_id)
        except LifecycleError:
            cert = None
        view = public_view(cert, today) if cert is not None else None
    foreign = _foreign_referrer(view.domains if view else [])
    if foreign is not None:
        _record(cert_id, *foreign, "cert_page", view.state if view else "unknown")
    if view is None:
        return render_template("cert_unknown.html.j2", cert_id=cert_id, foreign=foreign), 404
    return render_template(
        "cert.html.j2",
        cert=view,
        foreign=foreign,
        state_names=STATE_NAMES,
        event_names=EVENT_NAMES,
        tier_names=TIER_NAMES,
        today=today,
    )


@bp.get("/badge/<cert_id>.svg")
def badge_image(cert_id: str) -> Response:
    if not CERT_ID.match(cert_id):
        return _svg(render_svg("", None, "invalid"))
    today = _ctx()["today"]()
    with _ctx()["store"].session(readonly=True) as session:
        cert = session.scalar(
            select(Certificate)
            .where(Certificate.cert_id == cert_id)
            .options(selectinload(Certificate.site))
        )
        domains = certificate_domains(cert.site) if cert is not None else []
        state = BADGE_STATE[cert.effective_status(today)] if cert is not None else "invalid"
        tier = cert.tier if cert is not None else None
        if cert is not None and not cert.site.registered:
            state = "invalid"
    foreign = _foreign_referrer(domains)
    if foreign is not None:
        state = "invalid"
        _record(cert_id, *foreign, "badge", state)
    return _svg(render_svg(cert_id, tier, state))


def _svg(text: str) -> Response:
    return Response(text, mimetype="image/svg+xml")


@bp.get("/list")
def certified_list() -> Any:
    today = _ctx()["today"]()
    with _ctx()["store"].session(readonly=True) as session:
        rows = session.execute(
            select(Certificate, Site)
            .join(Site)
            .where(Site.registered.is_(True), Certificate.status == "certified")
        ).all()
        entries = [
            {
                "cert_id": cert.cert_id,
                "holder": site.name or site.domain,
                "domain": site.domain,
                "industry": site.industry,
                "tier": cert.tier,
                "valid_until": cert.valid_until,
            }
            for cert, site in rows
            if cert.effective_status(today) == "certified"
        ]
    entries.sort(key=lambda e: (e["tier"] != "red", e["holder"]))
    return render_template("list.html.j2", entries=entries, tier_names=TIER_NAMES, today=today)
