"""Is the trust badge a site shows genuine, current and its own?

The badge is found however it is shown:

- a link to an official verification URL carrying a certificate id (``/cert/<id>`` or
  ``?cert=<id>`` on a host of ``ECTRUST_BADGE_HOSTS``);
- the official image hot-linked (``/badge/<id>.svg`` on an official host);
- a copy of the image on the site's own host or elsewhere, with or without a link: an SVG
  copy by the badge's marker (and byte equality), a raster copy by perceptual hash
  (audits/badgeart.py; the crawler fetches badge-candidate images as snapshots), an inline
  ``data:`` image likewise;
- links to look-alike or other non-official verification hosts.

Each sighting gets its own verdict (CONTRACT.md's words) and the reason; the site's verdict
is the worst one seen, so one forged link among genuine badges is not hidden. Images that are
recognised only by their alt text or file name are weak evidence: a verdict that rests on
them alone is reported for an evaluator to ``review``, not as a failure.

Verdict ``null`` (the audit's ``badge`` is then ``null``, see engine.summarise): no official
verification host is configured, so nothing can be verified (the finding says ``error``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

import regex
from w3lib.url import safe_url_string

from audits.checks.base import PATTERNS, Outcome, check_type, compile_patterns, search

if TYPE_CHECKING:
    from audits.pages import CertificateInfo, Page, SiteView
    from audits.rulepack import Rule

CERT_PATH = regex.compile(r"/cert/([A-Za-z0-9][A-Za-z0-9._-]{1,63})/?$")
BADGE_PATH = regex.compile(r"/badge/([A-Za-z0-9][A-Za-z0-9._-]{1,63}?)\.(?:svg|png)$")
CERT_ID = regex.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
MAX_DATA_URI = 512 * 1024
LOOKALIKE_RATIO = 0.8

# Worst first: the site's verdict is the worst any sighting earned.
SEVERITY = (
    "forged_link", "wrong_domain", "no_certificate", "revoked", "suspended", "expired",
    "unlinked", "valid",
)  # fmt: skip
MISUSE_VERDICTS = frozenset(SEVERITY) - {"valid"}


def certificate_id_in(url: str) -> str | None:
    parts = urlsplit(url)
    m = CERT_PATH.search(parts.path)
    if m:
        return m.group(1)
    values = parse_qs(parts.query).get("cert")
    if values and CERT_ID.match(values[0]):
        return values[0]
    return None


@functools.lru_cache(maxsize=4096)
def _skeleton(host: str) -> str:
    """Letters and digits of a host name, with the usual look-alike swaps undone."""
    with contextlib.suppress(UnicodeError):
        host = host.encode("ascii").decode("idna") if "xn--" in host else host
    host = host.lower().translate(str.maketrans("01|", "oll"))
    return "".join(ch for ch in host if ch.isalnum())


@functools.lru_cache(maxsize=4096)
def lookalike_of(host: str, official: tuple[str, ...]) -> str | None:
    """The official host ``host`` imitates, if any (verify-trust.example.com,
    verify.trust.example.evil.test, vérify.trust.example, verlfy.trust.example …).

    Cached: a shop links to the same few hosts from every page. ratio() <= quick_ratio() <=
    real_quick_ratio(), so the cheap upper bounds only skip hosts that cannot match."""
    if not host or host in official:
        return None
    sk = _skeleton(host)
    for name in official:
        ref = _skeleton(name)
        if not ref:
            continue
        if ref in sk:
            return name
        m = SequenceMatcher(None, sk, ref)
        if (
            m.real_quick_ratio() >= LOOKALIKE_RATIO
            and m.quick_ratio() >= LOOKALIKE_RATIO
            and m.ratio() >= LOOKALIKE_RATIO
        ):
            return name
    return None


@dataclass
class ImageSeen:
    url: str | None  # None for an inline data: image
    how: str  # hotlinked | copy | hint
    cert_id: str | None
    detail: str

    @property
    def strong(self) -> bool:
        return self.how != "hint"


@dataclass
class Sighting:
    page: str
    selector: str
    link: str | None
    image: str | None
    cert_id: str | None
    seen: str  # what was seen, in words
    strong: bool  # recognised by URL, certificate id or image content, not by words alone
    link_kind: str | None = None  # official | forged | other
    lookalike: str | None = None
    image_how: str | None = None  # hotlinked | copy | hint
    verdict: str = ""
    why: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def official_link(self) -> bool:
        return self.link_kind == "official"

    def evidence(self) -> dict[str, Any]:
        return {
            "url": self.page,
            "selector": self.selector,
            "excerpt": self.seen,
            "href": self.link,
            "image": self.image,
            "certificate_id": self.cert_id,
            "verdict": self.verdict,
            "why": self.why,
            "weak": not self.strong,
        }


def _img_source(img: Any) -> str:
    # The order crawler/images.py fetches in: lazy-loading attributes first.
    for attr in ("data-src", "data-original", "data-lazy-src", "src"):
        value = (img.get(attr) or "").strip()
        if value:
            return value
    srcset = (img.get("srcset") or "").strip()
    return srcset.split(",")[0].split()[0] if srcset else ""


def _data_uri(src: str) -> bytes | None:
    head, sep, payload = src.partition(",")
    if not sep or len(payload) > MAX_DATA_URI * 2:
        return None
    try:
        if head.endswith(";base64"):
            return base64.b64decode(payload, validate=False)
        return unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        return None


def examine_image(
    site: SiteView,
    page: Page,
    img: Any,
    image_hint: regex.Pattern[str] | None,
    seen: dict[tuple[str, str, str, str | None], ImageSeen | None] | None = None,
) -> ImageSeen | None:
    """Is this <img> the badge, and how do we know? ``seen``: the answers so far for this
    site (the answer depends on the image's source, address and words only, and a site
    shows the same images on every page)."""
    from audits.pages import resolve

    src = _img_source(img)
    alt, title = img.get("alt") or "", img.get("title") or ""
    url = resolve(page.final_url, src) if src and not src.startswith("data:") else None
    if seen is None:
        return _examine(site, src, alt, title, url, image_hint)
    key = (src, alt, title, url)
    if key not in seen:
        seen[key] = _examine(site, src, alt, title, url, image_hint)
    return seen[key]


def _examine(
    site: SiteView,
    src: str,
    alt: str,
    title: str,
    url: str | None,
    image_hint: regex.Pattern[str] | None,
) -> ImageSeen | None:
    from audits.badgeart import match_image

    words = f"{alt} {title} {src[:300]}"
    if src.startswith("data:"):
        body = _data_uri(src)
        found = match_image(body) if body else None
        if found is not None:
            return ImageSeen(None, "copy", found.cert_id, f"inline image: {found.detail}")
        if search(image_hint, f"{alt} {title}"):
            return ImageSeen(None, "hint", None, f"inline image described as {words[:80]!r}")
        return None
    if not src or url is None:
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host in site.badge_hosts:
        m = BADGE_PATH.search(parts.path)
        cert = m.group(1) if m else certificate_id_in(url)
        return ImageSeen(url, "hotlinked", cert, f"official badge image hot-linked from {host}")
    # The crawler stored it under its normalised form (percent-encoded, host lower-cased).
    fetched = site.page_for(url) or site.page_for(safe_url_string(url).split("#")[0])
    if fetched is not None and fetched.ok and fetched.body:
        found = match_image(fetched.body)
        if found is not None:
            return ImageSeen(url, "copy", found.cert_id, f"image on {host}: {found.detail}")
    if search(image_hint, words):
        return ImageSeen(url, "hint", None, f"image described as {words.strip()[:80]!r}")
    return None


def _link_kind(
    site: SiteView,
    url: str,
    link_hint: regex.Pattern[str] | None,
    has_badge_image: bool,
    badge_words: bool,
) -> tuple[str | None, str | None]:
    """(official | forged | other | None, look-alike of which official host).

    A link elsewhere that merely has ``/cert/<x>`` in its path (a shop's own ISO certificate
    page) is not a forged badge link: it must also show the badge or say it is one."""
    host = (urlsplit(url).hostname or "").lower()
    cert = certificate_id_in(url)
    if host in site.badge_hosts:
        return ("official" if cert else "other"), None
    lookalike = lookalike_of(host, site.badge_hosts)
    if lookalike or (cert and (has_badge_image or badge_words)):
        return "forged", lookalike
    own = host == site.domain or host.endswith("." + site.domain)
    if has_badge_image and not own and search(link_hint, url):
        return "forged", None  # a badge linked to some other "verification" site
    return ("other" if has_badge_image else None), None


def collect_sightings(
    site: SiteView, image_hint: regex.Pattern[str] | None, link_hint: regex.Pattern[str] | None
) -> list[Sighting]:
    from audits.pages import css_path, resolve

    out: list[Sighting] = []
    # The same header and footer links are on every page: their words and addresses are
    # judged once per site (both answers depend on nothing else).
    hinted: dict[str, bool] = {}
    kinds: dict[tuple[Any, ...], tuple[str | None, str | None]] = {}
    images: dict[tuple[str, str, str, str | None], ImageSeen | None] = {}
    for page in site.html_pages():
        tree = page.tree
        if tree is None:
            continue
        # lxml makes element proxies on demand and id() of a freed one is reused: the linked
        # images are kept referenced so their ids stay theirs while the page is examined
        linked: list[Any] = []
        in_links: set[int] = set()
        for a in tree.iter("a"):
            href = (a.get("href") or "").strip()
            if not href or href.startswith(("#", "javascript:", "mailto:", "tel:")):
                continue
            url = resolve(page.final_url, href)
            imgs = list(a.iter("img"))
            linked.extend(imgs)
            in_links.update(id(i) for i in imgs)
            seen_imgs = [
                s for s in (examine_image(site, page, i, image_hint, images) for i in imgs) if s
            ]
            image = next((s for s in seen_imgs if s.strong), seen_imgs[0] if seen_imgs else None)
            if (url, image is not None) in kinds:  # known, and its words do not matter
                kind, lookalike = kinds[url, image is not None]
            else:
                label = f"{a.text_content()} {a.get('title') or ''} {a.get('aria-label') or ''}"
                words = label[:500]
                if words not in hinted:
                    hinted[words] = bool(search(image_hint, words))
                key = (url, image is not None, hinted[words])
                if key not in kinds:
                    kinds[key] = _link_kind(site, url, link_hint, key[1], key[2])
                kind, lookalike = kinds[key]
                # _link_kind reads the words only for a link without badge image that names
                # a certificate: for any other, the answer holds whatever its words say
                if image is not None or certificate_id_in(url) is None:
                    kinds[url, image is not None] = (kind, lookalike)
            if kind is None:
                continue
            cert = certificate_id_in(url) if kind != "other" else None
            if kind == "official":
                seen = f"link to the official verification page of certificate {cert}"
            elif kind == "forged":
                host = urlsplit(url).hostname or url
                seen = (
                    f"link to {host}, a look-alike of the official host {lookalike}"
                    if lookalike
                    else f"link to a verification page on {host}, not an official host"
                )
            else:
                seen = f"badge image linked to {url}, which is not a verification page"
            if image is not None:
                seen += f"; {image.detail}"
            strong = kind == "official" or (
                kind == "forged" and (bool(lookalike) or bool(cert) or bool(image and image.strong))
            )
            strong = strong or bool(image and image.strong)
            out.append(
                Sighting(
                    page=page.final_url,
                    selector=css_path(a),
                    link=url,
                    image=image.url if image else None,
                    cert_id=cert or (image.cert_id if image else None),
                    seen=seen,
                    strong=strong,
                    link_kind=kind,
                    lookalike=lookalike,
                    image_how=image.how if image else None,
                )
            )
        for img in tree.iter("img"):
            if id(img) in in_links:
                continue
            image = examine_image(site, page, img, image_hint, images)
            if image is None:
                continue
            out.append(
                Sighting(
                    page=page.final_url,
                    selector=css_path(img),
                    link=None,
                    image=image.url,
                    cert_id=image.cert_id,
                    seen=f"{image.detail}, with no link",
                    strong=image.strong,
                    image_how=image.how,
                )
            )
    for s in out:
        s.verdict, s.why = judge_sighting(site, s)
    return out


def _status_verdict(cert: CertificateInfo) -> tuple[str, str]:
    if cert.status == "certified":
        return "valid", f"certificate {cert.cert_id} of this site is current"
    until = f" (valid until {cert.valid_until.isoformat()})" if cert.valid_until else ""
    return cert.status, f"certificate {cert.cert_id} of this site is {cert.status}{until}"


def judge_sighting(site: SiteView, s: Sighting) -> tuple[str, str]:
    """One sighting's verdict and why."""
    own = site.certificate
    named = site.certificates.get(s.cert_id or "")
    if s.link_kind == "forged":
        return "forged_link", (
            f"the verification link goes to {urlsplit(s.link or '').hostname}, which is not an "
            f"official verification host ({', '.join(site.badge_hosts)}); visitors are shown a "
            f"page the centre does not control"
        )
    if named is not None and named.domain != site.domain:
        return "wrong_domain", (
            f"certificate {named.cert_id} belongs to {named.domain}, not to {site.domain}"
        )
    if s.official_link:
        if own is not None and s.cert_id == own.cert_id:
            return _status_verdict(own)
        if named is None:
            return "no_certificate", f"certificate {s.cert_id} does not exist" + (
                "" if own is not None else f"; {site.domain} holds no certificate"
            )
    if own is None:
        return "no_certificate", f"{site.domain} holds no certificate"
    if own.status != "certified":
        return _status_verdict(own)
    return "unlinked", (
        "the badge image is not linked to its verification page, so visitors cannot check it"
        + (" (and a copy does not show the live status)" if s.image_how == "copy" else "")
    )


def worst(sightings: list[Sighting]) -> Sighting | None:
    ranked = sorted(sightings, key=lambda s: SEVERITY.index(s.verdict))
    return ranked[0] if ranked else None


# Kept for callers of the first version: (verdict, decisive sighting, all sightings).
def judge_badge(
    site: SiteView, image_hint: regex.Pattern[str] | None, link_hint: regex.Pattern[str] | None
) -> tuple[str, Sighting | None, list[Sighting]]:
    sightings = collect_sightings(site, image_hint, link_hint)
    strong = [s for s in sightings if s.strong]
    decisive = worst(strong) or worst(sightings)
    return (decisive.verdict if decisive else "absent"), decisive, sightings


MESSAGES = {
    "no_certificate": "badge shown, but the site holds no certificate",
    "expired": "badge shown for an expired certificate",
    "suspended": "badge shown for a suspended certificate",
    "revoked": "badge shown for a revoked certificate",
    "wrong_domain": "badge links another site's certificate",
    "forged_link": "badge links a verification page that is not on an official host",
    "unlinked": "badge image shown without a link to its verification page",
}


@check_type("badge", image_hint=PATTERNS, link_hint_=PATTERNS)
def badge(site: SiteView, rule: Rule, params: dict[str, Any]) -> Outcome:
    """The badge verdict (CONTRACT.md): valid, absent, no_certificate, expired, suspended,
    revoked, wrong_domain, forged_link, unlinked; evidence per sighting."""
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
    ordered = ([first] if first else []) + sorted(
        (s for s in sightings if s is not first), key=lambda s: SEVERITY.index(s.verdict)
    )
    evidence = [s.evidence() for s in ordered[:10]]
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
                [{"url": site.start_url, "excerpt": "no badge on the pages looked at"}],
                data,
            )
        return Outcome(
            "not_applicable",
            "no badge shown, and the site holds no current certificate: correct",
            evidence,
            data,
        )
    assert first is not None
    message = f"{MESSAGES[verdict]}: {first.page} shows {first.seen}; {first.why}"
    if not first.strong:
        return Outcome(
            "review",
            f"possible misuse, recognised only by its description ({message}); "
            "an evaluator should look",
            evidence,
            data,
        )
    return Outcome("fail", message, evidence, data)
