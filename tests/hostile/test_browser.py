"""The browser side, RELIABILITY.md T03/T06/T09 (Playwright paths), T17 (Chromium), T19–T23.

JavaScript rendering (scrapy-playwright, Chromium) is built by the rendering issue. These tests
drive it only through the public interface (``audit --render always``, CONTRACT.md) and skip,
saying why, only when that feature is absent (the command refuses ``--render always``).
Chromium reaches the simulated public site through ``--connect-to`` (which applies to plain
and rendered fetches alike); the canary on 127.0.0.1 must see no TCP and no UDP traffic.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import psutil
import pytest
from aiohttp import web

from tests.hostile.harness import PUBLIC_IP, crawl_settings, home, snapshots

# Chromium runs a dozen processes whose resident sets share most of their pages: the summed
# RSS the bound measures counts that memory once per process (the crawl's own limit for
# rendering runs is 4096 MB for the same reason).
pytestmark = pytest.mark.memory_mb(4096)

ABSENT = "JavaScript rendering is not built on this branch (rendering issue): "


def render_audit(cli, public, domain="public.test", *, expect=0, extra=(), **settings):  # type: ignore[no-untyped-def]
    cli("sites", "add", domain, "--url", f"http://{domain}:{public.port}/")
    result = cli(
        "audit", domain, "--json", "--render", "always",
        "--connect-to", f"{domain}::{PUBLIC_IP}:{public.port}",
        *crawl_settings(public, **settings), *extra, expect=None,
    )
    if result.exit_code == 2 and "not available" in result.stderr:
        pytest.skip(ABSENT + result.stderr.strip().splitlines()[-1])
    if expect is not None:
        assert result.exit_code == expect, result.stderr
    return result


def chromium_processes() -> list[psutil.Process]:
    me = psutil.Process()
    out = []
    for p in me.children(recursive=True):
        try:
            if "chrom" in p.name().lower():
                out.append(p)
        except psutil.Error:
            pass
    return out


def browser_processes() -> list[psutil.Process]:
    """The live Chromium browser processes (not their renderers, GPU or zygote helpers).

    A helper can exit between listing and reading its command line, or linger as a zombie
    until its parent reaps it: both are skipped rather than crashing the watcher.
    """
    out = []
    for p in chromium_processes():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "--type=" not in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


@pytest.mark.case("T19")
@pytest.mark.timeout(120)
def test_t19_subresources_to_loopback_are_blocked_in_the_browser(env, cli, public, canary):
    c = f"127.0.0.1:{canary.port}"
    page = f"""<html><body><p>欢迎</p>
<img src="http://{c}/i"><iframe src="http://meta.test/latest/meta-data/"></iframe>
<iframe src="http://{c}/frame"></iframe>
<script>
fetch("http://{c}/fetch").catch(() => {{}});
try {{ new WebSocket("ws://{c}/ws"); }} catch (e) {{}}
const w = new Worker(URL.createObjectURL(new Blob(
  ["try {{ new WebSocket('ws://{c}/worker') }} catch (e) {{}}"], {{type: "text/javascript"}})));
if (navigator.serviceWorker) navigator.serviceWorker.register("/sw.js").catch(() => {{}});
try {{
  const pc = new RTCPeerConnection({{iceServers: [{{urls: "stun:{c}"}}]}});
  pc.createDataChannel("x"); pc.createOffer().then(o => pc.setLocalDescription(o));
}} catch (e) {{}}
</script></body></html>"""
    public.html("/", page)
    public.html("/sw.js", f'fetch("http://{c}/sw")', Content_Type="text/javascript")
    render_audit(cli, public)
    time.sleep(1.0)  # late UDP/WebSocket attempts
    assert (canary.tcp_hits, canary.udp_hits) == (0, 0)


@pytest.mark.case("T20")
@pytest.mark.timeout(120)
def test_t20_loopback_bypass_setting_refuses_to_launch(env, cli, public, canary, monkeypatch):
    monkeypatch.setenv("PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_PROXIED_LOOPBACK", "1")
    public.html("/", home(extra=f'<img src="http://127.0.0.1:{canary.port}/i">'))
    result = render_audit(cli, public, expect=None)
    refused = result.exit_code in (2, 3) and \
        "PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_PROXIED_LOOPBACK" in result.stderr
    rendered = [s for s in snapshots(env, "public.test") if s["rendered"]]
    assert refused or not rendered, "the browser was launched with the loopback bypass set"
    assert canary.hits == 0


@pytest.mark.case("T17")
@pytest.mark.timeout(120)
def test_t17_dns_rebinding_chromium(env, cli, public, canary):
    public.html("/", home(("/about", "关于我们")))
    public.html("/about", home())
    stub = {"rebind.test": [[PUBLIC_IP], ["127.0.0.1"]]}
    cli("sites", "add", "rebind.test", "--url", f"http://rebind.test:{public.port}/")
    result = cli("audit", "rebind.test", "--json", "--render", "always",
                 *crawl_settings(public, stub), expect=None)
    if result.exit_code == 2 and "not available" in result.stderr:
        pytest.skip(ABSENT + "rendered fetches of rebind.test cannot be tried")
    assert canary.hits == 0


@pytest.mark.case("T21")
@pytest.mark.timeout(180)
def test_t21_chromium_killed_mid_crawl_is_relaunched(env, cli, public, canary):
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.7)
        return web.Response(text=home(), content_type="text/html")

    links = [(f"/help/{i}", f"帮助 {i}") for i in range(8)]
    public.html("/", home(*links))
    public.default = slow
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            browsers = browser_processes()
            if browsers and sum(p.startswith("/help/") for p in public.paths()) >= 2:
                try:
                    browsers[0].kill()
                except psutil.NoSuchProcess:
                    continue  # it exited on its own; look again
                killed.append(browsers[0].pid)
            time.sleep(0.1)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    render_audit(cli, public, extra=("--max-pages", "9"))
    thread.join(1)
    if not killed:
        pytest.fail("no Chromium process was seen to kill")
    snaps = snapshots(env, "public.test")
    assert len(snaps) == 9 and all(s["status"] == 200 for s in snaps), snaps
    assert canary.hits == 0


@pytest.mark.case("T22")
@pytest.mark.timeout(240)
def test_t22_hostile_javascript_is_bounded_and_leaves_no_zombies(env, cli, public, canary):
    scripts = {
        "/help/loop": "while (true) {}",
        "/help/memory": "const a = []; while (true) a.push(new Array(1e7).fill(1));",
        "/help/alerts": "while (true) alert('x');",
        "/help/unload": "addEventListener('beforeunload', e => { e.preventDefault(); "
                        "e.returnValue = ''; }); location.href = '/help/unload?again';",
        "/help/redirect": "location.href = '/help/redirect2';",
        "/help/redirect2": "location.href = '/help/redirect';",
    }
    for path, js in scripts.items():
        public.html(path, f"<html><body><p>x</p><script>{js}</script></body></html>")
    public.html("/help/fine", home())
    public.html("/", home(*[(p, f"帮助{p}") for p in [*scripts, "/help/fine"]]))
    started = time.monotonic()
    render_audit(cli, public, extra=("--max-pages", "10", "--time-limit", "180"))
    assert time.monotonic() - started < 200
    fine = [s for s in snapshots(env, "public.test") if s["url"].endswith("/help/fine")]
    assert fine and fine[0]["status"] == 200
    time.sleep(2)
    assert chromium_processes() == []  # no zombie browsers after the run
    assert canary.hits == 0


@pytest.mark.case("T23")
@pytest.mark.slow
@pytest.mark.memory_mb(3000)
@pytest.mark.timeout(900)
def test_t23_rendering_soak_keeps_memory_flat(env, cli, public, canary, memory_bound):
    links = [(f"/help/{i}", f"帮助 {i}") for i in range(300)]
    public.html("/", home(*links))

    async def page(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("7"):
            return web.Response(status=500, text="forced error")
        return web.Response(text=home(), content_type="text/html")

    public.default = page
    render_audit(cli, public, extra=("--max-pages", "301", "--time-limit", "800"))
    assert len(snapshots(env, "public.test")) == 301
    assert chromium_processes() == []
    assert canary.hits == 0


@pytest.mark.case("T03", "T06", "T09")
@pytest.mark.timeout(240)
def test_rendered_paths_of_t03_t06_t09(env, cli, public, canary):
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        await resp.prepare(request)
        try:
            for _ in range(3200):  # 200 MB
                await resp.write(b"<p>" + b"x" * 65530 + b"</p>"[:3])
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp

    public.route("/help/huge", endless)
    public.html("/help/jsloop", "<script>location.href='/help/jsloop?'+Date.now()</script>")
    gbk = "<html><body><p>朱镕基 陶喆</p></body></html>".encode("gbk")
    public.html("/help/gbk", gbk, Content_Type="text/html; charset=gb2312")
    public.html("/", home(("/help/huge", "帮助1"), ("/help/jsloop", "帮助2"),
                          ("/help/gbk", "帮助3")))
    render_audit(cli, public, extra=("--time-limit", "200"))
    snaps = {s["url"].rsplit("/", 1)[1]: s for s in snapshots(env, "public.test")}
    assert snaps["huge"]["content_hash"] is None and snaps["huge"]["error"]
    assert snaps["gbk"]["status"] == 200
    from tests.hostile.test_fetch import stored_page

    assert "朱镕基 陶喆" in stored_page(env, snaps["gbk"]).text
    assert canary.hits == 0


def test_browser_tests_leave_the_environment_clean():
    assert "PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_PROXIED_LOOPBACK" not in os.environ
