"""The badge verdicts as pure functions of pages (no crawl): look-alike hosts, worst-wins,
weak evidence, and links that only resemble verification links."""

from __future__ import annotations

import pytest

from audits.checks.badge import judge_badge, lookalike_of
from audits.checks.base import compile_patterns
from audits.ruletest import example_site

OFFICIAL = ("verify.trust.example",)
HINTS = compile_patterns(["诚信认证", "trust ?seal"])
LINK_HINTS = compile_patterns(["verif", "cert", "trust"])
OWN = {"domain": "shop.example", "certificate": {"cert_id": "ECT-1", "status": "certified"}}
GOOD = (
    '<a href="http://verify.trust.example/cert/ECT-1">'
    '<img src="http://verify.trust.example/badge/ECT-1.svg"></a>'
)


def verdict(pages: list[str], site: dict | None = None) -> tuple[str, object]:
    view = example_site(
        {
            "site": site or {},
            "pages": [
                {"url": f"http://shop.example/{i or ''}", "html": f"<html><body>{p}</body></html>"}
                for i, p in enumerate(pages)
            ],
        }
    )
    v, first, _all = judge_badge(view, HINTS, LINK_HINTS)
    return v, first


@pytest.mark.parametrize(
    "host",
    [
        "verify-trust.example.com",
        "verify.trust.example.evil.test",
        "verlfy.trust.example",
        "xn--vrify-bsa.trust.example",  # vérify
        "verifytrust.example",
    ],
)
def test_lookalikes(host):
    assert lookalike_of(host, OFFICIAL) == "verify.trust.example"


@pytest.mark.parametrize("host", ["verify.trust.example", "shop.example", "www.iso.org", ""])
def test_not_lookalikes(host):
    assert lookalike_of(host, OFFICIAL) is None


def test_worst_sighting_wins():
    forged = '<a href="http://verify-trust.example.com/cert/ECT-1">诚信认证</a>'
    v, first = verdict([GOOD, forged], OWN)
    assert v == "forged_link" and first.page == "http://shop.example/1"
    assert verdict([GOOD, GOOD], OWN)[0] == "valid"


def test_text_link_with_certificate_id_to_other_host_is_forged():
    v, first = verdict(['<a href="http://trust-check.test/v?cert=ECT-1">诚信认证 查验</a>'], OWN)
    assert v == "forged_link" and first.strong


def test_own_certificate_pages_are_not_badges():
    v, _ = verdict([GOOD + '<a href="/cert/ISO9001">ISO 9001 证书</a>'], OWN)
    assert v == "valid"
    assert verdict(['<a href="https://www.iso.org/cert/12345">ISO</a>'])[0] == "absent"


def test_weak_evidence_only():
    v, first = verdict(['<img src="/x.png" alt="诚信认证">'], OWN)
    assert v == "unlinked" and not first.strong
    # Strong evidence elsewhere overrides a weak doubt.
    v, first = verdict([GOOD, '<img src="/x.png" alt="trust seal">'], OWN)
    assert v == "valid"


def test_unknown_certificate_on_official_host():
    v, first = verdict([GOOD.replace("ECT-1", "ECT-404")])
    assert v == "no_certificate" and "does not exist" in first.why
