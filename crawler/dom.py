"""One parse of a fetched page for everything the spider looks at in it.

The spider reads each HTML page three times (whether it must be rendered, which links to
follow, which images may be badges). Parsing once and handing the tree around is the first
saving; the second is the parser: Scrapy's selectors parse with ``lxml.html``, whose element
classes are chosen by a Python callback for every element a loop touches, which made walking
a 40 KB shop page cost more than parsing it. The spider only needs the plain ``lxml.etree``
API (iter, get, itertext, iterancestors), so it parses with ``etree.HTMLParser`` through
parsel's own ``create_root_node`` (the same clean-up of the text: stripped, NULs removed).
"""

from __future__ import annotations

from typing import Any

from lxml import etree
from parsel.selector import create_root_node
from scrapy.http import Response, TextResponse, XmlResponse


def page_root(response: Response) -> Any | None:
    """The page's lxml tree, or None when it has none (not text, or unparseable)."""
    if not isinstance(response, TextResponse):
        return None
    try:
        if isinstance(response, XmlResponse):  # as Scrapy's selector would parse it
            root = response.selector.root
        else:  # Scrapy's selector too reads every other text response as HTML
            root = create_root_node(response.text, etree.HTMLParser, base_url=response.url)
    except Exception:  # a body no parser accepts has nothing to follow or render
        return None
    if root is None or not hasattr(root, "iter"):
        return None
    return root
