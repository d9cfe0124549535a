"""The PDF renderer's child process: HTML on stdin -> WeasyPrint -> the PDF file; the refused
URLs as JSON on stdout. reports/pdf.py starts it with its limits; nothing else imports
WeasyPrint, so a report run pays for it only here.

No file or network access beyond the bundled assets.

A report's HTML carries crawled text and URLs (escaped, but a URL is still a URL), so the PDF
renderer must never fetch anything on its own: its URL fetcher serves ``data:`` URIs (the
screenshot thumbnails are embedded that way) and files under ``reports/static/``, and refuses
everything else, whatever the scheme (http, file, ftp …). Fonts come from fontconfig (Noto
Sans CJK, Debian's fonts-noto-cjk), not through the fetcher.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

STATIC = (Path(__file__).parent / "static").resolve()
BASE_URL = STATIC.as_uri() + "/"

logger = logging.getLogger(__name__)


class RefusedURL(ValueError):
    """A URL the report renderer will not fetch (WeasyPrint logs it and leaves it out)."""


class BundledOnlyFetcher(URLFetcher):
    """Serves ``data:`` URIs and bundled assets; refuses every other URL."""

    def __init__(self) -> None:
        super().__init__(allowed_protocols=("data", "file"), allow_redirects=False)
        self.refused: list[str] = []

    def fetch(self, url: str, headers: dict[str, str] | None = None) -> URLFetcherResponse:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "data":
            return self._data(url)
        if scheme == "file" and not parts.netloc:
            path = Path(unquote(parts.path)).resolve()
            if path.is_file() and STATIC in path.parents:
                return URLFetcherResponse(path.as_uri(), path.read_bytes(), {}, 200)
        self.refused.append(url)
        raise RefusedURL(f"report renderer fetches only bundled assets, not {url[:200]!r}")

    @staticmethod
    def _data(url: str) -> URLFetcherResponse:
        head, sep, payload = url[5:].partition(",")
        if not sep:
            raise RefusedURL("malformed data: URI")
        mime = head.split(";")[0] or "text/plain"
        body = base64.b64decode(payload) if head.endswith(";base64") else unquote(payload).encode()
        return URLFetcherResponse(url[:64], body, {"Content-Type": mime}, 200)


def render_pdf(html: str, target: Path) -> list[str]:
    """Write the PDF in this process; returns the URLs that were refused."""
    fetcher = BundledOnlyFetcher()
    HTML(string=html, base_url=BASE_URL, url_fetcher=fetcher).write_pdf(target)
    if fetcher.refused:
        logger.info("PDF %s: refused %d URL(s)", target.name, len(fetcher.refused))
    return fetcher.refused


if __name__ == "__main__":  # the child: HTML on stdin, the target path as argument
    refused = render_pdf(sys.stdin.buffer.read().decode("utf-8"), Path(sys.argv[1]))
    sys.stdout.write(json.dumps(refused))
