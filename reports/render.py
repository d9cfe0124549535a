"""Rendering reports from audit documents (the same JSON ``audit --json`` prints).

Every template is rendered with autoescaping forced on, whatever its file name: crawled text
is hostile input (RELIABILITY.md T37). Links from crawled pages are shown only when they are
http(s); anything else is printed as text.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context
from markupsafe import Markup

from reports.data import CLAUSES

STATIC = Path(__file__).parent / "static"

STATUS_ORDER = ("fail", "error", "review", "warn", "pass", "not_applicable")
AREAS = {
    "privacy": {"zh": "隐私政策", "en": "Privacy policy"},
    "complaint": {"zh": "投诉渠道", "en": "Complaints"},
    "business": {"zh": "经营者信息", "en": "Business information"},
    "badge": {"zh": "诚信标识", "en": "Trust badge"},
    "ecommerce": {"zh": "交易规则", "en": "Transaction rules"},
    "crawl": {"zh": "抓取情况", "en": "Crawl"},
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


def tr(ctx: Any, zh: str, en: str) -> str:
    """The Chinese or English wording, by the report's ``lang``."""
    return zh if ctx.get("lang") == "zh" else en


def pct(value: Any) -> str:
    return "—" if value is None else f"{value:.1f}%"


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=True,  # forced: select_autoescape() would not escape *.html.j2
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["safe_href"] = safe_href
    env.filters["pct"] = pct
    env.globals["tr"] = pass_context(tr)
    # A bundled, trusted file: the one thing a template may insert unescaped.
    env.globals["stylesheet"] = Markup((STATIC / "report.css").read_text(encoding="utf-8"))
    return env


CLAUSE_NAMES = {
    "collection": ("收集的信息", "Collection"),
    "purpose": ("使用目的", "Purposes"),
    "sharing": ("共享、转让与披露", "Sharing"),
    "cookies": ("Cookie 及同类技术", "Cookies"),
    "retention": ("保存期限", "Retention"),
    "security": ("安全措施", "Security"),
    "rights": ("用户权利", "Rights"),
    "contact": ("联系方式", "Contact"),
    "children": ("儿童信息", "Children"),
    "changes": ("政策变更", "Changes"),
}
CLAUSE_SHORT = {
    "collection": ("收集", "Coll"),
    "purpose": ("目的", "Purp"),
    "sharing": ("共享", "Shr"),
    "cookies": ("Cookie", "Cook"),
    "retention": ("保存", "Ret"),
    "security": ("安全", "Sec"),
    "rights": ("权利", "Rts"),
    "contact": ("联系", "Cont"),
    "children": ("儿童", "Chld"),
    "changes": ("变更", "Chg"),
}


def area_of(rule_id: str) -> str:
    return rule_id.split(".", 1)[0]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def base_context(lang: str) -> dict[str, Any]:
    """What every report template gets (the shared layout uses it)."""
    return {
        "lang": lang,
        "labels": LABELS[lang],
        "areas": AREAS,
        "clauses": CLAUSES,
        "clause_names": {c: names[0 if lang == "zh" else 1] for c, names in CLAUSE_NAMES.items()},
        "clause_short": {c: CLAUSE_SHORT[c][0 if lang == "zh" else 1] for c in CLAUSES},
        "generated_at": _now(),
    }


def write_report(
    *,
    template: str,
    context: dict[str, Any],
    data: dict[str, Any],
    tables: dict[str, tuple[list[str], list[list[Any]]]],
    out: Path,
    formats: list[str],
    stem: str,
) -> list[Path]:
    """Write one report in the formats asked for; returns the paths written.

    Every kind of report goes through here: ``template`` extends ``layout.html.j2`` and is
    rendered for HTML (``medium="screen"``) and PDF (``medium="print"``); ``data`` is the
    JSON export and ``tables`` the CSV exports (``name -> (header, rows)``, one file
    ``<stem>-<name>.csv`` each), so the files an analyst gets hold the same numbers as the
    charts."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if "json" in formats:
        path = out / f"{stem}.json"
        path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        written.append(path)
    if "csv" in formats:
        for name, (header, rows) in tables.items():
            path = out / f"{stem}-{name}.csv"
            # utf-8-sig: Excel, which evaluators open CSV files with, needs the BOM for Chinese.
            with path.open("w", encoding="utf-8-sig", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                writer.writerows(rows)
            written.append(path)
    if "html" in formats or "pdf" in formats:
        page = environment().get_template(template)
        if "html" in formats:
            path = out / f"{stem}.html"
            path.write_text(page.render(**context, medium="screen"), encoding="utf-8")
            written.append(path)
        if "pdf" in formats:
            from reports.pdf import html_to_pdf

            # ``medium="print"``: the same report, with long per-site tables in a layout
            # WeasyPrint sets quickly (see survey.html.j2); everything else is identical.
            path = out / f"{stem}.pdf"
            html_to_pdf(page.render(**context, medium="print"), path)
            written.append(path)
    return written


# -- site audit -------------------------------------------------------------------------
def site_report_context(entries: list[dict[str, Any]], lang: str) -> dict[str, Any]:
    sites = []
    for entry in entries:
        doc = entry["doc"]
        groups: dict[str, list[dict[str, Any]]] = {}
        for f in doc["findings"]:
            groups.setdefault(area_of(f["rule_id"]), []).append(f)
        counts = {s: sum(1 for f in doc["findings"] if f["status"] == s) for s in STATUS_ORDER}
        sites.append({**entry, "groups": groups, "counts": counts})
    return {**base_context(lang), "sites": sites}


def _evidence_integrity(evidence: list[dict[str, Any]], audit: dict[str, Any] | None) -> str:
    """The CSV's word for a finding's evidence: mismatch/missing when one of its entries was
    flagged (reports/integrity.py), else the audit's status (ok, no_manifest …)."""
    flagged = [e["integrity"]["status"] for e in evidence if e.get("integrity")]
    if flagged:
        return "mismatch" if "mismatch" in flagged else "missing"
    return (audit or {}).get("status", "not_checked")


def _plain_entry(doc: dict[str, Any]) -> dict[str, Any]:
    from reports.data import recommendation

    return {
        "doc": doc,
        "site": {"name": "", "industry": "", "certificate": None},
        "recommendation": recommendation(doc),
        "changes": None,
        "integrity": None,
    }


def write_site_report(
    audits: list[dict[str, Any]],
    out: Path,
    formats: list[str],
    lang: str = "en",
    stem: str = "site-audit",
    entries: list[dict[str, Any]] | None = None,
) -> list[Path]:
    """``audits``: CONTRACT documents; ``entries`` (reports.data.site_entries) add the
    previous audit, the site's registry data and screenshot thumbnails when given."""
    entries = entries if entries is not None else [_plain_entry(d) for d in audits]
    rows = []
    for e in entries:
        doc = e["doc"]
        for f in doc["findings"]:
            first = f["evidence"][0] if f["evidence"] else {}
            rows.append(
                [
                    doc["audit_id"],
                    doc["domain"],
                    doc["score"],
                    e["recommendation"]["verdict"],
                    f["rule_id"],
                    f["severity"],
                    f["status"],
                    f["message"],
                    first.get("url") or "",
                    first.get("excerpt") or "",
                    "; ".join(f.get("references") or []),
                    _evidence_integrity(f["evidence"], e.get("integrity")),
                ]
            )
    data = {
        "audits": [e["doc"] for e in entries],
        "recommendations": {e["doc"]["domain"]: e["recommendation"]["verdict"] for e in entries},
        "changes": {e["doc"]["domain"]: e["changes"] for e in entries},
        "integrity": {e["doc"]["domain"]: e.get("integrity") for e in entries},
    }
    header = [
        "audit_id",
        "domain",
        "score",
        "recommendation",
        "rule_id",
        "severity",
        "status",
        "message",
        "evidence_url",
        "evidence_excerpt",
        "references",
        "evidence_integrity",
    ]
    return write_report(
        template="site_audit.html.j2",
        context=site_report_context(entries, lang),
        data=data,
        tables={"findings": (header, rows)},
        out=out,
        formats=formats,
        stem=stem,
    )


# -- privacy-protection survey ----------------------------------------------------------
ANNEX_SITE_COLS = 40  # half-width columns for the site (domain and name) in the PDF annex
ANNEX_ROWS_PER_BLOCK = 58  # one block fills an A4 page (7.2 pt lines), its own header row


def text_width(text: str) -> int:
    """Columns ``text`` takes in Noto Sans Mono CJK: wide, full-width and ambiguous
    characters (CJK, √, ×, ·) are two half-width columns there, the rest one."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WFA" else 1 for ch in text)


def _fit(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` columns, each padded to ``width``."""
    lines, line = [], ""
    for ch in text:
        if text_width(line + ch) > width:
            lines.append(line)
            line = ""
        line += ch
    lines.append(line)
    return [ln + " " * (width - text_width(ln)) for ln in lines]


def _cell(text: str, width: int, right: bool = False) -> str:
    pad = " " * max(0, width - text_width(text))
    return pad + text if right else text + pad


def survey_annex(rows: list[dict[str, Any]], lang: str) -> dict[str, Any]:
    """The per-site table for the PDF as fixed-width text lines (Noto Sans Mono CJK).

    Why: WeasyPrint lays out every table cell as its own box; 1,000 sites x 14 cells took
    about 40 s. One preformatted line per site carries the same columns (site, policy,
    clicks, the ten clauses, total) in under a tenth of that. The HTML keeps the real
    table; the CSV export has every value."""
    zh = lang == "zh"
    found = {
        "link": "链接" if zh else "link",
        "sitemap": "sitemap.xml",
        "common_path": "常见路径" if zh else "common path",
    }
    shorts = [CLAUSE_SHORT[c][0 if zh else 1] for c in CLAUSES]
    widths = [max(text_width(h), 2) for h in shorts]
    policy_w = 12
    sep = "  "

    def line(site: str, policy: str, clicks: str, marks: list[str], total: str) -> str:
        cols = [
            _cell(policy, policy_w),
            _cell(clicks, 4, right=True),
            " ".join(_cell(m, w) for m, w in zip(marks, widths, strict=True)),
            _cell(total, 4, right=True),
        ]
        return site + sep + sep.join(cols)

    header = line(
        _cell("网站" if zh else "Site", ANNEX_SITE_COLS),
        "隐私政策" if zh else "Policy",
        "点击" if zh else "Clicks",
        shorts,
        "合计" if zh else "Total",
    )
    out = []
    for r in rows:
        site = r["domain"] + (f" {r['name']}" if r["name"] else "")
        if r.get("evidence_integrity") == "integrity_failed":
            site = "[!] " + site
        parts = _fit(site, ANNEX_SITE_COLS)
        if not r["reachable"]:
            policy = "无法访问" if zh else "unreachable"
        elif r["has_policy"]:
            policy = found.get(r["found_by"], str(r["found_by"]))
        else:
            policy = "无" if zh else "none"
        if r["has_policy"]:
            marks = [
                " " * ((w - 2) // 2) + ("√" if r["clauses"][c] else "×")
                for c, w in zip(CLAUSES, widths, strict=True)
            ]
        else:
            marks = [" " * ((w - 2) // 2) + "·" for w in widths]
        clicks = "-" if r["clicks_from_home"] is None else str(r["clicks_from_home"])
        first = line(parts[0], policy, clicks, marks, str(r["clauses_covered"]))
        out.append("\n".join([first, *parts[1:]]))
    blocks = [out[i : i + ANNEX_ROWS_PER_BLOCK] for i in range(0, len(out), ANNEX_ROWS_PER_BLOCK)]
    return {"header": header, "blocks": blocks}


def write_survey_report(
    result: dict[str, Any], out: Path, formats: list[str], lang: str = "en", stem: str = "survey"
) -> list[Path]:
    totals = result["totals"]
    summary_rows = [
        ["sites", totals["sites"], ""],
        ["reachable", totals["reachable"], ""],
        ["with_policy", totals["with_policy"], totals["with_policy_share"]],
        ["linked", totals["linked"], totals["linked_share"]],
        ["last_resort_only", totals["last_resort_only"], ""],
        ["without_policy", totals["without_policy"], ""],
        ["clicks_mean", totals["clicks"]["mean"], ""],
        ["clicks_median", totals["clicks"]["median"], ""],
        ["mean_clauses", totals["mean_clauses"], ""],
        ["all_ten", totals["all_ten"], ""],
        *([f"integrity_{k}", v, ""] for k, v in totals["integrity"].items()),
    ]
    summary_rows += [[f"clicks_{k}", v, ""] for k, v in totals["clicks"]["distribution"].items()]
    earlier = (result["comparison"] or {}).get("totals")
    coverage_rows = [
        [
            c,
            totals["coverage"][c]["sites"],
            totals["coverage"][c]["share_of_policies"],
            totals["coverage"][c]["share_of_sites"],
            earlier["coverage"][c]["share_of_policies"] if earlier else "",
        ]
        for c in CLAUSES
    ]
    site_rows = [
        [
            r["domain"],
            r["name"],
            r["status"],
            r["audited_at"],
            r["reachable"],
            r["has_policy"],
            r["found_by"] or "",
            r["clicks_from_home"] if r["clicks_from_home"] is not None else "",
            r["policy_url"] or "",
            r["clauses_covered"],
            *(int(r["clauses"][c]) for c in CLAUSES),
            r["evidence_integrity"],
        ]
        for r in result["sites"]
    ]
    tables = {
        "summary": (["measure", "value", "share_percent"], summary_rows),
        "coverage": (
            [
                "clause",
                "sites",
                "share_of_policies_percent",
                "share_of_sites_percent",
                "earlier_share_of_policies_percent",
            ],
            coverage_rows,
        ),
        "sites": (
            [
                "site",
                "name",
                "status",
                "audited_at",
                "reachable",
                "has_policy",
                "found_by",
                "clicks_from_home",
                "policy_url",
                "clauses_covered",
                *CLAUSES,
                "evidence_integrity",
            ],
            site_rows,
        ),
    }
    context = {
        **base_context(lang),
        "survey": result,
        "annex": survey_annex(result["sites"], lang) if "pdf" in formats else None,
    }
    return write_report(
        template="survey.html.j2",
        context=context,
        data=result,
        tables=tables,
        out=out,
        formats=formats,
        stem=stem,
    )


# -- badge misuse -----------------------------------------------------------------------
def write_misuse_report(
    cases: list[dict[str, Any]],
    out: Path,
    formats: list[str],
    lang: str = "en",
    stem: str = "misuse",
    selection: dict[str, Any] | None = None,
) -> list[Path]:
    rows = []
    for i, case in enumerate(cases, 1):
        for s in case.get("sightings") or [{}]:
            rows.append(
                [
                    i,
                    case["domain"],
                    case.get("name", ""),
                    case.get("registered"),
                    case.get("verdict"),
                    case.get("status"),
                    case.get("certificate_id") or "",
                    case.get("checked_at") or "",
                    s.get("page") or "",
                    s.get("element") or "",
                    s.get("link") or "",
                    s.get("image") or "",
                    s.get("why") or "",
                    case.get("source"),
                    (s.get("integrity") or {}).get("status")
                    or (case.get("integrity") or {}).get("status", "not_checked"),
                ]
            )
    header = [
        "case",
        "domain",
        "name",
        "registered",
        "verdict",
        "status",
        "certificate_id",
        "checked_at",
        "page",
        "element",
        "link",
        "image",
        "why",
        "source",
        "evidence_integrity",
    ]
    data = {"selection": selection or {}, "cases": cases}
    context = {
        **base_context(lang),
        "cases": cases,
        "selection": selection or {},
        "today": datetime.now(UTC).date().isoformat(),
    }
    return write_report(
        template="misuse.html.j2",
        context=context,
        data=data,
        tables={"cases": (header, rows)},
        out=out,
        formats=formats,
        stem=stem,
    )


# -- monitoring ---------------------------------------------------------------------------
def _change_rows(result: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name in (
        "regressions",
        "fixes",
        "badge_changes",
        "policy_changes",
        "evidence_changes",
        "unreachable",
    ):
        for c in result[name]:
            d = c.get("detail") or {}
            before, after = d.get("before"), d.get("after")
            evidence = [
                e
                for side in (before, after)
                if isinstance(side, dict)
                for e in side.get("evidence") or []
                if isinstance(e, dict)
            ]
            flagged = [e for e in evidence if e.get("integrity")]
            rows.append(
                [
                    c["change_id"],
                    c["domain"],
                    c["kind"],
                    c["rule_id"] or "",
                    c["previous_audit_id"] or "",
                    c["audit_id"],
                    c["found_at"],
                    before.get("status", "") if isinstance(before, dict) else before or "",
                    after.get("status", "") if isinstance(after, dict) else after or "",
                    "; ".join(str(e.get("url") or "") for e in evidence[:5]),
                    "mismatch" if flagged or c.get("integrity_failed_audits") else "ok",
                    " ".join(str(a) for a in c.get("integrity_failed_audits") or []),
                ]
            )
    return rows


def write_monitoring_report(
    result: dict[str, Any],
    out: Path,
    formats: list[str],
    lang: str = "en",
    stem: str = "monitoring",
) -> list[Path]:
    """``result``: reports.monitoring.monitoring_report."""
    totals = result["totals"]
    tables = {
        "summary": (["measure", "value"], [[k, v] for k, v in totals.items()]),
        "rechecks": (
            [
                "domain",
                "scheduled_for",
                "started_at",
                "finished_at",
                "late_hours",
                "on_time",
                "status",
                "reason",
                "trigger",
                "audit_id",
            ],
            [
                [
                    c["domain"],
                    c["scheduled_for"],
                    c["started_at"],
                    c["finished_at"] or "",
                    c["late_hours"],
                    int(c["on_time"]),
                    c["status"],
                    c["reason"],
                    c["trigger"],
                    c["audit_id"] or "",
                ]
                for c in result["rechecks"]
            ],
        ),
        "changes": (
            [
                "change_id",
                "domain",
                "kind",
                "rule_id",
                "previous_audit_id",
                "audit_id",
                "found_at",
                "before",
                "after",
                "evidence_urls",
                "evidence_integrity",
                "integrity_failed_audits",
            ],
            _change_rows(result),
        ),
        "certificates": (
            ["domain", "certificate_id", "event", "date", "status"],
            [
                [c["domain"], c["certificate_id"], "suspended", c["at"], c["status_now"]]
                for c in result["certificates"]["suspended"]
            ]
            + [
                [c["domain"], c["certificate_id"], "expired", c["valid_until"], c["status"]]
                for c in result["certificates"]["expired"]
            ]
            + [
                [c["domain"], c["certificate_id"], "expiring", c["valid_until"], c["status"]]
                for c in result["certificates"]["expiring"]
            ],
        ),
        "sites": (
            [
                "domain",
                "name",
                "industry",
                "certificate_id",
                "certificate_status",
                "audits",
                "regressions",
                "fixes",
                "last_score",
                "badge",
                "next_due",
                "state",
            ],
            [
                [
                    r["domain"],
                    r["name"],
                    r["industry"] or "",
                    r["certificate_id"] or "",
                    r["certificate_status"],
                    len(r["audits"]),
                    r["regressions"],
                    r["fixes"],
                    r["last_score"] if r["last_score"] is not None else "",
                    r["badge"] or "",
                    r["next_due"] or "",
                    r["state"],
                ]
                for r in result["sites"]
            ],
        ),
    }
    return write_report(
        template="monitoring.html.j2",
        context={**base_context(lang), "monitoring": result},
        data=result,
        tables=tables,
        out=out,
        formats=formats,
        stem=stem,
    )
