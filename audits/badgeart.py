"""The official badge image, and recognising copies of it.

The badge server (``ectrust serve``, ``/badge/<id>.svg``) draws the badge with this module,
and the badge check uses the same module to recognise the badge on crawled sites:

- an SVG copy carries the badge's marker (``ectrust-badge;cert=…;state=…`` in its
  ``<metadata>``), so a saved copy names its certificate even after re-formatting; a copy
  whose bytes equal what the server draws for that certificate is also an exact match;
- a raster copy (a PNG or JPEG screenshot of the badge, resized or re-encoded) is matched by
  perceptual hash (``imagehash``, pHash over Pillow) against reference renderings of the
  valid red and blue badges (``audits/badge_refs/*.png``, drawn from this SVG by Chromium;
  ``python -m audits.badgeart --refresh`` redraws them and a test checks they are current).

Pure functions: no network, no database.
"""

from __future__ import annotations

import hashlib
import io
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import regex
from jinja2 import Environment

REFS_DIR = Path(__file__).with_name("badge_refs")
# pHash (64 bits) Hamming distance at or under which a raster is taken for a copy of the
# badge. Re-encoded or resized copies measure 0–6 (tests/test_badge_images.py); unrelated
# images (product photos, other seals, flat colour blocks) measure 20 and more.
PHASH_MAX_DISTANCE = 10
MARKER = regex.compile(
    rb"ectrust-badge;cert=([A-Za-z0-9][A-Za-z0-9._-]{1,63});state=([a-z]+)", regex.IGNORECASE
)
MAX_IMAGE_BYTES = 2 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096

# state -> (fill, stroke, line 1 zh, line 2 en)
VARIANTS = {
    "valid": (None, None, "诚信认证", "VERIFIED"),
    "expired": ("#6b6b6b", "#444444", "证书已过期", "EXPIRED"),
    "suspended": ("#b86e00", "#7a4900", "证书已暂停", "SUSPENDED"),
    "revoked": ("#3a3a3a", "#000000", "证书已撤销", "REVOKED"),
    "invalid": ("#3a3a3a", "#000000", "无效标识", "NOT VALID HERE"),
}
TIER_COLOURS = {"red": ("#c8161d", "#8e0e13"), "blue": ("#1456b8", "#0c3a7d")}

_SVG = """<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="160" height="52" viewBox="0 0 160 52" \
role="img" aria-label="{{ label }}">
<title>{{ label }}</title>
<metadata>ectrust-badge;cert={{ cert_id }};state={{ state }}</metadata>
<rect x="0.5" y="0.5" width="159" height="51" rx="6" ry="6" fill="{{ fill }}" \
stroke="{{ stroke }}" stroke-width="1"/>
<circle cx="26" cy="26" r="17" fill="#ffffff"/>
{% if state == "valid" -%}
<path d="M17.5 26.5 L23.5 32.5 L35 20" fill="none" stroke="{{ fill }}" stroke-width="4" \
stroke-linecap="round" stroke-linejoin="round"/>
{%- elif state == "suspended" -%}
<path d="M21 18 V34 M31 18 V34" stroke="{{ fill }}" stroke-width="4" stroke-linecap="round"/>
{%- else -%}
<path d="M19 19 L33 33 M33 19 L19 33" stroke="{{ fill }}" stroke-width="4" \
stroke-linecap="round"/>
{%- endif %}
<text x="100" y="21" font-family="Noto Sans CJK SC, Source Han Sans SC, sans-serif" \
font-size="15" font-weight="bold" fill="#ffffff" text-anchor="middle">{{ line1 }}</text>
<text x="100" y="35" font-family="DejaVu Sans, Arial, sans-serif" font-size="9" \
font-weight="bold" fill="#ffffff" text-anchor="middle">{{ line2 }}</text>
<text x="100" y="46" font-family="DejaVu Sans Mono, monospace" font-size="8" fill="#ffffff" \
text-anchor="middle">{{ cert_shown }}</text>
{% if state != "valid" -%}
<line x1="6" y1="46" x2="154" y2="6" stroke="#ffffff" stroke-opacity="0.55" stroke-width="2"/>
{%- endif %}
</svg>
"""
_TEMPLATE = Environment(autoescape=True).from_string(_SVG)


def render_svg(cert_id: str, tier: str | None, state: str) -> str:
    """The badge for ``state`` (valid, expired, suspended, revoked, invalid). ``cert_id`` is
    shown as given; the server passes only ids it has validated."""
    fill, stroke, line1, line2 = VARIANTS[state]
    if state == "valid":
        fill, stroke = TIER_COLOURS.get(tier or "red", TIER_COLOURS["red"])
        tier_word = "红标" if tier == "red" else "蓝标"
        line2 = f"{line2} · {'RED' if tier == 'red' else 'BLUE'}"
        label = f"诚信认证 {tier_word} {cert_id} — verified"
    else:
        label = f"{line1} {cert_id} — {line2.lower()}"
    return _TEMPLATE.render(
        cert_id=cert_id,
        cert_shown=cert_id[:24],
        state=state,
        fill=fill,
        stroke=stroke,
        line1=line1,
        line2=line2,
        label=label,
    )


@dataclass(frozen=True)
class ImageMatch:
    how: str  # svg_exact | svg_marker | phash
    cert_id: str | None
    detail: str  # for evidence: what matched and how closely


def _looks_svg(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return head.startswith((b"<?xml", b"<svg", b"<!doctype svg")) or b"<svg" in head


def match_svg(body: bytes) -> ImageMatch | None:
    m = MARKER.search(body[:MAX_IMAGE_BYTES])
    if m is None:
        return None
    cert_id, state = m.group(1).decode("ascii"), m.group(2).decode("ascii").lower()
    if state in VARIANTS:
        for tier in ("red", "blue"):
            if body == render_svg(cert_id, tier, state).encode("utf-8"):
                return ImageMatch(
                    "svg_exact", cert_id, f"byte-identical copy of the official {state} badge"
                )
    return ImageMatch("svg_marker", cert_id, f"copy of the official badge SVG ({state})")


@cache
def reference_hashes() -> tuple[tuple[str, object], ...]:
    """(name, pHash) of each reference rendering in ``badge_refs``."""
    import imagehash
    from PIL import Image

    out = []
    for path in sorted(REFS_DIR.glob("*.png")):
        with Image.open(path) as img:
            out.append((path.stem, imagehash.phash(_flatten(img))))
    return tuple(out)


def _flatten(img):  # type: ignore[no-untyped-def]
    """RGB on white: transparent corners must hash like a screenshot on a white page."""
    from PIL import Image

    img = img.convert("RGBA")
    background = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, img).convert("RGB")


def phash_distance(body: bytes) -> tuple[int, str] | None:
    """(distance, reference name) of the nearest reference, or None if not a readable
    raster image. Decompression bombs are refused by Pillow's pixel limit."""
    import imagehash
    from PIL import Image, UnidentifiedImageError

    if len(body) > MAX_IMAGE_BYTES:
        return None
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(body)) as img:
            img.seek(0)  # first frame of a GIF/APNG
            w, h = img.size
            # A badge is a wide, small-ish emblem; photos and banners are skipped cheaply.
            if w < 16 or h < 8 or w > 2000 or h > 1000 or not 1.2 <= w / h <= 6.0:
                return None
            digest = imagehash.phash(_flatten(img))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return min(((int(digest - ref), name) for name, ref in reference_hashes()), default=None)


def match_image(body: bytes) -> ImageMatch | None:
    """Is this image (bytes of a fetched image or a data: URI) the official badge?"""
    if not body:
        return None
    if _looks_svg(body):
        return match_svg(body)
    found = phash_distance(body)
    if found is not None and found[0] <= PHASH_MAX_DISTANCE:
        # pHash is computed on grey levels: red and blue badges are alike, the tier is not
        # told from it.
        return ImageMatch(
            "phash", None, f"copy of the official badge image (pHash distance {found[0]})"
        )
    return None


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def refresh_references(out_dir: Path = REFS_DIR) -> list[Path]:
    """Redraw the reference PNGs from the current SVG in headless Chromium (Debian's)."""
    from playwright.sync_api import sync_playwright

    from crawler.egress import chromium_args  # a maintenance tool, not part of judging

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        # The crawl's own switches: no network of Chromium's own, nothing resolved but
        # localhost (the SVG is set as the page's content).
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=chromium_args([]))
        page = browser.new_page(device_scale_factor=2)
        for tier in ("red", "blue"):
            page.set_content(
                "<html><body style='margin:0;background:#fff'>"
                + render_svg("ECT-2026-0001", tier, "valid").split("?>", 1)[1]
                + "</body></html>"
            )
            path = out_dir / f"valid-{tier}.png"
            page.locator("svg").screenshot(path=str(path))
            written.append(path)
        browser.close()
    reference_hashes.cache_clear()
    return written


if __name__ == "__main__":
    if sys.argv[1:] == ["--refresh"]:
        for written_path in refresh_references():
            print(written_path)
    else:
        print("usage: python -m audits.badgeart --refresh", file=sys.stderr)
        sys.exit(2)
