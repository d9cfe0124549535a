"""Link normalisation for the crawl: the memoised path gives what the plain one gives."""

from __future__ import annotations

import pytest
from scrapy.http import HtmlResponse, Request, TextResponse, XmlResponse

from crawler.dom import page_root
from crawler.links import DEFAULT_HINTS, compile_hints, extract_links, followable_url, normalise_url

BASES = [
    "http://shop.test/",
    "http://shop.test/a/b/page.html?x=1",
    "https://Shop.Test:8443/dir/",
    "http://other.test/deep/er/",
    "http://shop.test?q=1",
]
HREFS = [
    "/about",
    "/about?x=1#frag",
    "about.html",
    "../up.html",
    "?page=2",
    "#top",
    "//cdn.test/x.html",
    "http://shop.test/privacy",
    "HTTPS://Shop.Test/Privacy",
    "  /spaced  ",
    "javascript:void(0)",
    "mailto:a@shop.test",
    "/logo.png",
    "/files/terms.PDF",
    "/路径/隐私",
    "",
]


@pytest.mark.parametrize("base", BASES)
def test_followable_url_matches_normalise_url(base):
    from crawler.links import _SKIP_EXT, normalise_link, origin_of, urlsplit

    origin = origin_of(base)
    for href in HREFS * 2:  # the second round comes from the cache
        expected = normalise_url(base, href)
        assert normalise_link(base, href, origin) == expected, (base, href)
        if expected is not None and _SKIP_EXT.search(urlsplit(expected).path):
            expected = None
        assert followable_url(base, href, origin) == expected, (base, href)


def test_root_relative_links_are_not_shared_between_hosts():
    a = followable_url("http://a.test/x/", "/about", "http://a.test")
    b = followable_url("http://b.test/y/", "/about", "http://b.test")
    assert (a, b) == ("http://a.test/about", "http://b.test/about")


PAGE = """<html><head><title>t</title><script>var x = 1;</script></head><body>
<nav><a href="/privacy">隐私政策</a> <a href="products/1.html">Product</a></nav>
<!-- a comment --><p>text <a href="http://elsewhere.test/">out</a></p>
<a href="/pic.jpg">image</a></body></html>"""


def test_page_root_is_one_plain_lxml_tree_with_the_selectors_links():
    url = "http://shop.test/index.html"
    response = HtmlResponse(url, body=PAGE.encode(), encoding="utf-8", request=Request(url))
    root = page_root(response)
    assert type(root).__module__ == "lxml.etree"  # not lxml.html's Python-looked-up classes
    hints = compile_hints(DEFAULT_HINTS)
    ours = list(extract_links(root, url, hints))
    scrapys = list(extract_links(response.selector.root, url, hints))
    assert ours == scrapys
    assert [(link.url, link.hint) for link in ours] == [
        ("http://shop.test/privacy", True),
        ("http://shop.test/products/1.html", False),
        ("http://elsewhere.test/", False),
    ]


def test_page_root_of_other_responses():
    url = "http://shop.test/feed.xml"
    xml = XmlResponse(url, body=b"<rss><a href='/x'>x</a></rss>", request=Request(url))
    assert page_root(xml) is xml.selector.root
    assert page_root(TextResponse(url, body=b"", encoding="utf-8")) is not None
    from scrapy.http import Response

    assert page_root(Response(url, body=b"\x89PNG")) is None


def _random_page(rng) -> str:  # type: ignore[no-untyped-def]
    words = ["", " ", "隐私", "a b", "\n\t", "商品详情 ", "x" * 30, "  联系我们  ", "ok"]
    tags = ["div", "p", "span", "script", "style", "noscript", "template", "a", "b"]

    def node(depth: int) -> str:
        if depth > 3 or rng.random() < 0.3:
            return rng.choice(words)
        tag = rng.choice(tags)
        inner = "".join(node(depth + 1) for _ in range(rng.randint(0, 4)))
        comment = "<!-- c -->" + rng.choice(words) if rng.random() < 0.2 else ""
        return f"<{tag}>{rng.choice(words)}{inner}</{tag}>{comment}{rng.choice(words)}"

    return "<html><body>" + "".join(node(0) for _ in range(rng.randint(0, 5))) + "</body></html>"


def test_early_exit_text_length_agrees_with_the_whole_visible_text():
    """render_reasons' "little_text" test stops walking once the answer is known; it must
    answer what measuring the whole visible text answers, at every threshold."""
    import random

    from crawler.render import _has_visible_text, _visible_text

    rng = random.Random(20261129)
    for _ in range(400):
        html = _random_page(rng)
        url = "http://shop.test/"
        root = page_root(HtmlResponse(url, body=html.encode(), encoding="utf-8"))
        length = len(_visible_text(root))
        for at_least in (0, 1, 2, 5, 31, length, length + 1, 200):
            assert _has_visible_text(root, at_least) == (length >= at_least), (html, at_least)
