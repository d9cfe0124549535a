"""How the audit spider's callbacks meet Scrapy's per-callback check (no network, no reactor).

Before calling a callback Scrapy asks whether it is a generator that returns a value
(``scrapy.utils.misc.warn_on_generator_with_return_value``): it reads the method's source and
parses it with ``ast``, and keeps the answer in a weak-keyed cache whose entry goes when the
bound method it was stored under is freed."""

from __future__ import annotations

import gc

import pytest
import scrapy.utils.misc as scrapy_misc
from scrapy.utils.test import get_crawler

from crawler.spiders.site_audit import CALLBACKS, SiteAuditSpider


def spider() -> SiteAuditSpider:
    crawler = get_crawler(SiteAuditSpider)
    return SiteAuditSpider.from_crawler(
        crawler,
        sites=[{"crawl_id": 1, "domain": "shop.test", "start_url": "http://shop.test/"}],
    )


def request(s: SiteAuditSpider, path: str):  # type: ignore[no-untyped-def]
    state = s.sites[1]
    req = s._request(
        state, f"http://shop.test/{path}", depth=1, referrer=None, text="", reason="hint"
    )
    assert req is not None
    return req


def test_every_request_carries_the_same_callback_objects():
    s = spider()
    first, second = request(s, "a"), request(s, "b")
    assert first.callback is second.callback
    assert first.errback is second.errback


def test_a_callback_source_is_parsed_once_however_many_requests_come_and_go(monkeypatch):
    """The cost this avoids: with a new bound method per request, every request freed
    before the next callback made Scrapy read and parse the source again."""
    reads: list[str] = []
    real = scrapy_misc.inspect.getsource

    def counting(obj):  # type: ignore[no-untyped-def]
        reads.append(obj.__name__)
        return real(obj)

    monkeypatch.setattr(scrapy_misc.inspect, "getsource", counting)
    s = spider()
    for i in range(5):
        req = request(s, f"page-{i}")
        scrapy_misc.warn_on_generator_with_return_value(s, req.callback)
        del req
        gc.collect()
    assert reads == ["parse_page"]


@pytest.mark.parametrize("name", CALLBACKS)
def test_no_callback_is_a_generator_that_returns_a_value(name):
    """A value returned from a generator callback is silently lost in Scrapy."""
    assert not scrapy_misc.is_generator_with_return_value(getattr(spider(), name))
