"""Local test shops for the badge checks: every CONTRACT verdict, each shown the way misuse
happens on the real web (hot-linked, copied and re-encoded, look-alike hosts …)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from audits.badgeart import REFS_DIR, render_svg
from tests.conftest import write_site

OFFICIAL = "verify.trust.example"
HEADER = "domain,name,start_url,industry,status,certificate_id,badge,valid_from,valid_until\n"
CSV_ROWS = [
    "valid.example,正品商城,http://valid.example/,books,certified,ECT-2026-0101,red,2026-01-01,2030-12-31",
    "expired.example,过期商城,http://expired.example/,books,certified,ECT-2020-0002,red,2020-01-01,2021-12-31",
    "suspended.example,暂停商城,http://suspended.example/,books,suspended,ECT-2026-0103,blue,2026-01-01,2030-12-31",
    "revoked.example,撤销商城,http://revoked.example/,books,revoked,ECT-2026-0104,red,2026-01-01,2030-12-31",
    "wrongdomain.example,借用商城,http://wrongdomain.example/,books,applicant,,,,",
    "nocert.example,无证商城,http://nocert.example/,books,applicant,,,,",
    "forged.example,仿冒商城,http://forged.example/,books,certified,ECT-2026-0107,red,2026-01-01,2030-12-31",
    "lookalike.example,相似商城,http://lookalike.example/,books,certified,ECT-2026-0108,red,2026-01-01,2030-12-31",
    "unlinked.example,未链接商城,http://unlinked.example/,books,certified,ECT-2026-0109,blue,2026-01-01,2030-12-31",
    "copylink.example,复制商城,http://copylink.example/,books,certified,ECT-2026-0110,red,2026-01-01,2030-12-31",
    "absent.example,无标识商城,http://absent.example/,books,certified,ECT-2026-0111,red,2026-01-01,2030-12-31",
    "plain.example,普通商城,http://plain.example/,books,applicant,,,,",
    "inline.example,内嵌商城,http://inline.example/,books,applicant,,,,",
]
EXPECTED = {
    "valid.example": "valid",
    "expired.example": "expired",
    "suspended.example": "suspended",
    "revoked.example": "revoked",
    "wrongdomain.example": "wrong_domain",
    "nocert.example": "no_certificate",
    "forged.example": "forged_link",
    "lookalike.example": "forged_link",
    "unlinked.example": "unlinked",
    "copylink.example": "unlinked",
    "absent.example": "absent",
    "plain.example": "absent",
    "inline.example": "no_certificate",
}


def page(body: str, title: str = "商城") -> str:
    return (
        f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title>'
        f"</head><body><h1>{title}</h1><p>欢迎光临本店，正品保障。</p>"
        f'<p><a href="/product/1001.html">商品 1001</a></p>{body}</body></html>'
    )


def official(cert: str) -> str:
    return (
        f'<footer><a href="http://{OFFICIAL}/cert/{cert}">'
        f'<img src="http://{OFFICIAL}/badge/{cert}.svg" alt="诚信认证"></a></footer>'
    )


def raster_copy(fmt: str = "JPEG", scale: float = 0.6, quality: int = 55) -> bytes:
    """The official badge, screenshotted, shrunk and re-encoded as shops do."""
    with Image.open(REFS_DIR / "valid-red.png") as img:
        img = img.convert("RGB")
        img = img.resize((int(img.width * scale), int(img.height * scale)), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, fmt, quality=quality)
        return buf.getvalue()


def product_photo() -> bytes:
    """An unrelated small image in a footer: must not be taken for the badge."""
    img = Image.new("RGB", (200, 80), (240, 240, 240))
    for x in range(200):
        for y in range(80):
            if (x // 10 + y // 10) % 2:
                img.putpixel((x, y), (30, 120, 200))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def build(root: Path) -> str:
    """Write the shops under ``root``; returns the registry CSV text."""
    import base64

    sites: dict[str, dict[str, str | bytes]] = {
        "valid.example": {"index.html": page(official("ECT-2026-0101"), "正品商城")},
        "expired.example": {"index.html": page(official("ECT-2020-0002"))},
        "suspended.example": {"index.html": page(official("ECT-2026-0103"))},
        "revoked.example": {"index.html": page(official("ECT-2026-0104"))},
        # Another domain's (real, current) certificate.
        "wrongdomain.example": {"index.html": page(official("ECT-2026-0101"))},
        # A re-encoded copy of the image on its own host, no link, no certificate.
        "nocert.example": {
            "index.html": page('<div class="seal"><img src="/img/s1.jpg" width="96"></div>'),
            "img/s1.jpg": raster_copy(),
        },
        # Non-official verification host, with a copy of the image.
        "forged.example": {
            "index.html": page(
                '<footer><a href="http://trust-check.test/verify?cert=ECT-2026-0107">'
                '<img src="/static/seal.png"></a></footer>'
            ),
            "static/seal.png": raster_copy("PNG", 0.8),
        },
        # Look-alike of the official host, image named innocently.
        "lookalike.example": {
            "index.html": page(
                '<footer><a href="http://verify-trust.example.com/cert/ECT-2026-0108">'
                '<img src="/i/a.gif" alt="x"></a></footer>'
            ),
            "i/a.gif": raster_copy("GIF", 0.5),
        },
        # A saved copy of the official SVG, shown with no link at all.
        "unlinked.example": {
            "index.html": page('<p class="foot"><img src="/badge-copy.svg"></p>'),
            "badge-copy.svg": render_svg("ECT-2026-0109", "blue", "valid"),
        },
        # A copy linked to the shop's own page: still no verification link.
        "copylink.example": {
            "index.html": page(
                '<footer><a href="/about.html"><img src="/img/cert.webp"></a>'
                '<img src="/img/pattern.png" width="200" height="80"></footer>'
            ),
            "img/cert.webp": raster_copy("WEBP", 1.0, 40),
            "img/pattern.png": product_photo(),
            "about.html": page("<p>关于我们</p>"),
        },
        "absent.example": {
            "index.html": page('<footer><img src="/img/pattern.png" width="200"></footer>'),
            "img/pattern.png": product_photo(),
        },
        "plain.example": {"index.html": page("<footer>© 2026</footer>")},
        "inline.example": {
            "index.html": page(
                '<footer><img src="data:image/png;base64,'
                + base64.b64encode(raster_copy("PNG", 0.5)).decode("ascii")
                + '"></footer>'
            )
        },
    }
    for host, files in sites.items():
        files.setdefault("product/1001.html", page("<p>商品详情</p>", "商品"))
        write_site(root, host, files)
    return HEADER + "\n".join(CSV_ROWS) + "\n"
