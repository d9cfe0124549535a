"""Linking browser screenshots to the findings that rest on the pages they show.

Screenshots are taken while crawling (crawler/render.py) of rendered pages only: the homepage
and privacy-policy candidates (viewport and full page), and the elements that most findings
turn on (the footer, the badge). Here, after the rules ran, each evidence entry whose page has
screenshots gets references to them (content hashes into the evidence store), and a failing
finding with no evidence on a rendered homepage gets the homepage as seen in the browser: the
picture that shows what was, or was not, there. Pure: a function of the stored crawl.
"""

from __future__ import annotations

from typing import Any

from audits.pages import Page, SiteView

PAGE_KINDS = ("viewport", "full_page")


def _refs(page: Page, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {
            "kind": s["kind"],
            "sha256": s["content_hash"],
            "selector": s.get("selector", ""),
            "width": s.get("width", 0),
            "height": s.get("height", 0),
        }
        for s in page.screenshots
        if s["kind"] in kinds
    ]


def kinds_for(rule_id: str) -> tuple[str, ...]:
    # The badge rules turn on the badge element; most others on what the footer shows
    # (policy and complaint links, licence, ICP number).
    if rule_id.startswith("badge"):
        return (*PAGE_KINDS, "badge", "footer")
    return (*PAGE_KINDS, "footer")


def link_screenshots(site: SiteView, rule_id: str, status: str, evidence: list[dict]) -> list[dict]:
    """The evidence list with screenshot references added (a new list; entries copied)."""
    kinds = kinds_for(rule_id)
    out = []
    for entry in evidence:
        page = site.page_for(entry["url"]) if entry.get("url") else None
        refs = _refs(page, kinds) if page is not None else []
        out.append({**entry, "screenshots": refs} if refs else entry)
    home = site.homepage
    if not evidence and status in ("fail", "warn") and home is not None and home.screenshots:
        out.append(
            {
                "url": home.final_url,
                "excerpt": "",
                "selector": None,
                "note": "the homepage as rendered in the browser",
                "screenshots": _refs(home, kinds),
            }
        )
    return out
