"""JavaScript rendering with a real headless Chromium (/usr/bin/chromium) on local sites.

Sites use reserved names mapped with --connect-to to servers on 127.0.0.1. A canary server on
127.0.0.1, never mapped, counts every request that reaches it: the browser must never get there.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from crawler.egress import EgressProxy, browser_problem, chromium_args
from crawler.netpolicy import parse_connect_to
from ectrust.sitefarm import SiteFarm
from tests.conftest import write_site
from tests.dbs import query

pytestmark = [
    pytest.mark.skipif(
        browser_problem() is not None and os.environ.get("ECTRUST_REQUIRE_SERVICES") != "1",
        reason=f"no browser: {browser_problem()}",
    ),
    # A browser on a busy 2-core machine can be several times slower than on an idle one.
    pytest.mark.timeout(300),
]

POLICY = """<h1>隐私政策</h1>
<p>我们收集您的姓名、手机号码、收货地址和订单信息，用于处理订单、配送商品和提供售后服务。</p>
<p>除法律法规规定或经您同意外，我们不会向第三方共享、转让或公开披露您的个人信息。</p>
<p>我们使用 Cookie 记住您的登录状态和购物车内容，您可以在浏览器中清除或拒绝 Cookie。</p>
<p>我们仅在实现处理目的所必需的最短期限内保存您的个人信息，超出期限后删除或匿名化处理。</p>
<p>我们采用加密传输、访问控制和安全审计等安全措施保护您的个人信息。</p>
<p>您有权查阅、复制、更正、删除您的个人信息，并可注销账户、撤回同意。</p>
<p>我们不主动收集不满十四周岁儿童的个人信息；如需处理，将事先取得其监护人的同意。</p>
<p>本政策更新时，我们会在网站显著位置公告并通知您。</p>
<p>如有疑问，请联系我们的个人信息保护负责人：privacy@shop.example，电话 400-800-1234。</p>"""

LATE_FOOTER = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<title>晚到的页脚</title></head><body><main><h1>欢迎光临晚到商店</h1><p>精选好物每日上新，全场包邮。</p></main>
<footer id="ft"></footer>
<script>
window.addEventListener('load', () => setTimeout(() => {
  document.getElementById('ft').innerHTML =
    '<a href="/privacy.html">隐私政策</a> <a href="/contact.html">联系我们</a> ' +
    '<span>京ICP备12345678号</span>';
}, 300));
</script></body></html>"""

PLAIN = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>普通商店</title>
</head><body><h1>普通商店</h1><p>精选好物每日上新，全场包邮，七天无理由退换。</p>
<footer><a href="/privacy.html">隐私政策</a> <span>京ICP备87654321号</span></footer>
</body></html>"""


def static_page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title>'
        f"</head><body>{body}</body></html>"
    )


def snapshots(env: Path, domain: str) -> list[dict]:
    return query(
        os.environ["ECTRUST_DB"],
        "select s.* from snapshots s join crawls c on c.id = s.crawl_id "
        "join sites t on t.id = c.site_id where t.domain = :d order by s.id",
        {"d": domain},
    )


def screenshots(env: Path, domain: str) -> list[dict]:
    return query(
        os.environ["ECTRUST_DB"],
        "select s.* from screenshots s join crawls c on c.id = s.crawl_id "
        "join sites t on t.id = c.site_id where t.domain = :d order by s.id",
        {"d": domain},
    )


def by_url(snaps: list[dict]) -> dict[str, dict]:
    return {s["url"]: s for s in snaps}


def audit(cli, connect: list[str], *domains: str, extra: tuple[str, ...] = ()) -> list[dict]:
    args = ["audit", *domains, "--json", "-s", "DOWNLOAD_DELAY=0", *extra]
    for spec in connect:
        args += ["--connect-to", spec]
    return cli.json(*args)["audits"]


def finding(doc: dict, rule_id: str) -> dict:
    return next(f for f in doc["findings"] if f["rule_id"] == rule_id)


def chromium_descendants() -> list[psutil.Process]:
    """Chromium processes started under this test process (never another worker's)."""
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "chrom" in proc.name():
                out.append(proc)
        except psutil.Error:
            pass
    return out


@pytest.fixture
def canary():
    """A server on 127.0.0.1 that no crawl is allowed to reach; counts hits."""
    with SiteFarm(Path("/nonexistent-canary-root")) as server:
        yield server


def test_auto_renders_late_footer_and_not_plain_sites(env, cli, site_farm):
    farm, root = site_farm
    write_site(
        root,
        "late.example",
        {"index.html": LATE_FOOTER, "privacy.html": static_page("隐私政策", POLICY)},
    )
    write_site(
        root,
        "plain.example",
        {"index.html": PLAIN, "privacy.html": static_page("隐私政策", POLICY)},
    )
    for d in ("late.example", "plain.example"):
        cli("sites", "add", d, "--url", f"http://{d}/")
    connect = [f"::127.0.0.1:{farm.port}"]
    late, plain = audit(cli, connect, "late.example", "plain.example")

    # The footer inserted 300 ms after load was seen: policy found, ICP number shown.
    assert late["privacy_policy"]["url"] == "http://late.example/privacy.html"
    assert finding(late, "privacy.policy_present")["status"] == "pass"
    assert finding(late, "business.icp_displayed")["status"] == "pass"
    home = by_url(snapshots(env, "late.example"))["http://late.example/"]
    assert home["rendered"] == 1 and home["render_reason"].startswith("auto: ")
    assert "京ICP备12345678号" in gzip.decompress(
        (
            env
            / "home"
            / "blobs"
            / home["content_hash"][:2]
            / home["content_hash"][2:4]
            / f"{home['content_hash']}.gz"
        ).read_bytes()
    ).decode("utf-8")

    # Screenshots of the rendered homepage: the viewport and the footer element, as PNGs in
    # the content-addressed store, linked from the findings that rest on that page.
    shots = screenshots(env, "late.example")
    kinds = {s["kind"] for s in shots if s["url"] == "http://late.example/"}
    assert {"viewport", "footer"} <= kinds
    for shot in shots:
        path = env / "home" / "blobs" / shot["content_hash"][:2] / shot["content_hash"][2:4]
        png = gzip.decompress((path / f"{shot['content_hash']}.gz").read_bytes())
        assert png.startswith(b"\x89PNG") and shot["width"] > 0 and shot["height"] > 0
    icp = finding(late, "business.icp_displayed")
    linked = [s for e in icp["evidence"] for s in e.get("screenshots", [])]
    assert {s["kind"] for s in linked} >= {"viewport", "footer"}

    # The HTML report shows them as thumbnails embedded in the page (read from the store).
    report = env / "report"
    cli("report", "site", "late.example", "--out", str(report), "--format", "html")
    html = (report / "site-audit.html").read_text(encoding="utf-8")
    for kind in ("viewport", "footer"):
        assert '<img src="data:image/png;base64,' in html and f'alt="{kind}"' in html
    assert "screenshot missing" not in html

    # Screenshots are evidence like bodies: in the audit's manifest, in the export, and a
    # changed screenshot file is found by `evidence verify`.
    verify = json.loads(cli("evidence", "verify", "--json").stdout)
    assert {a["status"] for a in verify["audits"]} == {"ok"}
    package = Path(
        cli("evidence", "export", str(late["audit_id"]), "--out", str(env / "x")).stdout.strip()
    )
    exported = json.loads((package / "screenshots.json").read_text())
    assert {e["kind"] for e in exported} >= {"viewport", "footer"}
    assert all((package / e["file"]).read_bytes()[:4] == b"\x89PNG" for e in exported)
    victim = env / "home" / "blobs" / shots[0]["content_hash"][:2] / shots[0]["content_hash"][2:4]
    victim = victim / f"{shots[0]['content_hash']}.gz"
    victim.write_bytes(gzip.compress(b"\x89PNG not the picture that was taken"))
    result = json.loads(cli("evidence", "verify", "--json", expect=1).stdout)
    problems = " ".join(p for a in result["audits"] for p in a["problems"])
    assert "screenshot file" in problems

    # A site without scripts is not rendered, and says why.
    plain_snaps = snapshots(env, "plain.example")
    assert plain_snaps and not any(s["rendered"] for s in plain_snaps)
    assert all(s["render_reason"].startswith("not rendered") for s in plain_snaps)
    assert finding(plain, "privacy.policy_present")["status"] == "pass"


def test_render_never_misses_the_late_footer(env, cli, site_farm):
    farm, root = site_farm
    write_site(
        root,
        "late.example",
        {"index.html": LATE_FOOTER, "privacy.html": static_page("隐私政策", POLICY)},
    )
    cli("sites", "add", "late.example", "--url", "http://late.example/")
    [doc] = audit(cli, [f"::127.0.0.1:{farm.port}"], "late.example", extra=("--render", "never"))
    assert finding(doc, "business.icp_displayed")["status"] == "fail"
    snaps = snapshots(env, "late.example")
    assert [s["render_reason"] for s in snaps if s["depth"] == 0] == ["render never"]
    assert not any(s["rendered"] for s in snaps)


SPA_SHELL = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>SPA</title>
</head><body><div id="app"></div><noscript>请启用 JavaScript</noscript>
<script src="/static/app.js"></script></body></html>"""

SPA_APP = """
const policy = %s;
const app = document.getElementById('app');
function footer() {
  return '<footer><a href="/privacy/">隐私政策</a> <a href="/complaints/">投诉举报</a> ' +
         '<span>浙ICP备20230001号</span></footer>';
}
setTimeout(() => {
  if (location.pathname.startsWith('/privacy')) {
    app.innerHTML = '<main>' + policy + '</main>' + footer();
  } else {
    app.innerHTML = '<main><h1>单页应用商店</h1><ul>' +
      '<li><a href="/product/1">蓝牙耳机</a></li><li><a href="/product/2">保温杯</a></li>' +
      '</ul><p>欢迎光临，全场满99元包邮。</p></main>' + footer();
  }
}, 150);
"""


def test_single_page_app_shop(env, cli, site_farm):
    farm, root = site_farm
    write_site(
        root,
        "spa.example",
        {
            "index.html": SPA_SHELL,
            "privacy/index.html": SPA_SHELL,
            "complaints/index.html": SPA_SHELL,
            "product/1": SPA_SHELL,
            "product/2": SPA_SHELL,
            "static/app.js": SPA_APP % json.dumps(POLICY),
        },
    )
    cli("sites", "add", "spa.example", "--url", "http://spa.example/")
    [doc] = audit(cli, [f"::127.0.0.1:{farm.port}"], "spa.example")
    assert doc["privacy_policy"]["url"] == "http://spa.example/privacy/"
    clauses = doc["privacy_policy"]["clauses"]
    assert sum(clauses.values()) >= 7, clauses
    assert finding(doc, "business.icp_displayed")["status"] == "pass"
    snaps = by_url(snapshots(env, "spa.example"))
    for url in ("http://spa.example/", "http://spa.example/privacy/"):
        assert snaps[url]["rendered"] == 1
        assert "app_shell" in snaps[url]["render_reason"]
    # The policy page was rendered as a policy candidate: it has its screenshots too.
    kinds = {s["kind"] for s in screenshots(env, "spa.example") if "privacy" in s["url"]}
    assert "viewport" in kinds


def test_js_redirect_is_followed(env, cli, site_farm):
    farm, root = site_farm
    write_site(
        root,
        "jsredir.example",
        {
            "index.html": static_page(
                "跳转", "<p>正在跳转</p><script>location.replace('/home.html')</script>"
            ),
            "home.html": PLAIN,
            "privacy.html": static_page("隐私政策", POLICY),
        },
    )
    cli("sites", "add", "jsredir.example", "--url", "http://jsredir.example/")
    [doc] = audit(cli, [f"::127.0.0.1:{farm.port}"], "jsredir.example")
    home = by_url(snapshots(env, "jsredir.example"))["http://jsredir.example/"]
    assert home["rendered"] == 1 and "js_redirect" in home["render_reason"]
    assert home["final_url"] == "http://jsredir.example/home.html"
    assert finding(doc, "business.icp_displayed")["status"] == "pass"
    assert doc["privacy_policy"]["url"] == "http://jsredir.example/privacy.html"


def test_page_that_never_goes_idle_is_captured_within_its_time_limit(env, cli, site_farm):
    farm, root = site_farm
    busy = static_page(
        "忙碌",
        "<div id='x'></div><script>"
        "setInterval(() => fetch('/ping.txt?' + Date.now()), 100);"
        "setTimeout(() => { document.getElementById('x').innerHTML = "
        "'<p>内容已加载</p><footer>粤ICP备11112222号</footer>'; }, 200);"
        "</script>",
    )
    write_site(root, "busy.example", {"index.html": busy, "ping.txt": "pong"})
    cli("sites", "add", "busy.example", "--url", "http://busy.example/")
    started = time.monotonic()
    [doc] = audit(cli, [f"::127.0.0.1:{farm.port}"], "busy.example")
    elapsed = time.monotonic() - started
    home = by_url(snapshots(env, "busy.example"))["http://busy.example/"]
    assert home["rendered"] == 1 and home["error"] is None
    assert "network not idle" in home["render_reason"]
    assert finding(doc, "business.icp_displayed")["status"] == "pass"
    assert elapsed < 40, elapsed
    # Still pinging when the page was captured, then stopped: the page was closed.
    pings = sum(1 for h, p in farm.requests if p.startswith("/ping.txt"))
    assert pings >= 10
    time.sleep(0.5)
    assert sum(1 for h, p in farm.requests if p.startswith("/ping.txt")) == pings


def test_rendered_pages_cannot_reach_unmapped_loopback(env, cli, site_farm, canary):
    """RELIABILITY.md T16/T19 for the browser: sub-resources, fetch(), iframes and a JS
    redirect towards an unmapped loopback address are refused; the canary sees nothing."""
    farm, root = site_farm
    c = canary.port
    probe = static_page(
        "探测",
        f"<p>店铺首页</p><img src='http://127.0.0.1:{c}/img.png'>"
        f"<iframe src='http://localhost:{c}/frame'></iframe>"
        f"<iframe src='http://10.255.255.1/'></iframe>"
        f"<script>fetch('http://127.0.0.1:{c}/fetch').catch(() => 0);"
        f"fetch('http://unmapped.test:{c}/x').catch(() => 0);"
        f"try {{ new WebSocket('ws://127.0.0.1:{c}/ws'); }} catch (e) {{}}</script>"
        "<footer><a href='/go.html'>联系我们</a> 京ICP备12345678号</footer>",
    )
    redirect = static_page(
        "跳转", f"<script>location.href = 'http://127.0.0.1:{c}/admin';</script>"
    )
    write_site(root, "probe.example", {"index.html": probe, "go.html": redirect})
    cli("sites", "add", "probe.example", "--url", "http://probe.example/")
    [doc] = audit(
        cli,
        [f"probe.example::127.0.0.1:{farm.port}"],
        "probe.example",
        extra=("--render", "always"),
    )
    snaps = by_url(snapshots(env, "probe.example"))
    assert snaps["http://probe.example/"]["rendered"] == 1
    assert snaps["http://probe.example/"]["error"] is None
    go = snaps["http://probe.example/go.html"]
    assert go["error"] == "blocked_address" and go["rendered"] == 0
    assert canary.requests == []
    assert finding(doc, "business.icp_displayed")["status"] == "pass"


def test_egress_proxy_policy(canary, site_farm):
    farm, root = site_farm
    write_site(root, "ok.example", {"index.html": "hello"})
    with EgressProxy([f"ok.example::127.0.0.1:{farm.port}"]) as proxy:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": proxy.url, "https": proxy.url})
        )
        assert opener.open("http://ok.example/", timeout=10).read() == b"hello"
        for url in (
            f"http://127.0.0.1:{canary.port}/",
            f"http://localhost:{canary.port}/",
            f"http://[::ffff:127.0.0.1]:{canary.port}/",
            "http://169.254.169.254/latest/meta-data/",
        ):
            with pytest.raises(urllib.error.HTTPError) as info:
                opener.open(url, timeout=10)
            assert info.value.code == 403
            assert proxy.token in info.value.read().decode()
        # CONNECT tunnels (HTTPS, WebSockets) obey the same policy.
        import socket

        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(f"CONNECT 127.0.0.1:{canary.port} HTTP/1.1\r\n\r\n".encode())
            assert sock.recv(100).startswith(b"HTTP/1.1 403")
    assert canary.requests == []
    assert len(proxy.stats.refused) == 5


def test_chromium_resolver_rules():
    args = chromium_args(parse_connect_to(["shop.test:80:127.0.0.1:8081", "::127.0.0.2:9000"]))
    rules = next(a for a in args if a.startswith("--host-resolver-rules="))
    assert rules == (
        "--host-resolver-rules=MAP shop.test:80 127.0.0.1:8081 , MAP * 127.0.0.2:9000 , "
        "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost"
    )
    assert "--disable-quic" in args and "--no-sandbox" in args


def test_forced_loopback_bypass_is_refused(monkeypatch):
    """T20: a browser that could reach loopback without the proxy is not launched."""
    monkeypatch.setenv("PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_PROXIED_LOOPBACK", "1")
    assert "PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_PROXIED_LOOPBACK" in (browser_problem() or "")


def test_browser_killed_mid_crawl_recovers(env, cli, tmp_path):
    """T21: Chromium is SIGKILLed while a site is being rendered; it is relaunched, the page
    retried, and every page ends as a snapshot."""
    root = tmp_path / "killfarm"
    killed: list[int] = []

    def on_request(host: str, path: str) -> None:
        if path.startswith("/kill.js") and not killed:
            for proc in chromium_descendants():
                try:
                    if "--type=" not in " ".join(proc.cmdline()):
                        proc.kill()
                        killed.append(proc.pid)
                except psutil.Error:
                    pass

    pages = {}
    links = "".join(f"<a href='/help/{i}.html'>帮助 {i}</a>" for i in range(5))
    for i in range(5):
        script = "/kill.js" if i == 2 else "/ok.js"
        pages[f"help/{i}.html"] = static_page(
            f"帮助 {i}", f"<div id='a'></div><script src='{script}'></script>"
        )
    pages["index.html"] = static_page("首页", f"<p>首页</p>{links}<footer>联系我们</footer>")
    pages["kill.js"] = "document.getElementById('a').textContent = '帮助内容';"
    pages["ok.js"] = "document.getElementById('a').textContent = '帮助内容';"
    write_site(root, "kill.example", pages)
    with SiteFarm(root, on_request=on_request) as farm:
        cli("sites", "add", "kill.example", "--url", "http://kill.example/")
        [doc] = audit(cli, [f"::127.0.0.1:{farm.port}"], "kill.example")
    assert killed, "the browser was never killed"
    snaps = by_url(snapshots(env, "kill.example"))
    help_pages = [snaps[f"http://kill.example/help/{i}.html"] for i in range(5)]
    assert doc["crawl_status"] == "finished"
    # Every page ends as a snapshot; all rendered except at most the one in flight (retried
    # once, then recorded as an error naming the crash).
    failed = [s for s in help_pages if not s["rendered"]]
    assert len(failed) <= 1, failed
    for s in failed:
        assert s["error"].startswith("render_"), s
    assert sum(s["rendered"] for s in help_pages) >= 4
    time.sleep(1)
    assert chromium_descendants() == [], "browser processes left behind"


def test_cjk_fonts_installed():
    """Screenshots of Chinese pages need CJK fonts (fonts-noto-cjk), else they show boxes."""
    out = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=True)
    assert "Noto" in out.stdout


def test_bad_render_environment_exits_3(env, cli, monkeypatch):
    monkeypatch.setenv("PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_PROXIED_LOOPBACK", "1")
    cli("sites", "add", "x.example", "--url", "http://x.example/")
    result = cli("audit", "x.example", "--render", "always", expect=3)
    assert "PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_PROXIED_LOOPBACK" in result.stderr
