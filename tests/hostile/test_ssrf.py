"""SSRF and egress on the Scrapy side, RELIABILITY.md T15–T18: nothing submitted, linked or
redirected to reaches loopback, private, link-local, reserved addresses, non-web ports or
non-HTTP schemes. A canary on 127.0.0.1 must see zero connections. (The Chromium side is in
test_browser.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from audits.evidence import BlobStore
from crawler.run import build_settings
from tests.hostile.harness import PUBLIC_IP, Canary, crawl_settings, home, snapshots

FORBIDDEN_HOSTS = [
    "127.0.0.1", "localhost", "[::1]", "0.0.0.0", "2130706433", "0x7f.1", "127.1",
    "[::ffff:127.0.0.1]", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1",
    "[fc00::1]", "[fe80::1%25lo]", "169.254.169.254", "metadata.google.internal",
    "shop.localhost",
]


@pytest.mark.case("T15")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_t15_forbidden_hosts_are_refused_at_submission(env, cli, host):
    bare = host.strip("[]").split("%")[0]
    # As the site's domain …
    result = cli("sites", "add", bare, "--url", f"http://{host}:8080/", expect=2)
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    # … and as the start URL of an innocent-looking domain.
    result = cli("sites", "add", "shop.example", "--url", f"http://{host}:8080/", expect=2)
    assert "start_url" in result.stderr
    assert cli.json("sites", "list", "--json") == []


STUB_ANSWERS = {
    "meta.test": "169.254.169.254", "ten.test": "10.1.2.3", "p172.test": "172.16.5.4",
    "p192.test": "192.168.1.1", "cgnat.test": "100.64.0.1", "ula.test": "fc00::1",
    "ll6.test": "fe80::1", "zero.test": "0.0.0.0", "mapped.test": "::ffff:127.0.0.1",
    "multicast.test": "224.0.0.1", "loop.test": "127.0.0.1", "reserved.test": "240.0.0.1",
}


@pytest.mark.case("T15")
@pytest.mark.timeout(120)
def test_t15_names_resolving_to_forbidden_addresses_are_refused_at_fetch(env, cli, public,
                                                                         canary):
    """Defence in depth: names pass submission, the resolver refuses them when connecting."""
    stub = {name: [[ip]] for name, ip in STUB_ANSWERS.items()}
    for name in STUB_ANSWERS:
        cli("sites", "add", name, "--url", f"http://{name}:{public.port}/")
    doc = cli.json("audit", "--all", "--json", *crawl_settings(public, stub, RETRY_TIMES=0))
    for audit in doc["audits"]:
        assert audit["reachable"] is False, audit["domain"]
        snaps = snapshots(env, audit["domain"])
        assert [s["error"] for s in snaps] == ["blocked_address"], (audit["domain"], snaps)
        assert "blocked_address" in audit["findings"][0]["message"]
    assert public.log == [] and canary.hits == 0


@pytest.mark.case("T15")
@pytest.mark.timeout(60)
def test_t15_non_web_port_is_refused(env, cli, public, canary):
    """127.0.0.2 is allowed as an address, but not on a port outside ECTRUST_ALLOWED_PORTS."""
    other = Canary(0, host=PUBLIC_IP)  # e.g. a Redis on the "public" host
    try:
        cli("sites", "add", "public.test", "--url", f"http://public.test:{other.port}/")
        doc = cli.json("audit", "public.test", "--json", *crawl_settings(public))["audits"][0]
        assert other.hits == 0
    finally:
        other.close()
    assert doc["reachable"] is False
    assert snapshots(env, "public.test")[0]["error"] == "blocked_address"
    assert canary.hits == 0


def _redirect(to: str):  # type: ignore[no-untyped-def]
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": to})

    return handler


@pytest.mark.case("T16")
@pytest.mark.timeout(90)
def test_t16_redirects_to_forbidden_targets_are_blocked_at_the_hop(env, public, canary,
                                                                    audit_site):
    port = canary.port
    targets = {
        "/r-canary": f"http://127.0.0.1:{port}/admin",
        "/r-localhost": f"http://localhost:{port}/admin",
        "/r-int": f"http://2130706433:{port}/",
        "/r-v6": f"http://[::1]:{port}/",
        "/r-meta": "http://meta.test/latest/meta-data/",
        "/r-meta-port": f"http://meta.test:{port}/latest/meta-data/",
        "/r-file": "file:///etc/passwd",
        "/r-gopher": f"gopher://127.0.0.1:{port}/_INFO",
        "/r-ftp": f"ftp://127.0.0.1:{port}/",
    }
    for path, to in targets.items():
        public.route(path, _redirect(to))
    public.html("/", home(*[(p, f"帮助{p}") for p in targets]))
    doc = audit_site(public, stub={"meta.test": [["169.254.169.254"]]},
                     args=("--max-pages", "20"))
    snaps = {s["url"].rsplit("/", 1)[1]: s for s in snapshots(env, "public.test")}
    for path in targets:
        assert snaps[path[1:]]["error"] == "redirect_to_disallowed", (path, snaps[path[1:]])
        assert snaps[path[1:]]["content_hash"] is None
    health = next(f for f in doc["findings"] if f["rule_id"] == "crawl.fetch_health")
    assert health["status"] == "review"
    assert {e["problem"] for e in health["evidence"]} == {"redirect_to_disallowed"}
    assert canary.hits == 0


@pytest.mark.case("T17")
@pytest.mark.timeout(90)
def test_t17_dns_rebinding_never_reaches_loopback_scrapy(env, public, canary, audit_site):
    """rebind.test answers 127.0.0.2 once, then 127.0.0.1 (TTL 0). Each connection is checked
    on the address it actually connects to, so later connections are refused."""
    links = [(f"/help/{i}", f"帮助 {i}") for i in range(12)]
    public.html("/", home(*links))
    for i in range(12):
        public.html(f"/help/{i}", home())
    stub = {"rebind.test": [[PUBLIC_IP], ["127.0.0.1"]]}
    audit_site(public, "rebind.test", stub=stub, args=("--max-pages", "13"),
               ECTRUST_BREAKER_ERRORS=100)
    snaps = snapshots(env, "rebind.test")
    assert canary.hits == 0
    assert {s["error"] for s in snaps} <= {None, "blocked_address"}
    assert any(s["error"] == "blocked_address" for s in snaps) or len(public.log) == 14
    blobs = BlobStore(Path(env) / "home")
    assert all(blobs.get(s["content_hash"]) != b"canary" for s in snaps if s["content_hash"])


SCHEMES = ["file:///etc/passwd", "data:text/html,<h1>x</h1>", "ftp://ftp.example/x",
           "s3://bucket/key", "javascript:alert(1)", "view-source:http://public.test/",
           "chrome://settings", "gopher://public.test/"]


@pytest.mark.case("T18")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("url", SCHEMES)
def test_t18_non_http_start_urls_are_refused(env, cli, url):
    result = cli("sites", "add", "shop.example", "--url", url, expect=2)
    assert "http:// or https://" in result.stderr


@pytest.mark.case("T18")
@pytest.mark.timeout(60)
def test_t18_non_http_links_and_refreshes_are_not_followed(env, public, canary, audit_site):
    links = [(u, "隐私政策") for u in SCHEMES]
    public.html("/", home(*links, ("/about", "关于我们")))
    public.html("/about", '<html><head><meta http-equiv="refresh" content="0; url=file:///etc/'
                          'passwd"></head><body>关于我们</body></html>')
    audit_site(public)
    snaps = snapshots(env, "public.test")
    assert {s["url"].split(":")[0] for s in snaps} == {"http"}
    fetched = [s["url"] for s in snaps]
    assert f"http://public.test:{public.port}/about" in fetched
    # Only the site's own http pages (homepage, /about, last-resort policy paths).
    assert all(u.startswith(f"http://public.test:{public.port}/") for u in fetched), fetched
    blobs = BlobStore(Path(env) / "home")
    for s in snaps:
        if s["content_hash"]:
            assert b"root:x:0:0" not in blobs.get(s["content_hash"])
    assert canary.hits == 0


@pytest.mark.case("T18")
def test_t18_settings_snapshot():
    """The handlers for file:, data:, ftp: and s3: are off; no telnet, no remote control."""
    s = build_settings({})
    handlers = s.getdict("DOWNLOAD_HANDLERS")
    assert all(handlers[k] is None for k in ("file", "data", "ftp", "s3"))
    assert s.getbool("TELNETCONSOLE_ENABLED") is False
    assert s.getbool("REMOTE_CONTROL_ENABLED") is False
    assert s.getbool("DOWNLOAD_VERIFY_CERTIFICATES") is True
    assert s["TWISTED_DNS_RESOLVER"] == "crawler.resolver.PolicyResolver"
    assert s.getlist("ECTRUST_ALLOW_NETWORKS") == []
    assert json.dumps(s.getdict("ECTRUST_DNS_STUB")) == "{}"
