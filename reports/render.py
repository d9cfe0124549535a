"""Rendering reports from audit documents (the same JSON ``audit --json`` prints).

Every template is rendered with autoescaping forced on, whatever its file name: crawled text
is hostile input (RELIABILITY.md T37). Links from crawled pages are shown only when they are
http(s); anything else is printed as text.
"""

from __future__ import annotations

import csv
import json
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
    rendered once for HTML and PDF alike; ``data`` is the JSON export and ``tables`` the CSV
    exports (``name -> (header, rows)``, one file ``<stem>-<name>.csv`` each), so the files
    an analyst gets hold the same numbers as the charts."""
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
        html = environment().get_template(template).render(**context)
        if "html" in formats:
            path = out / f"{stem}.html"
            path.write_text(html, encoding="utf-8")
            written.append(path)
        if "pdf" in formats:
            from reports.pdf import html_to_pdf

            path = out / f"{stem}.pdf"
            html_to_pdf(html, path)
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


def _plain_entry(doc: dict[str, Any]) -> dict[str, Any]:
    from reports.data import recommendation

    return {
        "doc": doc,
        "site": {"name": "", "industry": "", "certificate": None},
        "recommendation": recommendation(doc),
        "changes": None,
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
                ]
            )
    data = {
        "audits": [e["doc"] for e in entries],
        "recommendations": {e["doc"]["domain"]: e["recommendation"]["verdict"] for e in entries},
        "changes": {e["doc"]["domain"]: e["changes"] for e in entries},
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
            ],
            site_rows,
        ),
    }
    context = {**base_context(lang), "survey": result}
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
