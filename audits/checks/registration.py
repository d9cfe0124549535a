"""Registration numbers a Chinese site must show: the ICP filing and the business licence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import regex

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
    from audits.pages import Page, SiteView
    from audits.rulepack import Rule

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
ICP = regex.compile(
    rf"([{PROVINCES}])\s*ICP\s*(备|证)\s*(\d{{6,9}})\s*号?(?:\s*-\s*(\d+))?", regex.IGNORECASE
)

# GB 32100-2015 统一社会信用代码: 18 characters from this 31-letter alphabet (no I, O, S,
# V, Z); the last one is a check character over the first 17.
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
CREDIT_CODE = regex.compile(rf"(?<![0-9A-Z])([{CREDIT_ALPHABET}]{{18}})(?![0-9A-Z])")
CREDIT_LABEL = regex.compile(
    r"统一社会信用代码|信用代码|社会信用代码|Unified Social Credit", regex.IGNORECASE
)


def credit_code_valid(code: str) -> bool:
    """GB 32100-2015 check character."""
    code = code.upper()
    if len(code) != 18 or any(ch not in CREDIT_ALPHABET for ch in code):
        return False
    total = sum(
        CREDIT_ALPHABET.index(ch) * w for ch, w in zip(code[:17], CREDIT_WEIGHTS, strict=True)
    )
    check = (31 - total % 31) % 31
    return CREDIT_ALPHABET[check] == code[17]


def find_icp(text: str) -> list[regex.Match[str]]:
    return list(ICP.finditer(text, timeout=0.5))


def format_icp(match: regex.Match[str]) -> str:
    number = f"{match.group(1)}ICP{match.group(2)}{match.group(3)}号"
    return number + (f"-{match.group(4)}" if match.group(4) else "")


@check_type("icp_number", footer_only_={"type": "boolean"})
def icp_number(site: SiteView, rule: Rule, params: dict[str, Any]) -> Outcome:
    """Pass when an ICP filing number (京ICP备12345678号-1) or ICP licence number (京ICP证
    030173号) is shown on the pages in scope; the number goes into the evidence."""
    for page in scoped_pages(site, rule):
        text = page.footer_text if params.get("footer_only") else page.text
        blocks = text.split("\n")
        lines = lines_to_search(ICP, text)
        for i in range(len(blocks)) if lines is None else lines:
            block = blocks[i]
            found = find_icp(block)
            if found:
                number = format_icp(found[0])
                return Outcome(
                    "pass",
                    f"{number} shown on {page.final_url}",
                    [
                        {
                            "url": page.final_url,
                            "excerpt": excerpt(block, found[0]),
                            "number": number,
                            "kind": "ICP许可证" if found[0].group(2) == "证" else "ICP备案",
                        }
                    ],
                )
    return Outcome("fail", "no ICP filing number (ICP备案号) on the pages in scope")


def _codes_in(page: Page) -> list[tuple[str, bool, str]]:
    """(code, valid, quote) for each 18-character code next to a credit-code label: in the
    label's own text block or the one after it (a table row puts them in two cells)."""
    out = []
    blocks = page.text.split("\n")
    lines = lines_to_search(CREDIT_LABEL, page.text)
    for i in range(len(blocks)) if lines is None else lines:
        block = blocks[i]
        if not search(CREDIT_LABEL, block):
            continue
        for text in (block, f"{block} {blocks[i + 1]}" if i + 1 < len(blocks) else ""):
            found = list(CREDIT_CODE.finditer(text.upper(), timeout=0.5))
            if found:
                out.extend(
                    (m.group(1), credit_code_valid(m.group(1)), excerpt(text, m)) for m in found
                )
                break
    return out


@check_type("licence_info", link_text=PATTERNS)
def licence_info(site: SiteView, rule: Rule, params: dict[str, Any]) -> Outcome:
    """E-Commerce Law art. 15: the homepage shows the business licence information, or a
    link to it. A 统一社会信用代码 found on the homepage or on the linked page is validated
    (GB 32100 check character) and put into the evidence. A licence link whose page shows no
    readable code (often a photo of the licence) needs an evaluator's eye: ``review``."""
    link_pattern = compile_patterns(params["link_text"])
    invalid: list[dict[str, Any]] = []
    for page in scoped_pages(site, rule):
        for code, valid, quote in _codes_in(page):
            item = {
                "url": page.final_url,
                "excerpt": quote,
                "credit_code": code,
                "check_digit_valid": valid,
            }
            if valid:
                return Outcome("pass", f"统一社会信用代码 {code} shown on {page.final_url}", [item])
            invalid.append(item)
        for link in page.links:
            if not search(link_pattern, link.text) or not link.url:
                continue
            item = {
                "url": page.final_url,
                "excerpt": link.text[:160],
                "selector": link.selector,
                "href": link.url,
            }
            target = site.page_for(link.url)
            if target is None or not target.ok:
                why = (
                    "not fetched" if target is None else f"failed: {target.error or target.status}"
                )
                return Outcome(
                    "review",
                    f"licence link found, its page {why}; an evaluator must open it",
                    [item],
                )
            codes = _codes_in(target)
            good = [c for c in codes if c[1]]
            if good:
                code, _, quote = good[0]
                return Outcome(
                    "pass",
                    f"licence page {target.final_url} shows 统一社会信用代码 {code}",
                    [
                        item,
                        {
                            "url": target.final_url,
                            "excerpt": quote,
                            "credit_code": code,
                            "check_digit_valid": True,
                        },
                    ],
                )
            if codes:
                invalid.extend(
                    {
                        "url": target.final_url,
                        "excerpt": q,
                        "credit_code": c,
                        "check_digit_valid": False,
                    }
                    for c, _, q in codes
                )
                continue
            return Outcome(
                "review",
                "licence link found, but its page shows no readable "
                "统一社会信用代码 (perhaps an image); an evaluator must look",
                [item],
            )
    if invalid:
        return Outcome(
            "fail", "the 统一社会信用代码 shown fails the GB 32100 check digit", invalid[:3]
        )
    return Outcome("fail", "no business licence information or link on the pages in scope")
