"""Hosts that misbehave as a whole, RELIABILITY.md T10–T14: certificates, DNS, failing
hosts, robots.txt and rate limits. Servers on 127.0.0.2, canary on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import itertools
import json
import ssl
import time
from typing import Any

import pytest
import trustme
from aiohttp import web

from crawler.middlewares.pacing import parse_retry_after
from tests.hostile.harness import (
    PUBLIC_IP,
    RawServer,
    Server,
    crawl_seconds,
    crawl_settings,
    home,
    http_response,
    last_crawl,
    snapshots,
)


def audit_many(cli, sites: list[tuple[str, str]], server: Any, ports: list[int], **settings):
    for domain, url in sites:
        cli("sites", "add", domain, "--url", url)
    stub = {d: [[PUBLIC_IP]] for d, _ in sites}
    opts = crawl_settings(server, stub, ECTRUST_ALLOWED_PORTS=[80, 443, *ports], **settings)
    doc = cli.json("audit", *[d for d, _ in sites], "--json", *opts)
    return {a["domain"]: a for a in doc["audits"]}


def fetch_health(doc: dict) -> dict:
    return next(f for f in doc["findings"] if f["rule_id"] == "crawl.fetch_health")


# -- T10: certificates ------------------------------------------------------------------
def _tls_server(cert: trustme.LeafCert, **ctx_opts: Any) -> Server:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    for key, value in ctx_opts.items():
        setattr(ctx, key, value)
    server = Server(ssl_context=ctx)
    server.html("/", home(("/about", "关于我们")))
    server.html("/about", home())
    return server


@pytest.mark.case("T10")
@pytest.mark.timeout(120)
def test_t10_tls_failures_are_findings_and_evidence_is_marked(env, cli, tmp_path, monkeypatch):
    ca = trustme.CA()
    other_ca = trustme.CA()  # "self-signed": an issuer nobody trusts
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # the crawler child trusts our CA only
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    servers = {
        "valid.test": _tls_server(ca.issue_cert("valid.test")),
        "selfsigned.test": _tls_server(other_ca.issue_cert("selfsigned.test")),
        "expired.test": _tls_server(
            ca.issue_cert("expired.test", not_before=past, not_after=past + dt.timedelta(days=30))
        ),
        "wronghost.test": _tls_server(ca.issue_cert("someone-else.test")),
    }
    for s in servers.values():
        s.__enter__()
    try:
        sites = [(d, f"https://{d}:{s.port}/") for d, s in servers.items()]
        ports = [s.port for s in servers.values()]
        docs = audit_many(cli, sites, servers["valid.test"], ports)
    finally:
        for s in servers.values():
            s.__exit__(None, None, None)
    assert fetch_health(docs["valid.test"])["status"] == "pass"
    valid = snapshots(env, "valid.test")
    assert valid[0]["status"] == 200
    assert not any("x-ectrust-tls-unverified" in json.loads(s["headers"]) for s in valid)
    for domain in ("selfsigned.test", "expired.test", "wronghost.test"):
        finding = fetch_health(docs[domain])
        assert finding["status"] == "fail", (domain, finding)
        assert "tls_unverified" in finding["message"]
        assert "certificate" in finding["evidence"][0]["excerpt"]
        snaps = snapshots(env, domain)
        # The audit went on, unverified, and every page says so.
        assert snaps[0]["status"] == 200 and not any(s["error"] for s in snaps), snaps
        assert all("x-ectrust-tls-unverified" in json.loads(s["headers"]) for s in snaps)
        assert docs[domain]["reachable"] is True


@pytest.mark.case("T10")
@pytest.mark.timeout(60)
def test_t10_tls10_only_server_is_a_tls_error(env, cli):
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("old.test").configure_cert(ctx)
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1
    except (ssl.SSLError, ValueError) as exc:
        pytest.skip(f"this OpenSSL cannot even serve TLS 1.0: {exc}")
    with Server(ssl_context=ctx) as server:
        server.html("/", home())
        docs = audit_many(cli, [("old.test", f"https://old.test:{server.port}/")], server,
                          [server.port])
    snaps = snapshots(env, "old.test")
    # No secure channel, no page: the server drops the handshake without an alert, so the
    # client cannot always tell a TLS refusal from a dropped connection.
    assert snaps[0]["error"] in ("tls_error", "connection_failed")
    assert snaps[0]["content_hash"] is None
    assert docs["old.test"]["reachable"] is False


# -- T11: DNS ------------------------------------------------------------------------------
@pytest.mark.case("T11")
@pytest.mark.timeout(120)
def test_t11_dns_failures_are_bounded_and_do_not_starve_others(env, cli, public, canary):
    public.html("/", home())
    rows = ["domain,name,start_url,industry,status,certificate_id,badge,valid_from,valid_until"]
    stub: dict[str, Any] = {}
    for i in range(200):
        kind = ("ok", "nx", "hang")[i % 3]
        domain = f"{kind}{i}.test"
        rows.append(f"{domain},{domain},http://{domain}:{public.port}/,books,applicant,,,,")
        stub[domain] = {"ok": [[PUBLIC_IP]], "nx": "nxdomain", "hang": "hang"}[kind]
    (env / "sites.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cli("sites", "import", str(env / "sites.csv"))
    started = time.monotonic()
    doc = cli.json("audit", "--all", "--json", "--max-pages", "2",
                   *crawl_settings(public, stub, DOWNLOAD_TIMEOUT=3, RETRY_TIMES=1,
                                   CONCURRENT_REQUESTS=200))
    elapsed = time.monotonic() - started
    assert elapsed < 150, elapsed
    assert max(crawl_seconds(env, d) for d in ("ok0.test", "nx1.test", "hang2.test")) < 60
    by_kind: dict[str, set] = {"ok": set(), "nx": set(), "hang": set()}
    for a in doc["audits"]:
        kind = a["domain"][:2] if a["domain"].startswith(("ok", "nx")) else "hang"
        by_kind[kind].add(a["reachable"])
        home_error = a["findings"][0]["evidence"][0]["excerpt"] if not a["reachable"] else None
        if kind == "nx":
            assert home_error == "dns_failure", a["findings"][0]
        if kind == "hang":
            assert home_error in ("timeout", "dns_failure"), a["findings"][0]
    assert by_kind == {"ok": {True}, "nx": {False}, "hang": {False}}
    assert canary.hits == 0


# -- T12: a host that fails every request ----------------------------------------------------
@pytest.mark.case("T12")
@pytest.mark.timeout(90)
def test_t12_failing_host_is_given_up_after_k_errors(env, public, canary, audit_site):
    async def boom(_: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="oops")

    links = [(f"/help/{i}", f"帮助 {i}") for i in range(20)]
    public.html("/", home(*links))
    public.default = boom
    public.html("/robots.txt", "", status=404)
    audit_site(public, ECTRUST_BREAKER_ERRORS=4, RETRY_TIMES=1, ECTRUST_BACKOFF_BASE=0.05)
    asked = [p for p in public.paths() if p.startswith("/help/")]
    # K failures open the breaker; in-flight requests and their retries may still land.
    assert len(asked) <= 4 + 2 + 2, asked
    snaps = snapshots(env, "public.test")
    errors = [s["error"] for s in snaps if s["url"].count("/help/")]
    assert errors.count("site_unavailable") >= 10
    stats = last_crawl(env, "public.test")["stats"]
    assert stats["closed"] == {"public.test": "site_unavailable"}
    assert canary.hits == 0


@pytest.mark.case("T12")
@pytest.mark.timeout(60)
def test_t12_resetting_host_is_bounded(env, cli):
    async def reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        import socket
        import struct

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    with RawServer() as raw:
        for path in ("/", "/robots.txt"):
            raw.routes[path] = reset
        docs = audit_many(cli, [("public.test", f"http://public.test:{raw.port}/")], raw,
                          [raw.port], RETRY_TIMES=2)
    assert docs["public.test"]["reachable"] is False
    assert len(raw.log) <= 2 * 3  # robots.txt and the homepage, each with its retries


# -- T13: robots.txt matrix --------------------------------------------------------------------
ROBOTS_CASES = {
    "rules": (200, "User-agent: *\nDisallow: /private\n", {"/about"}, {"/private"}),
    "missing": (404, "", {"/about", "/private"}, set()),
    "error500": (500, "", set(), {"/", "/about", "/private"}),
    "error503": (503, "", set(), {"/", "/about", "/private"}),
    "busy429": (429, "", set(), {"/", "/about", "/private"}),
    "bom": (200, "\ufeffUser-agent: *\nDisallow: /private\n", {"/about"}, {"/private"}),
    "huge": (200, "# filler\n" * 50_000 + "User-agent: *\nDisallow: /private\n",
             {"/about"}, {"/private"}),
}


@pytest.mark.case("T13")
@pytest.mark.timeout(90)
@pytest.mark.parametrize("case", sorted(ROBOTS_CASES))
def test_t13_robots_matrix(env, public, canary, audit_site, case):
    status, body, fetched, refused = ROBOTS_CASES[case]
    public.html("/robots.txt", body, status=status, Content_Type="text/plain")
    public.html("/", home(("/about", "关于我们"), ("/private", "联系我们")))
    public.html("/about", home())
    public.html("/private", home())
    audit_site(public, RETRY_TIMES=0)
    asked = set(public.paths()) - {"/robots.txt"}
    assert fetched <= asked
    assert not (refused & asked), asked
    snaps = {s["url"].rsplit(str(public.port), 1)[1]: s for s in snapshots(env, "public.test")}
    for path in refused & set(snaps):
        assert snaps[path]["error"] in ("robots_disallowed", f"robots_http_{status}"), snaps[path]
    assert canary.hits == 0


@pytest.mark.case("T13")
@pytest.mark.timeout(60)
def test_t13_robots_timeout_disallows(env, cli):
    async def never(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    with RawServer() as raw:
        raw.routes["/robots.txt"] = never
        raw.static("/", http_response(home()))
        docs = audit_many(cli, [("public.test", f"http://public.test:{raw.port}/")], raw,
                          [raw.port], DOWNLOAD_TIMEOUT=2, RETRY_TIMES=0)
    assert "/" not in raw.paths()
    assert docs["public.test"]["reachable"] is False
    assert snapshots(env, "public.test")[0]["error"] == "timeout"


@pytest.mark.case("T13")
@pytest.mark.timeout(60)
def test_t13_robots_redirect_to_another_host_is_followed(env, public, canary, audit_site):
    public.route("/robots.txt", _redirect_handler(f"http://rules.test:{public.port}/r.txt"))
    public.html("/r.txt", "User-agent: *\nDisallow: /private\n", Content_Type="text/plain")
    public.html("/", home(("/about", "关于我们"), ("/private", "联系我们")))
    public.html("/about", home())
    audit_site(public, stub={"rules.test": [[PUBLIC_IP]]})
    assert "/r.txt" in public.paths()
    assert "/private" not in public.paths() and "/about" in public.paths()
    assert canary.hits == 0


def _redirect_handler(to: str):  # type: ignore[no-untyped-def]
    async def handler(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(to)

    return handler


@pytest.mark.case("T13")
@pytest.mark.timeout(60)
def test_t13_crawl_delay_is_honoured_capped_and_noted(env, public, canary, audit_site):
    public.html("/robots.txt", "User-agent: *\nCrawl-delay: 3600\n", Content_Type="text/plain")
    public.html("/", home(("/about", "关于我们"), ("/contact", "联系我们"), ("/help", "帮助")))
    for p in ("/about", "/contact", "/help"):
        public.html(p, home())
    started = time.monotonic()
    audit_site(public, ECTRUST_CRAWL_DELAY_MAX=1.0)
    assert time.monotonic() - started < 90
    assert crawl_seconds(env, "public.test") < 20
    times = sorted(t for t, _, p in public.log if p != "/robots.txt")
    assert len(times) >= 4  # homepage, three links (and any last-resort policy paths)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.9, gaps
    notes = last_crawl(env, "public.test")["stats"]["notes"]
    assert any("Crawl-delay 3600s capped at 1s" in n for n in notes)
    assert canary.hits == 0


# -- T14: Retry-After ---------------------------------------------------------------------------
def test_retry_after_values():
    assert parse_retry_after(b"5") == 5.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now) <= 31
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def _busy_once(status: int, retry_after):  # type: ignore[no-untyped-def]
    calls = {"n": 0}

    async def handler(_: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        if calls["n"] == 1:
            return web.Response(status=status, text="busy",
                                headers={"Retry-After": retry_after()})
        return web.Response(text=home(), content_type="text/html")

    return handler


@pytest.mark.case("T14")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_t14_retry_after_is_honoured(env, public, canary, audit_site, form):
    def value() -> str:  # computed when the 429 is sent
        if form == "seconds":
            return "3"
        return email.utils.formatdate(time.time() + 3, usegmt=True)

    public.route("/about", _busy_once(429, value))
    public.html("/", home(("/about", "关于我们"), ("/contact", "联系我们")))
    public.html("/contact", home())
    audit_site(public)
    log = [(t, p) for t, _, p in public.log]
    first_429 = next(t for t, p in log if p == "/about")
    after = [t for t, p in log if t > first_429]
    # Nothing at all went to the host before the retry time (2.0: the HTTP date has
    # one-second resolution).
    assert after and min(after) - first_429 >= 2.0, log
    snap = next(s for s in snapshots(env, "public.test") if s["url"].endswith("/about"))
    assert snap["status"] == 200
    assert canary.hits == 0


@pytest.mark.case("T14")
@pytest.mark.timeout(60)
def test_t14_retry_after_beyond_the_cap_is_rate_limited_others_go_on(env, cli, public, canary):
    async def unavailable(_: web.Request) -> web.StreamResponse:
        return web.Response(status=503, text="later", headers={"Retry-After": "99999"})

    public.html("/", home(("/about", "关于我们"), ("/contact", "联系我们")))
    public.route("/about", unavailable)
    public.html("/contact", home())
    public.html("/other", home())
    started = time.monotonic()
    docs = audit_many(cli, [("public.test", f"http://public.test:{public.port}/"),
                            ("other.test", f"http://other.test:{public.port}/other")],
                      public, [public.port], ECTRUST_RETRY_AFTER_MAX=10)
    assert time.monotonic() - started < 90
    assert crawl_seconds(env, "public.test") < 30  # not 99999 s
    snaps = {s["url"].rsplit("/", 1)[1]: s for s in snapshots(env, "public.test")}
    assert snaps["about"]["error"] == "rate_limited"
    assert [p for _, h, p in public.log if p == "/about"] == ["/about"]  # asked once
    assert docs["other.test"]["reachable"] is True
    assert last_crawl(env, "public.test")["stats"]["closed"] == {"public.test": "rate_limited"}
    assert fetch_health(docs["public.test"])["status"] == "review"
    assert canary.hits == 0
