"""How the site answered the crawler: refused addresses, certificates, charsets, rate limits.

The crawler names every failed fetch (crawler/failures.py). Most failures only mean a page is
missing; these are findings in their own right (issue #6, RELIABILITY.md T09, T10, T14–T18):

Certificate and charset problems are the site's defects (``fail``); refused and limited
fetches ask for an evaluator's review. Severity is info: never part of the score.

- ``tls``: a certificate that failed verification (the audit went on unverified; the
  snapshots carry ``x-ectrust-tls-unverified``), or a TLS handshake that failed outright;
- ``blocked``: a link or redirect that led to a loopback, private, link-local or otherwise
  forbidden address, a non-web port or a non-HTTP scheme; the attempt was refused;
- ``encoding``: pages whose declared charset does not fit their bytes (not read by rules);
- ``limited``: hosts that rate-limited the crawler beyond its patience or failed so often
  that the crawler gave up on them, so pages may be missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audits.checks.base import Outcome, check_type

if TYPE_CHECKING:
    from audits.pages import SiteView
    from audits.rulepack import Rule

BLOCKED = ("blocked_address", "redirect_to_disallowed", "scheme_not_allowed")
LIMITED = ("rate_limited", "site_unavailable")
TLS_HEADER = "x-ectrust-tls-unverified"
KINDS = ("tls", "blocked", "encoding", "limited")


def _header(page: Any, name: str) -> str | None:
    value = page.headers.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


@check_type(
    "fetch_health",
    report_={"type": "array", "items": {"enum": list(KINDS)}, "minItems": 1},
)
def fetch_health(site: SiteView, rule: Rule, params: dict[str, Any]) -> Outcome:
    """Fail on certificate and charset defects of the site, ask for review of refused or
    rate-limited fetches (the crawler's policy, not necessarily the site's fault), pass when
    the crawl met none of them."""
    kinds = set(params.get("report") or KINDS)
    warn: list[dict[str, Any]] = []
    review: list[dict[str, Any]] = []
    tls_hosts: set[str] = set()
    for page in site.pages:
        reason = _header(page, TLS_HEADER)
        if "tls" in kinds and reason and page.final_url.split("/")[2] not in tls_hosts:
            tls_hosts.add(page.final_url.split("/")[2])
            warn.append({"url": page.final_url, "excerpt": f"certificate not verified: {reason}",
                         "problem": "tls_unverified"})
        if "tls" in kinds and page.error == "tls_error":
            warn.append({"url": page.url, "excerpt": "TLS handshake failed",
                         "problem": "tls_error"})
        if "blocked" in kinds and page.error in BLOCKED:
            review.append({"url": page.url, "excerpt": f"fetch refused: {page.error}",
                           "problem": page.error,
                           "redirects": page.headers.get("x-ectrust-redirects", [])})
        if "limited" in kinds and page.error in LIMITED:
            review.append({"url": page.url, "excerpt": f"not fetched: {page.error}",
                           "problem": page.error})
        if "encoding" in kinds and page.ok and page.body and page.encoding_mismatch:
            warn.append({
                "url": page.final_url,
                "excerpt": f"declared charset {page.encoding} does not fit the page: "
                           f"{page.replacement_chars} undecodable characters; page not read",
                "problem": "encoding_mismatch",
            })
    if warn:
        problems = sorted({e["problem"] for e in warn})
        return Outcome("fail", f"{', '.join(problems)} on {len(warn)} page(s)",
                       (warn + review)[:20])
    if review:
        problems = sorted({e["problem"] for e in review})
        return Outcome("review", f"{len(review)} fetch(es) refused or limited: "
                       f"{', '.join(problems)}", review[:20])
    return Outcome("pass", "no certificate, charset, address or rate-limit problem met")
