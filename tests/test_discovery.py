"""Finding the privacy policy the way a customer would: footer, help centre (two clicks),
decoys that merely mention privacy, none at all, and a GBK-encoded policy page."""

from __future__ import annotations

import pytest

from tests.conftest import write_site
from tests.test_crawl import audit, page
from tests.test_policy_cli import _policy_html

FULL_ZH = _policy_html(0)
HELP_LINK = '<a href="/help/legal.html">法律声明及隐私权政策</a>'
LOGIN = page("登录", footer="<form><p>手机号</p><p>密码</p></form><p>登录即表示您同意隐私政策</p>")
TIPS = page(
    "网购隐私小贴士", footer="<p>设置复杂密码，不要点击来历不明的链接，保护好您的隐私。</p>"
)

# speaks of every clause category, but about policies in general: commits the site to nothing
ARTICLE = page(
    "为什么要读隐私政策",
    footer="".join(
        f"<p>{line}</p>"
        for line in (
            "很多消费者从来不读网站的隐私政策，其实它值得花五分钟看一看。",
            "一份好的隐私政策会说明网站收集哪些个人信息、用于什么目的、是否与第三方共享。",
            "它还应当说明信息保存期限、采取了哪些安全措施，以及用户如何查阅、更正和删除信息。",
            "政策应写明儿童个人信息的处理规则、政策更新时的通知方式和联系方式。",
            "网站使用 Cookie 时也应当告知用户，并允许用户在浏览器中拒绝。",
            "如果政策里没有写明联系方式，遇到问题时消费者将很难维权。",
            "下次注册新网站之前，不妨先看看它的隐私政策写得是否清楚、是否具体。",
        )
    ),
)


def _policy(doc: dict) -> dict | None:
    return doc["privacy_policy"]


@pytest.mark.parametrize(
    ("files", "url", "clicks"),
    [
        (
            {
                "index.html": page(footer='<a href="/privacy.html">隐私政策</a>'),
                "privacy.html": FULL_ZH,
            },
            "http://p.example/privacy.html",
            1,
        ),
        (
            {
                "index.html": page(footer='<a href="/help/">帮助中心</a>'),
                "help/index.html": page(
                    "帮助中心", links='<a href="/help/legal.html">法律声明及隐私权政策</a>'
                ),
                "help/legal.html": FULL_ZH,
            },
            "http://p.example/help/legal.html",
            2,
        ),
        (
            {
                "index.html": page(footer='<a href="/yinsi.html">Privacy Notice</a>'),
                "yinsi.html": _policy_html(1),
            },
            "http://p.example/yinsi.html",
            1,
        ),
    ],
    ids=["footer", "help-centre", "english"],
)
def test_policy_found(env, cli, site_farm, files, url, clicks):
    farm, root = site_farm
    write_site(root, "p.example", files)
    cli("sites", "add", "p.example", "--url", "http://p.example/")
    [doc] = audit(cli, farm, "p.example")
    assert _policy(doc) is not None, doc["findings"][0]
    assert (_policy(doc)["url"], _policy(doc)["clicks_from_home"]) == (url, clicks)
    present = next(f for f in doc["findings"] if f["rule_id"] == "privacy.policy_present")
    assert present["status"] == "pass"
    sharing = next(f for f in doc["findings"] if f["rule_id"] == "privacy.clause.sharing")
    assert sharing["evidence"][0]["url"] == url and sharing["evidence"][0]["excerpt"]


@pytest.mark.parametrize(
    "files",
    [
        {
            "index.html": page(footer='<a href="/login.html">登录（隐私保护）</a>'),
            "login.html": LOGIN,
        },
        {
            "index.html": page(footer='<a href="/blog/tips.html">隐私小贴士</a>'),
            "blog/tips.html": TIPS,
        },
        {"index.html": page(footer='<a href="/about.html">关于我们</a>'), "about.html": page()},
        {
            "index.html": page(footer='<a href="/news/1.html">读懂隐私政策</a>'),
            "news/1.html": ARTICLE,
        },
    ],
    ids=["login-page", "privacy-tips", "none", "article-about-policies"],
)
def test_no_policy(env, cli, site_farm, files):
    farm, root = site_farm
    write_site(root, "n.example", files)
    cli("sites", "add", "n.example", "--url", "http://n.example/")
    [doc] = audit(cli, farm, "n.example")
    assert _policy(doc) is None
    statuses = {f["rule_id"]: f["status"] for f in doc["findings"]}
    assert statuses["privacy.policy_present"] == "fail"
    assert statuses["privacy.clause.sharing"] == "fail"


def test_gbk_policy_page(env, cli, site_farm):
    farm, root = site_farm
    html = FULL_ZH.replace('charset="utf-8"', 'charset="gbk"')
    write_site(
        root,
        "g.example",
        {
            "index.html": page(footer='<a href="/privacy.html">隐私政策</a>')
            .replace('charset="utf-8"', 'charset="gbk"')
            .encode("gbk"),
            "privacy.html": html.encode("gbk"),
        },
    )
    cli("sites", "add", "g.example", "--url", "http://g.example/")
    [doc] = audit(cli, farm, "g.example")
    assert all(_policy(doc)["clauses"].values())
    children = next(f for f in doc["findings"] if f["rule_id"] == "privacy.clause.children")
    assert "十四周岁" in children["evidence"][0]["excerpt"]


SITEMAP = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
    "<url><loc>http://s.example/products/1.html</loc></url>"
    "<url><loc>http://s.example/legal/privacy-2024.html</loc></url>"
    "</urlset>"
)


@pytest.mark.parametrize(
    ("files", "url", "found_by"),
    [
        (
            {
                "index.html": page(footer='<a href="/about.html">关于我们</a>'),
                "sitemap.xml": SITEMAP,
                "legal/privacy-2024.html": FULL_ZH,
            },
            "http://s.example/legal/privacy-2024.html",
            "sitemap",
        ),
        (
            {
                "index.html": page(footer='<a href="/about.html">关于我们</a>'),
                "privacy.html": FULL_ZH,
            },
            "http://s.example/privacy.html",
            "common_path",
        ),
    ],
    ids=["sitemap", "common-path"],
)
def test_unlinked_policy_is_found_as_a_last_resort(env, cli, site_farm, files, url, found_by):
    """A policy no customer can click to still exists: reported as warn, not as pass or
    absent, with no click count."""
    farm, root = site_farm
    write_site(root, "s.example", files)
    cli("sites", "add", "s.example", "--url", "http://s.example/")
    [doc] = audit(cli, farm, "s.example")
    policy = _policy(doc)
    assert policy is not None and policy["url"] == url
    assert policy["clicks_from_home"] is None and policy["found_by"] == found_by
    present = next(f for f in doc["findings"] if f["rule_id"] == "privacy.policy_present")
    assert present["status"] == "warn" and "no link" in present["message"]
    sharing = next(f for f in doc["findings"] if f["rule_id"] == "privacy.clause.sharing")
    assert sharing["status"] == "pass"


def test_linked_policy_needs_no_last_resort(env, cli, site_farm):
    farm, root = site_farm
    write_site(
        root,
        "l.example",
        {
            "index.html": page(footer='<a href="/p.html">隐私政策</a>'),
            "p.html": FULL_ZH,
            "sitemap.xml": SITEMAP.replace("s.example", "l.example"),
        },
    )
    cli("sites", "add", "l.example", "--url", "http://l.example/")
    [doc] = audit(cli, farm, "l.example")
    assert _policy(doc)["found_by"] == "link"
    assert ("l.example", "/sitemap.xml") not in farm.requests


def test_pdf_policy_is_reported_honestly(env, cli, site_farm):
    farm, root = site_farm
    write_site(
        root,
        "f.example",
        {
            "index.html": page(footer='<a href="/privacy.pdf">隐私政策</a>'),
            "privacy.pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        },
    )
    cli("sites", "add", "f.example", "--url", "http://f.example/")
    [doc] = audit(cli, farm, "f.example")
    present = next(f for f in doc["findings"] if f["rule_id"] == "privacy.policy_present")
    assert present["status"] == "warn" and "PDF" in present["message"]


def test_policy_split_over_pages_is_reported_honestly(env, cli, site_farm):
    """Three chapters, none a policy alone (fewer than four categories each), linked from a
    policy index: warn, with every chapter named and each quote citing its own page."""
    from tests.test_policy_cli import SENTENCES

    def chapter(title: str, categories: list[str]) -> str:
        body = "".join(f"<p>{SENTENCES[c][0]}</p>" for c in categories)
        return page(title, footer=body)

    farm, root = site_farm
    write_site(
        root,
        "split.example",
        {
            "index.html": page(footer='<a href="/privacy/">隐私政策</a>'),
            "privacy/index.html": page(
                "隐私政策",
                links='<a href="/privacy/1.html">隐私政策（一）收集与使用</a>'
                '<a href="/privacy/2.html">隐私政策（二）共享与保存</a>'
                '<a href="/privacy/3.html">隐私政策（三）您的权利</a>',
            ),
            "privacy/1.html": chapter("隐私政策（一）", ["collection", "purpose", "cookies"]),
            "privacy/2.html": chapter("隐私政策（二）", ["sharing", "retention", "security"]),
            "privacy/3.html": chapter("隐私政策（三）", ["rights", "contact", "children"]),
        },
    )
    cli("sites", "add", "split.example", "--url", "http://split.example/")
    [doc] = audit(cli, farm, "split.example")
    present = next(f for f in doc["findings"] if f["rule_id"] == "privacy.policy_present")
    assert present["status"] == "warn" and "split over 3 pages" in present["message"]
    assert len(_policy(doc)["split_over"]) == 3
    sharing = next(f for f in doc["findings"] if f["rule_id"] == "privacy.clause.sharing")
    assert sharing["status"] == "pass"
    assert sharing["evidence"][0]["url"] == "http://split.example/privacy/2.html"
    changes = next(f for f in doc["findings"] if f["rule_id"] == "privacy.clause.changes")
    assert changes["status"] == "fail"
