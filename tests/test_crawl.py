"""The crawler on real local HTTP servers: robots.txt, page cap, charsets, connect-to and the
address policy. Traffic stays on 127.0.0.1."""

from __future__ import annotations

import json
import os

from ectrust.sitefarm import SiteFarm
from tests.conftest import write_site
from tests.dbs import query

HOME = """<html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title></head>
<body><nav>{links}</nav><p>欢迎光临本店，精选好物每日上新。</p>
<footer>{footer}</footer></body></html>"""


def page(title: str = "店铺", links: str = "", footer: str = "") -> str:
    return HOME.format(title=title, links=links, footer=footer)


def snapshots(env, domain: str) -> list[dict]:
    return query(
        os.environ["ECTRUST_DB"],
        "select s.* from snapshots s join crawls c on c.id = s.crawl_id "
        "join sites t on t.id = c.site_id where t.domain = :d order by s.id",
        {"d": domain},
    )


def audit(cli, farm: SiteFarm, *domains: str, extra: tuple[str, ...] = ()) -> list[dict]:
    doc = cli.json(
        "audit",
        *domains,
        "--json",
        "--connect-to",
        f"::127.0.0.1:{farm.port}",
        "-s",
        "DOWNLOAD_DELAY=0",
        *extra,
    )
    return doc["audits"]


def paths(farm: SiteFarm, host: str) -> list[str]:
    return [p for h, p in farm.requests if h == host]


def test_robots_txt_is_obeyed(env, cli, site_farm):
    farm, root = site_farm
    write_site(
        root,
        "robots.example",
        {
            "robots.txt": "User-agent: *\nDisallow: /private/\n",
            "index.html": page(
                links='<a href="/private/contact.html">联系我们</a>'
                '<a href="/about.html">关于我们</a>'
            ),
            "about.html": page("关于我们"),
            "private/contact.html": page("secret"),
        },
    )
    cli("sites", "add", "robots.example", "--url", "http://robots.example/")
    [doc] = audit(cli, farm, "robots.example")
    assert doc["reachable"] is True
    fetched = paths(farm, "robots.example")
    assert "/about.html" in fetched and "/robots.txt" in fetched
    assert not any(p.startswith("/private/") for p in fetched)
    denied = [s for s in snapshots(env, "robots.example") if s["url"].endswith("contact.html")]
    assert [s["error"] for s in denied] == ["robots_disallowed"]


def test_robots_5xx_means_disallow_all(env, cli, site_farm):
    farm, root = site_farm
    write_site(
        root,
        "down.example",
        {
            "robots.txt": "oops",
            "robots.txt.headers.json": json.dumps({"status": 503}),
            "index.html": page(),
        },
    )
    cli("sites", "add", "down.example", "--url", "http://down.example/")
    [doc] = audit(cli, farm, "down.example")
    assert set(paths(farm, "down.example")) == {"/robots.txt"}
    assert doc["reachable"] is False
    assert {f["status"] for f in doc["findings"]} == {"error"}
    assert [s["error"] for s in snapshots(env, "down.example")] == ["robots_http_503"]


def test_robots_404_allows_everything(env, cli, site_farm):
    farm, root = site_farm
    write_site(root, "norobots.example", {"index.html": page()})
    cli("sites", "add", "norobots.example", "--url", "http://norobots.example/")
    [doc] = audit(cli, farm, "norobots.example")
    assert doc["reachable"] is True and "/" in paths(farm, "norobots.example")


def test_page_cap_and_focus(env, cli, site_farm):
    farm, root = site_farm
    links = "".join(f'<a href="/help/{i}.html">帮助 {i}</a>' for i in range(60))
    links += "".join(f'<a href="/product/{i}.html">商品 {i}</a>' for i in range(60))
    files = {"index.html": page(links=links)}
    files.update({f"help/{i}.html": page(f"帮助 {i}") for i in range(60)})
    files.update({f"product/{i}.html": page(f"商品 {i}") for i in range(60)})
    write_site(root, "big.example", files)
    cli("sites", "add", "big.example", "--url", "http://big.example/")
    [doc] = audit(cli, farm, "big.example", extra=("--max-pages", "8"))
    fetched = [p for p in paths(farm, "big.example") if p != "/robots.txt"]
    assert doc["pages_fetched"] == len(fetched) == 8
    products = [p for p in fetched if p.startswith("/product/")]
    assert 1 <= len(products) <= 2, fetched  # a sample, not a crawl of the catalogue


def test_gbk_pages_are_decoded(env, cli, site_farm):
    """RELIABILITY.md T09 (a)(b): GBK bodies with characters outside GB2312 (镕, 喆),
    declared as gb2312 in the header or as gbk in a <meta> only."""
    farm, root = site_farm
    body = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=gbk">'
        "<title>镕喆商城</title></head><body><p>镕喆商城欢迎您</p>"
        "<footer>沪ICP备87654321号 镕喆</footer></body></html>"
    ).encode("gbk")
    write_site(root, "gbk.example", {"index.html": body})
    write_site(
        root,
        "gb2312.example",
        {
            "index.html": body.replace(b"charset=gbk", b""),
            "index.html.headers.json": json.dumps(
                {"headers": {"Content-Type": "text/html; charset=gb2312"}}
            ),
        },
    )
    for domain in ("gbk.example", "gb2312.example"):
        cli("sites", "add", domain, "--url", f"http://{domain}/")
    docs = audit(cli, farm, "gbk.example", "gb2312.example")
    for doc in docs:
        icp = next(f for f in doc["findings"] if f["rule_id"] == "business.icp_displayed")
        assert icp["status"] == "pass", icp
        assert icp["evidence"][0]["number"] == "沪ICP备87654321号"
        assert "镕喆" in icp["evidence"][0]["excerpt"]


def test_unreachable_site_is_reported_not_judged(env, cli, site_farm):
    farm, _ = site_farm
    cli("sites", "add", "gone.test", "--url", "http://gone.test/")
    # Only books.example is mapped: gone.test has no address at all.
    doc = cli.json(
        "audit", "gone.test", "--json", "--connect-to", f"books.example::127.0.0.1:{farm.port}"
    )["audits"][0]
    assert doc["reachable"] is False and doc["score"] is None
    assert doc["privacy_policy"] is None
    assert {f["status"] for f in doc["findings"]} == {"error"}
    assert "dns_failure" in doc["findings"][0]["message"]


def test_redirect_to_loopback_is_blocked(env, cli, site_farm, tmp_path):
    """RELIABILITY.md T15/T16: only hosts the operator mapped may reach loopback."""
    farm, root = site_farm
    canary_root = tmp_path / "canary"
    (canary_root / "localhost").mkdir(parents=True)
    with SiteFarm(canary_root) as canary:
        write_site(
            root,
            "redir.example",
            {
                "index.html": "moved",
                "index.html.headers.json": json.dumps(
                    {
                        "status": 302,
                        "headers": {"Location": f"http://localhost:{canary.port}/admin"},
                    }
                ),
            },
        )
        cli("sites", "add", "redir.example", "--url", "http://redir.example/")
        doc = cli.json(
            "audit",
            "redir.example",
            "--json",
            "--connect-to",
            f"redir.example::127.0.0.1:{farm.port}",
        )["audits"][0]
        assert canary.requests == []
    assert doc["reachable"] is False
    assert "redirect_to_disallowed" in [s["error"] for s in snapshots(env, "redir.example")]


def test_bad_connect_to_is_bad_usage(env, cli):
    cli("sites", "add", "shop.example", "--url", "http://shop.example/")
    result = cli("audit", "shop.example", "--connect-to", "nonsense", expect=2)
    assert "HOST1:PORT1:HOST2:PORT2" in result.stderr


def test_unknown_domain_is_bad_usage(env, cli):
    cli("init")
    assert "not registered: nope.example" in cli("audit", "nope.example", expect=2).stderr


def test_time_limit_kills_the_crawl_and_says_so(env, cli):
    """RELIABILITY.md T24: a server that never answers cannot hold the run past its limit."""
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []

    def accept_and_hold() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # never answer

    threading.Thread(target=accept_and_hold, daemon=True).start()
    try:
        cli("sites", "add", "hang.example", "--url", "http://hang.example/")
        started = time.monotonic()
        doc = cli.json(
            "audit",
            "hang.example",
            "--json",
            "--time-limit",
            "4",
            "--connect-to",
            f"::127.0.0.1:{server.getsockname()[1]}",
        )["audits"][0]
        assert time.monotonic() - started < 20
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert doc["crawl_status"] == "timed_out"
    assert {f["status"] for f in doc["findings"]} == {"error"}


def test_oversized_page_is_cut_off_and_named(env, cli, site_farm):
    farm, root = site_farm
    big = page(links='<a href="/about.html">关于我们</a>') + "<!--" + "x" * 200_000 + "-->"
    write_site(
        root,
        "huge.example",
        {"index.html": page(links='<a href="/about.html">关于我们</a>'), "about.html": big},
    )
    cli("sites", "add", "huge.example", "--url", "http://huge.example/")
    audit(cli, farm, "huge.example", extra=("-s", "DOWNLOAD_MAXSIZE=100000"))
    about = [s for s in snapshots(env, "huge.example") if s["url"].endswith("/about.html")]
    assert [(s["error"], s["content_hash"]) for s in about] == [("too_large", None)]
