"""Rendering reports from audit documents (the same JSON ``audit --json`` prints).

Every template is rendered with autoescaping forced on, whatever its file name: crawled text
is hostile input (RELIABILITY.md T37). Links from crawled pages are shown only when they are
http(s); anything else is printed as text.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined

STATUS_ORDER = ("fail", "error", "review", "warn", "pass", "not_applicable")
AREAS = {
    "privacy": {"zh": "隐私政策", "en": "Privacy policy"},
    "complaint": {"zh": "投诉渠道", "en": "Complaints"},
    "business": {"zh": "经营者信息", "en": "Business information"},
    "badge": {"zh": "诚信标识", "en": "Trust badge"},
    "ecommerce": {"zh": "交易规则", "en": "Transaction rules"},
}
LABELS = {
    "zh": {
        "pass": "通过",
        "fail": "不通过",
        "warn": "警告",
        "review": "待人工复核",
        "error": "无法检查",
        "not_applicable": "不适用",
    },
    "en": {
        "pass": "pass",
        "fail": "fail",
        "warn": "warning",
        "review": "needs review",
        "error": "could not check",
        "not_applicable": "not applicable",
    },
}


def safe_href(url: Any) -> str | None:
    """The URL if a browser may follow it (http/https), else None: shown as text only."""
    if not isinstance(url, str):
        return None
    return url if urlsplit(url.strip()).scheme in ("http", "https") else None


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=True,  # forced: select_autoescape() would not escape *.html.j2
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["safe_href"] = safe_href
    return env


def area_of(rule_id: str) -> str:
    return rule_id.split(".", 1)[0]


def site_report_context(audits: list[dict[str, Any]], lang: str) -> dict[str, Any]:
    sites = []
    for doc in audits:
        groups: dict[str, list[dict[str, Any]]] = {}
        for f in doc["findings"]:
            groups.setdefault(area_of(f["rule_id"]), []).append(f)
        counts = {s: sum(1 for f in doc["findings"] if f["status"] == s) for s in STATUS_ORDER}
        sites.append({"doc": doc, "groups": groups, "counts": counts})
    return {
        "sites": sites,
        "lang": lang,
        "labels": LABELS[lang],
        "areas": AREAS,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def export_screenshots(audits: list[dict[str, Any]], out: Path, blobs: Any) -> set[str]:
    """Copy the screenshots the findings refer to into ``out/screenshots/<sha256>.png`` (from
    the content-addressed store, hash-checked), so the HTML report can show and link them.
    Returns the hashes written; a missing or damaged file is left out, not shown."""
    written: set[str] = set()
    for doc in audits:
        for f in doc["findings"]:
            for e in f["evidence"]:
                for shot in e.get("screenshots") or ():
                    digest = str(shot.get("sha256", ""))
                    if digest in written or not SHA256_HEX.match(digest):
                        continue
                    try:
                        data = blobs.get(digest)
                    except Exception:
                        continue
                    folder = out / "screenshots"
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / f"{digest}.png").write_bytes(data)
                    written.add(digest)
    return written


def write_site_report(
    audits: list[dict[str, Any]],
    out: Path,
    formats: list[str],
    lang: str = "en",
    stem: str = "site-audit",
    blobs: Any = None,
) -> list[Path]:
    """``blobs`` (an audits.evidence.BlobStore) lets the HTML report include screenshots."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "json" in formats:
        path = out / f"{stem}.json"
        path.write_text(
            json.dumps({"audits": audits}, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        written.append(path)
    if "csv" in formats:
        path = out / f"{stem}-findings.csv"
        with path.open("w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                [
                    "audit_id",
                    "domain",
                    "score",
                    "rule_id",
                    "severity",
                    "status",
                    "message",
                    "evidence_url",
                    "evidence_excerpt",
                ]
            )
            for doc in audits:
                for f in doc["findings"]:
                    first = f["evidence"][0] if f["evidence"] else {}
                    writer.writerow(
                        [
                            doc["audit_id"],
                            doc["domain"],
                            doc["score"],
                            f["rule_id"],
                            f["severity"],
                            f["status"],
                            f["message"],
                            first.get("url") or "",
                            first.get("excerpt") or "",
                        ]
                    )
        written.append(path)
    if "html" in formats:
        shots = export_screenshots(audits, out, blobs) if blobs is not None else set()
        html = (
            environment()
            .get_template("site_audit.html.j2")
            .render(**site_report_context(audits, lang), screenshots=shots)
        )
        path = out / f"{stem}.html"
        path.write_text(html, encoding="utf-8")
        written.append(path)
    return written
