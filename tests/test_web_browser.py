"""The evaluators' web application driven in a real headless Chromium (Debian's), served by
waitress on 127.0.0.1 as ``ectrust serve`` does: the main flows, and RELIABILITY.md T37/T38
(crawled markup inert, no dialog, no CSP violation; stored pages never rendered) plus the
CSRF and login cases. Screenshots of each main page go to $ECTRUST_SCREENSHOT_DIR (else the
test's tmp dir). Only loopback is reachable from the browser.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from audits.models import Audit, Finding, Site, Snapshot
from audits.monitoring_models import Change
from tests.web_support import (
    ADMIN,
    CSRF,
    EVALUATOR,
    HOSTILE_EXCERPT,
    HOSTILE_TITLE,
    RTL,
    TEMPLATE_PROBE,
    WebApp,
    serve_app,
)

pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
AUDIT_TIMEOUT_MS = 150_000


@pytest.fixture
def web(tmp_path: Path, db_url: str) -> Iterator[WebApp]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is required (apt-get install chromium)")
    with serve_app(tmp_path, db_url) as app:
        yield app


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("ECTRUST_SCREENSHOT_DIR") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    from crawler.egress import chromium_args

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            # The product's own launch switches (crawler/egress.py): every name Chromium
            # would resolve by itself fails, only 127.0.0.1 and localhost are reached.
            args=chromium_args([]),
        )
        yield b
        b.close()


class Watch:
    """Fails the test on any dialog (alert/confirm/prompt) or CSP violation report."""

    def __init__(self, page: Any) -> None:
        self.dialogs: list[str] = []
        self.csp: list[str] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on(
            "console",
            lambda m: self.csp.append(m.text) if "Content Security Policy" in m.text else None,
        )

    def check(self) -> None:
        assert self.dialogs == [], f"a dialog opened: {self.dialogs}"
        assert self.csp == [], f"CSP violations: {self.csp}"


def login(page: Any, base: str, who: tuple[str, str]) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", who[0])
    page.fill("input[name=password]", who[1])
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base}/")


def register(page: Any, base: str, domain: str, name: str, industry: str = "books") -> None:
    page.goto(f"{base}/sites/new")
    page.fill("input[name=domain]", domain)
    page.fill("input[name=url]", f"http://{domain}/")
    page.fill("input[name=name]", name)
    page.fill("input[name=industry]", industry)
    page.click("main form button[type=submit]")
    page.wait_for_url(f"{base}/sites/{domain}")


def audit_and_wait(
    page: Any, base: str, domain: str, shots: Path | None = None, render: str = "never"
) -> int:
    """Start an audit from the site page and watch its run page until it is over."""
    page.goto(f"{base}/sites/{domain}")
    page.select_option("select[name=render]", render)
    page.fill("input[name=max_pages]", "10")
    page.click("form[action$='/audit'] button")
    page.wait_for_url(re.compile(r".*/runs/\d+$"))
    assert page.locator("meta[http-equiv=refresh]").count() == 1  # refreshes while running
    if shots is not None:
        page.screenshot(path=str(shots / "run-in-progress.png"), full_page=True)
    # The page reloads itself (meta refresh, no script) until the audit is done.
    page.wait_for_selector("#audit-link", timeout=AUDIT_TIMEOUT_MS)
    assert page.locator("meta[http-equiv=refresh]").count() == 0
    href = page.get_attribute("#audit-link", "href")
    return int(href.rsplit("/", 1)[1])


def test_main_flows(web: WebApp, browser: Any, shots: Path, tmp_path: Path) -> None:
    base = web.base
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch = Watch(page)

    # Anonymous: the login page, and nothing else.
    page.goto(f"{base}/sites")
    assert page.url.startswith(f"{base}/login")
    page.screenshot(path=str(shots / "login.png"))

    # Log in over plain http://127.0.0.1: Chromium keeps the Secure cookie on loopback.
    login(page, base, ADMIN)
    cookie = next(c for c in context.cookies() if c["name"] == "ectrust_session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.locator("text=alice (administrator)").count() == 1

    # Register an applicant.
    register(page, base, "books.example", "书香网上书城")
    with web.store.session(readonly=True) as session:
        site = session.scalar(select(Site).where(Site.domain == "books.example"))
        assert site is not None and site.start_url == "http://books.example/"

    # Trigger an audit against the local site and watch it finish.
    audit_id = audit_and_wait(page, base, "books.example", shots)
    page.screenshot(path=str(shots / "run-done.png"), full_page=True)
    with web.store.session(readonly=True) as session:
        audit = session.get(Audit, audit_id)
        assert audit.site.domain == "books.example" and audit.reachable
        assert audit.crawl.pages_fetched >= 3
        n_findings = session.scalar(
            select(func.count(Finding.id)).where(Finding.audit_id == audit_id)
        )
    page.click("#audit-link")
    page.wait_for_url(f"{base}/audits/{audit_id}")
    assert page.locator("section.finding").count() == n_findings > 0
    page.screenshot(path=str(shots / "audit.png"))

    # Override a finding: the reason is mandatory; original and override both stay visible.
    first = page.locator("section.finding").first
    finding_id = int((first.get_attribute("id") or "f0")[1:])
    with web.store.session(readonly=True) as session:
        original = session.get(Finding, finding_id).status
    new_status = "pass" if original != "pass" else "review"
    first.locator("details.override-form summary").click()
    first.locator("select[name=status]").select_option(new_status)
    first.locator("textarea[name=reason]").fill("人工核查：页脚链接可用 manual check, link works")
    first.locator("details.override-form button").click()
    page.wait_for_url(re.compile(rf".*/audits/{audit_id}#f{finding_id}$"))
    block = page.locator(f"#f{finding_id}")
    assert block.locator("tr.override").count() == 1
    assert "alice" in block.locator("tr.override").inner_text()
    assert "manual check, link works" in block.locator("tr.override").inner_text()
    assert f"{original}" in block.locator("p.muted").first.inner_text()  # the original result
    with web.store.session(readonly=True) as session:
        assert session.get(Finding, finding_id).status == original  # the row is untouched
    block.screenshot(path=str(shots / "override.png"))

    # An override without a reason is refused (server-side, not only by the form).
    token = CSRF.search(page.content()).group(1)
    r = page.request.post(
        f"{base}/findings/{finding_id}/override",
        form={"status": "pass", "reason": "  ", "csrf_token": token},
    )
    assert r.ok  # redirected back with a message
    page.reload()
    assert page.locator(f"#f{finding_id} tr.override").count() == 1

    # Issue a certificate (administrator), then suspend it and see the public badge change.
    page.goto(f"{base}/sites/books.example")
    page.fill("form.cert-issue input[name=reason]", "审核通过 audit passed")
    page.click("form.cert-issue button")
    page.wait_for_url(re.compile(r".*/sites/books\.example$"))
    cert_id = page.locator("#certificate + p code").first.inner_text()
    assert cert_id.startswith("ECT-")
    public = browser.new_context()  # the public: no session at all
    badge_page = public.new_page()
    badge_before = badge_page.goto(f"{base}/badge/{cert_id}.svg").text()
    assert "SUSPENDED" not in badge_before and "VALID" in badge_before.upper()
    page.fill("form.cert-suspend input[name=reason]", "整改期间暂停 suspended pending fixes")
    page.click("form.cert-suspend button")
    page.wait_for_url(re.compile(r".*/sites/books\.example#certificate$"))
    assert "suspended pending fixes" in page.locator("table.history").inner_text()
    page.screenshot(path=str(shots / "site.png"))
    page.locator("#certificate").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "site-certificate.png"))
    badge_after = badge_page.goto(f"{base}/badge/{cert_id}.svg").text()
    assert "SUSPENDED" in badge_after and "证书已暂停" in badge_after
    badge_page.goto(f"{base}/cert/{cert_id}")
    assert "暂停" in badge_page.locator(".state").inner_text()
    badge_page.screenshot(path=str(shots / "public-cert-suspended.png"), full_page=True)
    public.close()

    # Download a report.
    page.goto(f"{base}/reports?domain=books.example")
    page.screenshot(path=str(shots / "reports.png"), full_page=True)
    page.select_option("#site-report select[name=format]", "html")
    with page.expect_download() as info:
        page.click("#site-report button")
    download = info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    text = saved.read_text(encoding="utf-8")
    assert saved.suffix == ".html" and "books.example" in text and f"{audit_id}" in text
    page.select_option("#site-report select[name=format]", "json")
    with page.expect_download() as info:
        page.click("#site-report button")
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    doc = json.loads(saved.read_text(encoding="utf-8"))
    assert saved.suffix == ".json" and f'"audit_id": {audit_id}' in json.dumps(doc)
    page.select_option("#site-report select[name=format]", "pdf")
    with page.expect_download() as info:
        page.click("#site-report button")
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.suffix == ".pdf" and saved.read_bytes()[:5] == b"%PDF-"

    # The other main pages, for the screenshot review.
    for path, name in (
        ("/", "dashboard"),
        ("/sites", "sites"),
        ("/findings", "findings"),
        ("/runs", "runs"),
        ("/admin/users", "users"),
    ):
        resp = page.goto(f"{base}{path}")
        assert resp.status == 200, path
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    watch.check()
    context.close()


def _inject_hostile_finding(web: WebApp, audit_id: int) -> int:
    """A finding quoting the crawled hostile markup (what a rule's evidence may hold)."""
    with web.store.session() as session:
        row = Finding(
            audit_id=audit_id,
            rule_id="footer.privacy_link",
            pack="test",
            rule_sha256="0" * 64,
            status="fail",
            severity="high",
            title={"zh": TEMPLATE_PROBE + HOSTILE_TITLE, "en": HOSTILE_TITLE + RTL},
            message=f"{HOSTILE_EXCERPT} {RTL} {TEMPLATE_PROBE}",
            evidence=[
                {"url": "javascript:alert(1)", "excerpt": HOSTILE_EXCERPT, "selector": None},
                {"url": "http://hostile.example/", "excerpt": HOSTILE_TITLE, "selector": None},
            ],
            guidance={"en": TEMPLATE_PROBE, "zh": HOSTILE_TITLE},
        )
        session.add(row)
        session.flush()
        return row.id


def test_hostile_markup_inert_t37_t38(web: WebApp, browser: Any, shots: Path) -> None:
    base = web.base
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch = Watch(page)
    login(page, base, EVALUATOR)
    register(page, base, "hostile.example", HOSTILE_TITLE + TEMPLATE_PROBE + RTL)
    audit_id = audit_and_wait(page, base, "hostile.example")
    _inject_hostile_finding(web, audit_id)
    # The dashboard shows crawled text too: a regression's title, and a badge sighting's
    # page as the embedding site's Referer gave it (recorded by the real badge route).
    with web.store.session() as session:
        site_id = session.get(Audit, audit_id).site_id
        session.add(
            Change(
                site_id=site_id,
                audit_id=audit_id,
                kind="regression",
                rule_id="footer.privacy_link",
                detail={
                    "title": HOSTILE_TITLE + TEMPLATE_PROBE + RTL,
                    "before": {"status": "pass"},
                    "after": {"status": "fail"},
                },
            )
        )
    badge = page.request.get(
        f"{base}/badge/ECT-2026-0099.svg",
        headers={"Referer": "http://copycat.example/<script>alert(1)</script>{{7*7}}"},
    )
    assert badge.ok

    dashboard_text = page.goto(f"{base}/").text()
    assert "copycat.example" in dashboard_text and "footer.privacy_link" in dashboard_text
    for path, name in (
        (f"/audits/{audit_id}", "hostile-audit"),
        ("/sites/hostile.example", "hostile-site"),
        ("/findings", ""),
        ("/sites", ""),
        ("/", "hostile-dashboard"),
    ):
        resp = page.goto(f"{base}{path}")
        assert resp.status == 200
        headers = resp.headers
        assert "script-src" not in headers["content-security-policy"]
        assert headers["content-security-policy"].startswith("default-src 'none'")
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
        body_text = page.inner_text("body")
        assert TEMPLATE_PROBE in body_text  # shown, not evaluated
        assert "<script>alert(1)</script>" in body_text
        assert RTL not in page.content()
        assert page.locator("a[href^='javascript:']").count() == 0
        assert page.locator("img[src=x], main script, script").count() == 0
        if name:
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    page.goto(f"{base}/audits/{audit_id}")
    text = page.inner_text("main")
    assert HOSTILE_EXCERPT in text and "javascript:alert(1)" in text
    # The RTL override is shown as a visible marker, so "gnp.exe" cannot read "exe.png".
    assert RTL not in page.content() and "[U+202E]gnp.exe" in text
    assert f"{TEMPLATE_PROBE}" in text and "49" not in page.inner_text("section.finding >> nth=0")
    assert HOSTILE_EXCERPT in text  # the crawled anchor text of the link to about.html

    # T38: the stored page with <script> and <meta refresh>.
    with web.store.session(readonly=True) as session:
        digest = session.scalar(
            select(Snapshot.content_hash)
            .join(Audit, Audit.crawl_id == Snapshot.crawl_id)
            .where(Audit.id == audit_id, Snapshot.url == "http://hostile.example/about.html")
        )
    assert digest
    resp = page.goto(f"{base}/evidence/{digest}/view")
    assert resp.status == 200
    page.wait_for_timeout(1500)  # a meta refresh of 0 s would have navigated by now
    assert page.url == f"{base}/evidence/{digest}/view"
    assert 'http-equiv="refresh"' in page.inner_text("pre.source")
    page.screenshot(path=str(shots / "evidence-view.png"), full_page=True)
    raw = page.request.get(f"{base}/evidence/{digest}")
    assert raw.status == 200
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert raw.headers["content-security-policy"].startswith("sandbox")
    assert raw.headers["content-disposition"].startswith("attachment")
    assert b"<script>" in raw.body()
    with page.expect_download() as info:  # a browser asked for it downloads it, never renders
        page.goto(f"{base}/evidence/{digest}/view")
        page.click("a[href$='/evidence/" + digest + "']")
    assert info.value.suggested_filename == f"{digest}.txt"
    assert page.url == f"{base}/evidence/{digest}/view"

    # CSRF: a rerun without the token, or cross-site with it, is refused.
    runs_html = page.goto(f"{base}/runs").text()
    job_id = int(re.search(r"/runs/(\d+)", runs_html).group(1))
    r = page.request.post(f"{base}/runs/{job_id}/rerun")
    assert r.status == 403
    page.goto(f"{base}/runs/{job_id}")
    token = CSRF.search(page.content()).group(1)
    r = page.request.post(
        f"{base}/runs/{job_id}/rerun",
        form={"csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert r.status == 403
    r = page.request.post(
        f"{base}/runs/{job_id}/rerun",
        form={"csrf_token": "forged" + token[6:]},
    )
    assert r.status == 403

    # Anonymous: /findings and /evidence/<hash> go to the login page.
    anon = browser.new_context().new_page()
    for path in ("/findings", f"/evidence/{digest}"):
        anon.goto(f"{base}{path}")
        assert anon.url.startswith(f"{base}/login"), path
    direct = anon.request.get(f"{base}/evidence/{digest}", max_redirects=0)
    assert direct.status in (302, 401) and b"<script>" not in direct.body()
    watch.check()
    context.close()


def test_rendered_audit_shows_screenshots(web: WebApp, browser: Any, shots: Path) -> None:
    """An audit with JavaScript rendering: the site page shows the findings' screenshots,
    served from the evidence store as PNG images."""
    base = web.base
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    watch = Watch(page)
    login(page, base, EVALUATOR)
    register(page, base, "books.example", "书香网上书城")
    audit_id = audit_and_wait(page, base, "books.example", render="always")
    page.goto(f"{base}/sites/books.example")
    thumbs = page.locator("img.thumb")
    assert thumbs.count() > 0
    first = thumbs.first
    first.scroll_into_view_if_needed()
    assert page.evaluate("(img) => img.complete && img.naturalWidth > 0", first.element_handle())
    src = first.get_attribute("src")
    png = page.request.get(f"{base}{src}")
    assert png.headers["content-type"] == "image/png" and png.body()[:4] == b"\x89PNG"
    first.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "site-with-screenshots.png"), full_page=False)
    with web.store.session(readonly=True) as session:
        assert session.get(Audit, audit_id).crawl.options["render"] == "always"
    watch.check()


def test_changes_since_previous_audit_and_dashboard(web: WebApp, browser: Any, shots: Path) -> None:
    """Audit, break the site (its privacy policy disappears), run again from the run page:
    the site page lists what changed and the dashboard the regressions."""
    base = web.base
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    watch = Watch(page)
    login(page, base, EVALUATOR)
    register(page, base, "books.example", "书香网上书城")
    first = audit_and_wait(page, base, "books.example")
    site_dir = web.farm.root / "books.example"
    (site_dir / "privacy.html").unlink()
    index = site_dir / "index.html"
    index.write_text(
        index.read_text(encoding="utf-8").replace('<a href="/privacy.html">隐私政策</a>|', ""),
        encoding="utf-8",
    )
    page.click("form[action$='/rerun'] button")  # "Run again", with its CSRF token
    page.wait_for_url(re.compile(r".*/runs/\d+$"))
    page.wait_for_selector("#audit-link", timeout=AUDIT_TIMEOUT_MS)
    second = int(page.get_attribute("#audit-link", "href").rsplit("/", 1)[1])
    assert second > first
    page.goto(f"{base}/sites/books.example")
    changes = page.locator("table.changes tr.change-regression")
    assert changes.count() > 0
    assert "privacy" in page.inner_text("table.changes")
    assert f"#{first} → #{second}" in page.inner_text("main")
    page.screenshot(path=str(shots / "site-changes.png"), full_page=False)
    page.goto(f"{base}/")
    regressions = page.inner_text("#regressions + table")
    assert "books.example" in regressions and "privacy" in regressions
    page.screenshot(path=str(shots / "dashboard-regressions.png"), full_page=True)
    watch.check()
