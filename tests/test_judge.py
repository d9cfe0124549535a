"""Judging's shortcuts give what the long way gave: certificates looked up by id, links joined
once per site, footer links found by element."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urljoin

from audits.db import Store
from audits.evidence import BlobStore
from audits.judge import certificate_index, site_view
from audits.models import Certificate, Crawl, Site
from audits.pages import Page, resolve


def test_certificates_looked_up_by_id_match_the_registry_index(db_url: str, tmp_path: Path):
    store = Store(db_url)
    with store.session() as session:
        own = Site(domain="own.example", start_url="https://own.example/")
        other = Site(domain="other.example", start_url="https://other.example/")
        own.certificates.append(
            Certificate(cert_id="ECT-OWN", tier="red", status="certified",
                        valid_from=date(2025, 1, 1), valid_until=date(2025, 12, 31))
        )  # fmt: skip
        other.certificates.append(
            Certificate(cert_id="ECT-OTHER", tier="blue", status="suspended",
                        valid_from=date(2025, 1, 1), valid_until=date(2027, 1, 1))
        )  # fmt: skip
        crawl = Crawl(site=own, start_url="https://own.example/", status="finished",
                      started_at=datetime(2026, 3, 1, tzinfo=UTC))  # fmt: skip
        session.add_all([own, other, crawl])
        session.flush()
        crawl_id = crawl.id
    blobs = BlobStore(tmp_path / "home")
    with store.session(readonly=True) as session:
        crawl = session.get(Crawl, crawl_id)
        lazy = site_view(session, crawl, blobs, ())
        eager = site_view(session, crawl, blobs, (), certs=certificate_index(session))
    # asked for after the view's transaction, as the checks do
    assert lazy.certificate == eager.certificate
    assert lazy.certificate is not None and lazy.certificate.status == "expired"
    assert lazy.certificates.get("ECT-OTHER") == eager.certificates["ECT-OTHER"]
    assert lazy.certificates["ECT-OTHER"].domain == "other.example"
    assert lazy.certificates.get("ECT-NONE") is None and "ECT-NONE" not in lazy.certificates
    assert dict(lazy.certificates) == eager.certificates and len(lazy.certificates) == 2
    store.dispose()


def test_resolve_is_urljoin():
    bases = [
        "http://a.example/", "http://a.example/x/y.html?q=1#f", "https://a.example/x/",
        "http://u:p@a.example:8080/p;x?y", "a.example/x", "", "data:text/html,hi",
    ]  # fmt: skip
    hrefs = [
        "", "/", "//", "///x", "//#f", "//h/x", "/a/../b?c#d", "http://", "https://h",
        "http:///x", "http://?q", "http://h/a?b#c", "HTTP://H/", "x/y", "../z", "?q", "#f",
        ";p", "http://\t?q", "/\t/h", "mailto:a@b.example", "https://[::1]/",
    ]  # fmt: skip
    for _ in range(2):  # the second round from what was remembered
        for base in bases:
            for href in hrefs:
                assert resolve(base, href) == urljoin(base, href), (base, href)


def test_links_in_the_footer_are_the_footer_elements_links():
    body = (
        '<html><body><div class="header"><a href="/">Home</a><a href="/a">A</a></div>'
        + "".join(f'<p><a href="/p{i}">p{i}</a></p>' for i in range(50))
        + '<div class="footer"><a href="/privacy">Privacy</a><a href="/terms">Terms</a></div>'
        "</body></html>"
    ).encode()
    page = Page(
        url="https://s.example/", final_url="https://s.example/", status=200, depth=0,
        reason="start", link_text="", referrer=None, error=None,
        headers={"content-type": ["text/html; charset=utf-8"]}, body=body,
    )  # fmt: skip
    assert [link.text for link in page.links if link.in_footer] == ["Privacy", "Terms"]


def test_line_prefilter_never_skips_a_line_that_matches():
    """lines_to_search (audits/checks/base.py) lets the line-by-line searches skip lines;
    every line that matches on its own must be among those it keeps (or it must decline)."""
    import random

    from audits.checks.base import compile_patterns, lines_to_search, search

    rng = random.Random(1129)
    atoms = ["联系", "电话", "a", "b", r"\d{3}", r"\s*", r"\s+", ".", r"\b", "x?", "[ab]+"]
    extras = ["^", "$", r"(?=b)", r"(?<=a)", r"(?!b)", r"\A", r"\Z", r"\s*+", "a++", "(?i:A)"]
    alphabet = ["a", "b", " ", "\n", "联系", "电话", "1", "2", "3", "x"]
    declined = checked = 0
    for _ in range(3000):
        parts = [rng.choice(atoms + extras) for _ in range(rng.randint(1, 4))]
        pattern = compile_patterns(["".join(parts)])
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        kept = lines_to_search(pattern, text)
        if kept is None:
            declined += 1
            continue
        matching = [i for i, line in enumerate(text.split("\n")) if search(pattern, line)]
        assert set(matching) <= set(kept), (pattern.pattern, text, matching, kept)
        checked += 1
    assert checked > 1000 and declined > 100  # both paths exercised
