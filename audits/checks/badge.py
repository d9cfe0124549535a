"""Is the trust badge a site shows genuine, current and its own?

Verdicts are exactly CONTRACT.md's. Official verification hosts come from configuration
(``ECTRUST_BADGE_HOSTS``); a certificate id is read from ``/cert/<id>`` or ``?cert=<id>``
on them. Image matching by content or perceptual hash is the badge issue's next step; here a
badge image is recognised by its official URL or by its alt text and file name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urljoin, urlsplit

import regex

from audits.checks.base import PATTERNS, Outcome, check_type, compile_patterns, search

if TYPE_CHECKING:
    from audits.pages import SiteView
    from audits.rulepack import Rule

CERT_PATH = regex.compile(r"/cert/([A-Za-z0-9][A-Za-z0-9._-]{1,63})/?$")


def certificate_id_in(url: str) -> str | None:
    parts = urlsplit(url)
    m = CERT_PATH.search(parts.path)
    if m:
        return m.group(1)
    values = parse_qs(parts.query).get("cert")
    return values[0] if values else None


@dataclass
class Sighting:
    page: str
    selector: str
    link: str | None
    image: str | None
    official_link: bool
    cert_id: str | None


def _sightings(
    site: SiteView, image_hint: regex.Pattern[str] | None, link_hint: regex.Pattern[str] | None
) -> list[Sighting]:
    from audits.pages import css_path

    official = set(site.badge_hosts)
    out: list[Sighting] = []
    for page in site.html_pages():
        tree = page.tree
        if tree is None:
            continue
        seen_imgs: set[int] = set()
        for a in tree.iter("a"):
            href = (a.get("href") or "").strip()
            if not href:
                continue
            url = urljoin(page.final_url, href)
            host = (urlsplit(url).hostname or "").lower()
            cert = certificate_id_in(url)
            imgs = list(a.iter("img"))
            seen_imgs.update(id(i) for i in imgs)
            img = imgs[0] if imgs else None
            img_url = urljoin(page.final_url, img.get("src") or "") if img is not None else None
            looks_badge = img is not None and (
                (img_url and (urlsplit(img_url).hostname or "").lower() in official)
                or search(image_hint, f"{img.get('alt') or ''} {img.get('src') or ''}")
            )
            if host in official and cert:
                out.append(Sighting(page.final_url, css_path(a), url, img_url, True, cert))
            elif looks_badge or (cert and search(link_hint, url)):
                out.append(Sighting(page.final_url, css_path(a), url, img_url, False, cert))
        for img in tree.iter("img"):
            if id(img) in seen_imgs:
                continue
            src = urljoin(page.final_url, img.get("src") or "")
            on_official = (urlsplit(src).hostname or "").lower() in official
            if on_official or search(image_hint, f"{img.get('alt') or ''} {img.get('src') or ''}"):
                out.append(Sighting(page.final_url, css_path(img), None, src, False, None))
    return out


def judge_badge(
    site: SiteView, image_hint: regex.Pattern[str] | None, link_hint: regex.Pattern[str] | None
) -> tuple[str, Sighting | None, list[Sighting]]:
    sightings = _sightings(site, image_hint, link_hint)
    own = site.certificate
    linked = [s for s in sightings if s.official_link]
    for s in linked:
        if own is not None and s.cert_id == own.cert_id:
            verdict = "valid" if own.status == "certified" else own.status
            return verdict, s, sightings
    for s in linked:
        other = site.certificates.get(s.cert_id or "")
        if other is not None and other.domain != site.domain:
            return "wrong_domain", s, sightings
    if linked:
        return "no_certificate", linked[0], sightings
    forged = [s for s in sightings if s.link is not None]
    if forged:
        return "forged_link", forged[0], sightings
    if sightings:
        return ("unlinked" if own is not None else "no_certificate"), sightings[0], sightings
    return "absent", None, sightings


@check_type("badge", image_hint=PATTERNS, link_hint_=PATTERNS)
def badge(site: SiteView, rule: Rule, params: dict[str, Any]) -> Outcome:
    """The badge verdict (CONTRACT.md): valid, absent, no_certificate, expired, suspended,
    revoked, wrong_domain, forged_link, unlinked."""
    verdict, first, sightings = judge_badge(
        site, compile_patterns(params["image_hint"]), compile_patterns(params.get("link_hint", []))
    )
    own = site.certificate
    pages = sorted({s.page for s in sightings})
    data = {
        "verdict": verdict,
        "certificate_id": (
            first.cert_id if first and first.cert_id else (own.cert_id if own else None)
        ),
        "pages": pages,
    }
    evidence = [
        {
            "url": s.page,
            "selector": s.selector,
            "href": s.link,
            "image": s.image,
            "excerpt": f"certificate {s.cert_id}" if s.cert_id else "badge image",
        }
        for s in ([first] if first else []) + [s for s in sightings if s is not first][:2]
    ]
    if not site.badge_hosts:
        return Outcome(
            "error",
            "no official verification host is configured "
            "(ECTRUST_BADGE_HOSTS), so no badge can be verified",
            evidence,
            # Without official hosts every badge link would look forged: give no verdict.
            {**data, "verdict": None},
        )
    if verdict == "valid":
        return Outcome(
            "pass",
            f"badge links the verification page of certificate "
            f"{own.cert_id if own else ''} on {len(pages)} page(s)",
            evidence,
            data,
        )
    if verdict == "absent":
        if own is not None and own.status == "certified":
            return Outcome(
                "fail",
                "certified site shows no badge linked to its verification page",
                evidence,
                data,
            )
        return Outcome(
            "not_applicable",
            "no badge shown, and the site holds no current certificate: correct",
            evidence,
            data,
        )
    messages = {
        "no_certificate": "badge shown, but the site holds no certificate",
        "expired": "badge shown for an expired certificate",
        "suspended": "badge shown for a suspended certificate",
        "revoked": "badge shown for a revoked certificate",
        "wrong_domain": "badge links another site's certificate",
        "forged_link": "badge links a verification page that is not on an official host",
        "unlinked": "badge image shown without a link to its verification page",
    }
    return Outcome("fail", messages[verdict], evidence, data)
