"""Links a visitor can click, and where they lead."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audits.checks.base import (
    PATTERNS,
    Outcome,
    check_type,
    compile_patterns,
    excerpt,
    scoped_pages,
    search,
)

if TYPE_CHECKING:
    from audits.pages import SiteView
    from audits.rulepack import Rule


@check_type(
    "link_present",
    text_=PATTERNS,
    href_=PATTERNS,
    exclude_=PATTERNS,
    target_text_=PATTERNS,
    footer_only_={"type": "boolean"},
)
def link_present(site: SiteView, rule: Rule, params: dict[str, Any]) -> Outcome:
    """Pass when a page in scope has a link whose text matches ``text`` or whose URL matches
    ``href`` (and not ``exclude``), leading to a page that works and, if ``target_text`` is
    given, says so. A link whose target was not fetched passes with a note."""
    by_text = compile_patterns(params.get("text", []))
    by_href = compile_patterns(params.get("href", []))
    exclude = compile_patterns(params.get("exclude", []))
    target_text = compile_patterns(params.get("target_text", []))
    broken: list[dict[str, Any]] = []
    unverified: list[dict[str, Any]] = []
    for page in scoped_pages(site, rule):
        for link in page.links:
            if params.get("footer_only") and not link.in_footer:
                continue
            if link.href.lower().startswith(("javascript:", "#")) or not link.url:
                continue
            if not (search(by_text, link.text) or search(by_href, link.url)):
                continue
            if search(exclude, link.text):
                continue
            item = {
                "url": page.final_url,
                "excerpt": link.text[:160],
                "selector": link.selector,
                "href": link.url,
            }
            target = site.page_for(link.url)
            if target is None:
                unverified.append({**item, "note": "target page not fetched"})
                continue
            if not target.ok:
                broken.append({**item, "note": f"target failed: {target.error or target.status}"})
                continue
            if target_text is not None:
                match = search(target_text, target.text)
                if match is None:
                    broken.append({**item, "note": "target page does not say what was expected"})
                    continue
                item["target_excerpt"] = excerpt(target.text, match)
            return Outcome("pass", f"link “{link.text[:60]}” on {page.final_url}", [item])
    if unverified:
        return Outcome("pass", "link found (its target was not fetched)", unverified[:3])
    if broken:
        return Outcome(
            "fail", "links found, but none leads to a working page that fits", broken[:3]
        )
    return Outcome("fail", "no such link on the pages in scope")
