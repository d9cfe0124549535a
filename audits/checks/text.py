"""Text found on the pages in scope."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audits.checks.base import (
    PATTERNS,
    Outcome,
    check_type,
    compile_patterns,
    excerpt,
    lines_to_search,
    scoped_pages,
    search,
)

if TYPE_CHECKING:
    from audits.pages import SiteView
    from audits.rulepack import Rule


@check_type(
    "text_present",
    patterns=PATTERNS,
    negation_=PATTERNS,
    min_matches_={"type": "integer", "minimum": 1},
    footer_only_={"type": "boolean"},
)
def text_present(site: SiteView, rule: Rule, params: dict[str, Any]) -> Outcome:
    """Pass when a text block on the pages in scope matches one of ``patterns``. A block that
    also matches a ``negation`` pattern ("暂不提供投诉渠道") does not count."""
    pattern = compile_patterns(params["patterns"])
    negation = compile_patterns(params.get("negation", []))
    wanted = params.get("min_matches", 1)
    evidence: list[dict[str, Any]] = []
    negated: list[dict[str, Any]] = []
    enough = max(wanted, 3)
    for page in scoped_pages(site, rule):
        if len(evidence) >= enough:
            break
        text = page.footer_text if params.get("footer_only") else page.text
        blocks = text.split("\n")
        lines = lines_to_search(pattern, text)
        for i in range(len(blocks)) if lines is None else lines:
            block = blocks[i]
            match = search(pattern, block)
            if match is None:
                continue
            item = {
                "url": page.final_url,
                "excerpt": excerpt(block, match),
                "match": match.group(0),
            }
            if search(negation, block):
                negated.append(item)
                continue
            evidence.append(item)
            if len(evidence) >= enough:
                break
    if len(evidence) >= wanted:
        return Outcome("pass", f"found on {len({e['url'] for e in evidence})} page(s)", evidence)
    if negated:
        return Outcome("fail", "only found in statements that deny it", negated[:3])
    return Outcome("fail", "not found on the pages in scope")
