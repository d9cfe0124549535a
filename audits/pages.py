"""What the checks look at: stored snapshots decoded and parsed, as a site an evaluator sees.

Decoding follows the browser's order (BOM, then the HTTP charset, then <meta>, then
detection), with GB2312/GBK read by the GB18030 decoder, their superset, exactly as
Scrapy does while crawling, so crawl-time links and judge-time text agree. Parsing uses
lxml; BeautifulSoup is kept off this hot path (it is about 20 times slower here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property, lru_cache
from typing import Any
from urllib.parse import urljoin, urlsplit

import charset_normalizer
import lxml.html
from lxml import etree
from w3lib.encoding import (
    html_body_declared_encoding,
    http_content_type_encoding,
    read_bom,
    to_unicode,
)

# fmt: off
BLOCK_TAGS = frozenset((
    "p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "tr",
    "table", "section", "article", "header", "footer", "nav", "aside", "main", "br", "dt",
    "dd", "blockquote", "pre", "form", "address", "hr", "title", "option",
))
# fmt: on
INVISIBLE_TAGS = ("script", "style", "noscript", "template", "head")
FOOTER_HINT = re.compile(r"foot|bottom|copyright|copy-right|beian", re.IGNORECASE)
# Page furniture around the main text: navigation, footers, cookie banners, sidebars.
BOILERPLATE_TAGS = frozenset(("nav", "header", "footer", "aside", "menu"))
BOILERPLATE_HINT = re.compile(
    r"(?:^|[\s_-])(?:nav|navbar|menu|header|footer|foot|cookie|consent|gdpr|banner|breadcrumbs?"
    r"|sidebar|side-bar|bottom|copyright|toolbar|topbar)(?:$|[\s_-])",
    re.IGNORECASE,
)
NEVER_BOILERPLATE = frozenset(("html", "body", "main", "article"))
HTML_TYPES = ("text/html", "application/xhtml", "text/plain", "")


def _detect(body: bytes) -> str | None:
    # Valid UTF-8 is almost never GBK or Big5 by accident, and checking it is a hundred
    # times cheaper than statistical detection.
    window = body[:65536]
    try:
        window.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if len(window) == 65536 and exc.start >= len(window) - 3:
            return "utf-8"  # only a character cut at the window's edge
    best = charset_normalizer.from_bytes(body[:65536]).best()
    return best.encoding if best else None


def decode_body(body: bytes, content_type: str | None) -> tuple[str, str]:
    """(text, encoding name) for an HTML body: the BOM's encoding, else the HTTP charset,
    else a <meta> declaration, else ``_detect``; w3lib's names and decoders (GB2312 and GBK
    are read as GB18030, whatever name w3lib gives them: "gb18030" before w3lib 2.6, "gbk"
    since). This is the order Scrapy's TextResponse follows while crawling. w3lib 2.6
    deprecated passing a detector to ``html_to_unicode``, whose own detection differs from
    Scrapy's, so the steps are taken here one by one."""
    bom_encoding, bom = read_bom(body)
    if bom_encoding:
        return to_unicode(body[len(bom) :], bom_encoding), bom_encoding
    encoding = (
        http_content_type_encoding(content_type)
        or html_body_declared_encoding(body)
        or _detect(body)
        or "utf-8"
    )
    return to_unicode(body, encoding), encoding


def _lines(text: str) -> str:
    """Cleaned non-empty lines."""
    return "\n".join(filter(None, [" ".join(line.split()) for line in text.split("\n")]))


def css_path(el: Any, depth: int = 4) -> str:
    """A short, readable selector for evidence ("footer > p.icp > a")."""
    parts = []
    node = el
    while node is not None and len(parts) < depth and isinstance(node.tag, str):
        label = node.tag
        if node.get("id"):
            label += "#" + node.get("id").split()[0]
        elif node.get("class"):
            label += "." + ".".join(node.get("class").split()[:2])
        parts.append(label)
        if node.tag in ("body", "html"):
            break
        node = node.getparent()
    return " > ".join(reversed(parts))


@lru_cache(maxsize=4096)  # a site's templates repeat a few class names
def _marker_is_boilerplate(marker: str) -> bool:
    return bool(marker) and bool(BOILERPLATE_HINT.search(marker))


def is_boilerplate(el: Any) -> bool:
    tag = el.tag
    if tag in NEVER_BOILERPLATE:
        return False
    if tag in BOILERPLATE_TAGS:
        return True
    ident, cls, role = el.get("id"), el.get("class"), el.get("role")
    if not (ident or cls or role):
        return False  # most elements: no attribute to look at
    return _marker_is_boilerplate(f"{ident or ''} {cls or ''} {role or ''}".strip())


def clean(text: str) -> str:
    return " ".join(text.split())


@lru_cache(maxsize=1024)
def _scheme_and_host(base: str) -> tuple[str, str]:
    parts = urlsplit(base)
    return parts.scheme, parts.netloc


_RESOLVED: dict[tuple[str, str, str], str] = {}
_RESOLVED_MAX = 65536


def resolve(base: str, href: str) -> str:
    """``urljoin(base, href)``, remembered for the links whose result depends only on the
    base's scheme and host: "/path…" (the path is the link's own) and "http(s)://host…"
    (a host given). A shop has the same header and footer links on every page, so most
    links of a site are joined once, not once per page."""
    if not base or not href or "\t" in href or "\n" in href or "\r" in href:
        return urljoin(base, href)  # (urljoin drops tabs and newlines before parsing)
    if href.startswith("//"):
        host_at = 2
    elif href[0] == "/":
        host_at = 0  # a path from the root
    elif href.startswith("http://"):
        host_at = 7
    elif href.startswith("https://"):
        host_at = 8
    else:
        return urljoin(base, href)  # relative to the base's path
    if host_at and (len(href) == host_at or href[host_at] in "/?#"):
        return urljoin(base, href)  # no host given: may take the base's path
    key = (*_scheme_and_host(base), href)
    found = _RESOLVED.get(key)
    if found is None:
        if len(_RESOLVED) >= _RESOLVED_MAX:
            _RESOLVED.clear()
        found = _RESOLVED[key] = urljoin(base, href)
    return found


@dataclass(frozen=True)
class LinkInfo:
    url: str
    href: str
    text: str
    selector: str
    in_footer: bool
    element: Any = field(repr=False, compare=False)


@dataclass
class Page:
    """One snapshot as the checks see it."""

    url: str
    final_url: str
    status: int | None
    depth: int
    reason: str
    link_text: str
    referrer: str | None
    error: str | None
    headers: dict[str, Any]
    body: bytes = b""
    snapshot_id: int | None = None
    rendered: bool = False
    # Browser screenshots of this page: {"kind", "content_hash", "selector", "width", "height"}.
    screenshots: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_snapshot(
        cls,
        snap: Any,
        body: bytes,
        error: str | None = None,
        screenshots: list[dict[str, Any]] | None = None,
    ) -> Page:
        """The page of a stored Snapshot row (``error`` overrides the row's own)."""
        return cls(
            url=snap.url,
            final_url=snap.final_url,
            status=snap.status,
            depth=snap.depth,
            reason=snap.reason,
            link_text=snap.link_text,
            referrer=snap.referrer,
            error=error if error is not None else snap.error,
            headers=snap.headers or {},
            body=body,
            snapshot_id=snap.id,
            rendered=bool(snap.rendered),
            screenshots=screenshots or [],
        )

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and self.status < 400

    @property
    def content_type(self) -> str:
        value = self.headers.get("content-type") or [""]
        return (value[0] if isinstance(value, list) else str(value)).lower()

    @property
    def is_html(self) -> bool:
        return self.ok and self.content_type.split(";")[0].strip() in HTML_TYPES

    @cached_property
    def _decoded(self) -> tuple[str, str]:
        if not self.body:
            return "", "utf-8"
        ctype = self.headers.get("content-type")
        header = ctype[0] if isinstance(ctype, list) and ctype else ctype
        return decode_body(self.body, header)

    @property
    def encoding(self) -> str:
        return self._decoded[1]

    @property
    def html(self) -> str:
        return self._decoded[0]

    @property
    def replacement_chars(self) -> int:
        """U+FFFD count: bytes the declared charset could not decode (a charset mismatch)."""
        return self.html.count("\ufffd")

    @cached_property
    def encoding_mismatch(self) -> bool:
        """The declared charset does not fit the bytes (e.g. a utf-8 header on a GBK body):
        more than 2% of the text is U+FFFD. Such a page is not read by any rule, because
        its garbled text would make findings of absence out of a decoding error
        (RELIABILITY.md T09 d)."""
        count = self.replacement_chars
        return count >= 8 and count * 50 > len(self.html)

    @cached_property
    def tree(self) -> Any:
        if not self.is_html or not self.html.strip() or self.encoding_mismatch:
            return None
        parser = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, huge_tree=False)
        try:
            return lxml.html.document_fromstring(self.html.encode("utf-8"), parser=parser)
        except (etree.ParserError, ValueError):
            return None

    @cached_property
    def title(self) -> str:
        if self.tree is None:
            return ""
        found = self.tree.find(".//title")
        return clean(found.text_content()) if found is not None else ""

    @cached_property
    def lang(self) -> str:
        if self.tree is None:
            return ""
        return (self.tree.get("lang") or "").lower()

    @staticmethod
    def _texts_of(root: Any, skip_boilerplate: bool = False) -> tuple[str, str]:
        """(all visible text, text outside page furniture) of ``root``, in one walk.

        Each block element (BLOCK_TAGS) starts and ends a line; an element's tail belongs to
        its parent (so the tail of a skipped script or comment is text of the parent). The
        furniture's text is a run of chunks: the main text is the chunks outside those runs."""
        chunks: list[str] = []
        add = chunks.append
        furniture: list[tuple[int, int]] = []
        invisible, blocks = INVISIBLE_TAGS, BLOCK_TAGS

        def walk(el: Any, detect: bool) -> None:  # detect: furniture below (not inside one)
            block = el.tag in blocks
            if block:
                add("\n")
            text = el.text
            if text:
                add(text)
            for child in el:
                tag = child.tag
                if isinstance(tag, str) and tag not in invisible:
                    if detect and is_boilerplate(child):
                        start = len(chunks)
                        walk(child, False)
                        furniture.append((start, len(chunks)))
                    else:
                        walk(child, detect)
                tail = child.tail
                if tail:
                    add(tail)
            if block:
                add("\n")

        if isinstance(root.tag, str) and root.tag not in invisible:
            walk(root, skip_boilerplate)
        everything = "".join(chunks)
        if not furniture:
            lines = _lines(everything)
            return lines, lines
        main, done = [], 0
        for start, end in furniture:
            main.append("".join(chunks[done:start]))
            done = end
        main.append("".join(chunks[done:]))
        return _lines(everything), _lines("".join(main))

    def _text_of(self, root: Any) -> str:
        return self._texts_of(root)[0]

    @cached_property
    def _body_texts(self) -> tuple[str, str]:
        if self.tree is None:
            return "", ""
        body = self.tree.find("body")
        return self._texts_of(body if body is not None else self.tree, skip_boilerplate=True)

    @property
    def text(self) -> str:
        """Visible text, one block (paragraph, list item, cell …) per line."""
        return self._body_texts[0]

    @property
    def main_text(self) -> str:
        """The page's own text without navigation, footers, sidebars or cookie banners (what
        a policy says, not the site furniture around it). Falls back to all visible text
        when the furniture detection would leave almost nothing."""
        everything, main = self._body_texts
        return main if len(main) >= 0.2 * len(everything) else everything

    @cached_property
    def footer_text(self) -> str:
        return "\n".join(self._text_of(el) for el in self.footer_elements)

    @cached_property
    def footer_elements(self) -> list[Any]:
        if self.tree is None:
            return []
        found = []
        for el in self.tree.iter():
            if not isinstance(el.tag, str):
                continue
            marker = f"{el.get('id') or ''} {el.get('class') or ''}"
            is_footer = el.tag == "footer" or (
                el.tag in ("div", "section", "p") and FOOTER_HINT.search(marker)
            )
            if is_footer and not any(anc in found for anc in el.iterancestors()):
                found.append(el)
        return found

    @cached_property
    def links(self) -> list[LinkInfo]:
        if self.tree is None:
            return []
        # the elements themselves, not their id()s: lxml makes element proxies on demand and
        # a freed proxy's id() is reused, so a set of ids marked links outside the footer
        footer = {a for el in self.footer_elements for a in el.iter("a")}
        out = []
        for a in self.tree.iter("a"):
            href = (a.get("href") or "").strip()
            text = clean(
                a.text_content() + " " + " ".join(img.get("alt") or "" for img in a.iter("img"))
            )
            absolute = resolve(self.final_url, href) if href else ""
            out.append(
                LinkInfo(
                    url=absolute,
                    href=href,
                    text=text,
                    selector=css_path(a),
                    in_footer=a in footer,
                    element=a,
                )
            )
        return out


@dataclass
class CertificateInfo:
    cert_id: str
    domain: str
    tier: str
    status: str  # effective status on the crawl date: certified, suspended, revoked, expired
    valid_until: date | None = None


@dataclass
class SiteView:
    """A site's crawl as the checks see it, plus the registry facts they may need."""

    domain: str
    start_url: str
    pages: list[Page]
    crawl_date: date
    certificate: CertificateInfo | None = None
    certificates: Mapping[str, CertificateInfo] = field(default_factory=dict)
    badge_hosts: tuple[str, ...] = ()
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def homepage(self) -> Page | None:
        for page in self.pages:
            if page.depth == 0:
                return page
        return None

    @property
    def reachable(self) -> bool:
        home = self.homepage
        return home is not None and home.error is None and home.status is not None

    def html_pages(self) -> list[Page]:
        return [p for p in self.pages if p.is_html]

    def page_for(self, url: str) -> Page | None:
        for page in self.pages:
            if url in (page.url, page.final_url):
                return page
        return None

    @cached_property
    def is_chinese(self) -> bool:
        """Does the site address Chinese readers? (ICP filing and licence rules apply.)"""
        home = self.homepage
        if home is None or not home.is_html:
            return False
        if home.lang.startswith("zh"):
            return True
        sample = f"{home.title}\n{home.text[:5000]}"
        cjk = sum(1 for ch in sample if "\u4e00" <= ch <= "\u9fff")
        return cjk >= 10 and cjk / max(len(sample), 1) > 0.1
