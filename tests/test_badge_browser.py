"""The verification page, the badge and the list in a real headless Chromium (Debian's),
served by waitress exactly as ``ectrust serve`` does; screenshots with Chinese text.

Screenshots go to $ECTRUST_SCREENSHOT_DIR when set (e.g. bench/out), else the test's tmp dir.
Only loopback is reachable: every other host name is NOTFOUND in Chromium's resolver.
"""

from __future__ import annotations

import os
import threading
from datetime import date
from pathlib import Path

import pytest

from audits.badgeart import phash_distance, render_svg
from audits.db import Store
from audits.registry import import_rows, read_csv
from crawler.egress import chromium_args
from crawler.netpolicy import parse_connect_to
from ectrust.config import Settings
from ectrust.sitefarm import SiteFarm
from tests.conftest import write_site

pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
HOSTS = ("verify.trust.example", "valid.example", "copycat.example")


def launch(p):  # type: ignore[no-untyped-def]
    """Chromium with the crawl's switches, the test hosts mapped to 127.0.0.1."""
    mapped = parse_connect_to([f"{host}::127.0.0.1:" for host in HOSTS])
    return p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(mapped))


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("ECTRUST_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def server(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    from waitress.server import create_server

    from ectrust.web import create_app

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is required (apt-get install chromium)")
    csv = tmp_path / "sites.csv"
    csv.write_text(
        "domain,name,start_url,industry,status,certificate_id,badge,valid_from,valid_until\n"
        "valid.example,书香网上书城 <script>alert(1)</script>,http://valid.example/,books,"
        "certified,ECT-2026-0001,red,2026-01-01,2030-12-31\n"
        "blue.example,蓝天数码,http://blue.example/,electronics,certified,ECT-2026-0002,blue,"
        "2026-02-01,2029-01-31\n"
        "old.example,旧货市场,http://old.example/,market,certified,ECT-2020-0003,red,"
        "2020-01-01,2021-12-31\n",
        encoding="utf-8",
    )
    settings = Settings(
        db_url=db_url,
        home=tmp_path / "home",
        badge_hosts=("verify.trust.example",),
    )
    store = Store(settings.db_url)
    with store.session() as session:
        import_rows(session, read_csv(csv), "sites.csv")
    app = create_app(settings, store, today=lambda: date(2026, 11, 29))
    srv = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield srv.effective_port, store
    srv.close()


def test_pages_and_badge_in_chromium(server, shots: Path, tmp_path: Path):
    from playwright.sync_api import sync_playwright
    from sqlalchemy import select

    from audits.models import BadgeSighting

    port, store = server
    base = f"http://verify.trust.example:{port}"
    farm_root = tmp_path / "farm"
    badge_tag = (
        f'<a id="v" href="{base}/cert/ECT-2026-0001">'
        f'<img id="b" src="{base}/badge/ECT-2026-0001.svg" width="160" height="52"></a>'
    )
    for host in ("valid.example", "copycat.example"):
        write_site(farm_root, host, {"index.html": (
            f'<!DOCTYPE html><html lang="zh-CN"><meta charset="utf-8"><body>'
            f"<p>{host} 页面底部：</p>{badge_tag}</body></html>")})  # fmt: skip
    with SiteFarm(farm_root) as farm, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(locale="zh-CN")
        dialogs, csp_errors, svgs = [], [], {}
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on(
            "console",
            lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.on(
            "response",
            lambda r: (
                svgs.__setitem__(r.request.headers.get("referer", ""), r.body().decode())
                if r.url.endswith(".svg")
                else None
            ),
        )

        # The verification page: holder (escaped), domain, tier, status, validity, zh + en.
        page.goto(f"{base}/cert/ECT-2026-0001")
        page.wait_for_selector("img.badge")
        text = page.inner_text("main")
        for words in ("证书验证", "Certificate verification", "valid.example", "红标", "有效",
                      "2026-01-01", "2030-12-31", "<script>alert(1)</script>"):  # fmt: skip
            assert words in text
        assert page.evaluate("document.fonts.check('16px \"Noto Sans CJK SC\"', '诚信')")
        # The badge on our own page shows the live status (no Referer: Referrer-Policy).
        assert page.evaluate("document.querySelector('img.badge').naturalWidth") == 160
        page.screenshot(path=str(shots / "cert-page.png"), full_page=True)

        page.goto(f"{base}/cert/ECT-2020-0003")
        assert "已过期" in page.inner_text(".state") and "EXPIRED" in page.inner_text(".state")
        page.screenshot(path=str(shots / "cert-expired.png"), full_page=True)

        page.goto(f"{base}/list")
        rows = page.locator("table.list tbody tr")
        assert rows.count() == 2  # the expired certificate is not listed
        assert "书香网上书城" in rows.nth(0).inner_text() and "红标" in rows.nth(0).inner_text()
        assert "蓝天数码" in rows.nth(1).inner_text()
        page.screenshot(path=str(shots / "list.png"), full_page=True)

        page.set_viewport_size({"width": 400, "height": 200})
        page.goto(f"{base}/badge/ECT-2026-0001.svg")
        page.screenshot(path=str(shots / "badge-valid.png"))

        # Shown by its own site: valid. Hot-linked by another site: "invalid", and recorded.
        page.goto(f"http://valid.example:{farm.port}/")
        page.wait_for_function("document.getElementById('b').complete")
        page.screenshot(path=str(shots / "badge-on-own-site.png"))
        page.goto(f"http://copycat.example:{farm.port}/")
        page.wait_for_function("document.getElementById('b').complete")
        page.screenshot(path=str(shots / "badge-on-copycat.png"))
        # A visitor who clicks through from the copycat is warned (SAMR-style).
        page.set_viewport_size({"width": 1280, "height": 720})
        page.click("#v")
        page.wait_for_selector(".warning")
        assert "copycat.example" in page.inner_text(".warning")
        assert "不是本证书的认证网站" in page.inner_text(".warning")
        page.screenshot(path=str(shots / "cert-warning.png"), full_page=True)
        browser.close()

    own = next(v for k, v in svgs.items() if "valid.example" in k)
    copy = next(v for k, v in svgs.items() if "copycat.example" in k)
    assert "VERIFIED" in own and "NOT VALID HERE" not in own
    assert "NOT VALID HERE" in copy and "无效标识" in copy
    assert dialogs == [] and csp_errors == []
    with store.session(readonly=True) as session:
        seen = session.scalars(select(BadgeSighting)).all()
    assert [(s.domain, s.cert_id, s.source, s.served) for s in seen] == [
        ("copycat.example", "ECT-2026-0001", "badge", "invalid"),
        ("copycat.example", "ECT-2026-0001", "cert_page", "certified"),
    ]
    assert seen[0].page.startswith(f"http://copycat.example:{farm.port}/")
    for name in ("cert-page", "list", "badge-valid", "badge-on-copycat"):
        assert (shots / f"{name}.png").stat().st_size > 1000


def test_reference_images_match_the_current_badge(tmp_path: Path):
    """audits/badge_refs/*.png must be renderings of today's SVG: a raster of the badge as
    Chromium draws it now (another id, another scale) is within a few bits of them."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(device_scale_factor=1.5)
        for tier in ("red", "blue"):
            svg = render_svg("ECT-2031-7777", tier, "valid").split("?>", 1)[1]
            page.set_content(f"<body style='margin:0;background:#fff'>{svg}</body>")
            png = page.locator("svg").screenshot()
            found = phash_distance(png)
            assert found is not None and found[0] <= 4, (tier, found)
        # The other variants are grey, crossed out: not the valid badge's copy.
        svg = render_svg("ECT-2031-7777", "red", "revoked").split("?>", 1)[1]
        page.set_content(f"<body style='margin:0;background:#fff'>{svg}</body>")
        png = page.locator("svg").screenshot()
        (tmp_path / "revoked.png").write_bytes(png)
        browser.close()
