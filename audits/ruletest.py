"""``ectrust rules test``: every rule against the example pages its file carries.

Examples are tiny sites written into the rule file (pages with URL, depth and HTML, plus the
registry facts a badge rule needs). In examples the official verification host is
``verify.trust.example``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from audits.engine import evaluate_rule
from audits.pages import CertificateInfo, Page, SiteView
from audits.rulepack import Rule, RuleSet

EXAMPLE_BADGE_HOSTS = ("verify.trust.example",)
EXAMPLE_DATE = date(2026, 1, 1)


@dataclass
class ExampleResult:
    rule: Rule
    index: int
    expected: str
    got: str
    message: str
    note: str

    @property
    def ok(self) -> bool:
        return self.expected == self.got


def example_site(example: dict) -> SiteView:  # type: ignore[type-arg]
    spec = example.get("site") or {}
    domain = spec.get("domain", "shop.example")
    pages = []
    for i, p in enumerate(example["pages"]):
        pages.append(
            Page(
                url=p["url"],
                final_url=p["url"],
                status=p.get("status", 200),
                depth=p.get("depth", 0 if i == 0 else 1),
                reason="start" if i == 0 else "hint",
                link_text=p.get("link_text", ""),
                referrer=None if i == 0 else example["pages"][0]["url"],
                error=None,
                headers={"content-type": ["text/html; charset=utf-8"]},
                body=p["html"].encode("utf-8"),
            )
        )
    own = None
    certificates: dict[str, CertificateInfo] = {}
    if spec.get("certificate"):
        c = spec["certificate"]
        own = CertificateInfo(c["cert_id"], domain, c.get("tier", "red"), c["status"])
        certificates[own.cert_id] = own
    for cert_id, other_domain in (spec.get("other_certificates") or {}).items():
        certificates[cert_id] = CertificateInfo(cert_id, other_domain, "red", "certified")
    return SiteView(
        domain=domain,
        start_url=pages[0].url,
        pages=pages,
        crawl_date=EXAMPLE_DATE,
        certificate=own,
        certificates=certificates,
        badge_hosts=EXAMPLE_BADGE_HOSTS,
    )


def run_examples(ruleset: RuleSet) -> list[ExampleResult]:
    results = []
    for rule in ruleset.rules:
        for i, example in enumerate(rule.examples):
            outcome = evaluate_rule(example_site(example), rule)
            results.append(
                ExampleResult(
                    rule,
                    i,
                    example["expect"],
                    outcome.status,
                    outcome.message,
                    example.get("note", ""),
                )
            )
    return results
