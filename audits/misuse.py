"""The misuse record: what a badge check found, in the form a misuse report and a notice
letter to the site are written from (issue #8 renders them; this module stores them).

It says which page, what was seen there (link, image, element), why that is misuse, and the
legal basis and guidance of the ``badge.valid`` rule, in Chinese and English.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from audits.checks.badge import MISUSE_VERDICTS

STATE_ZH = {"expired": "已过期", "suspended": "已被暂停", "revoked": "已被撤销"}


def notice_text(
    verdict: str, domain: str, page: str, evidence: dict[str, Any], owners: dict[str, str]
) -> dict[str, str]:
    """One paragraph for the notice letter, zh and en."""
    cert = evidence.get("certificate_id") or ""
    link_host = urlsplit(evidence.get("href") or "").hostname or ""
    zh_where = f"贵网站（{domain}）在页面 {page} 上"
    en_where = f"Your site ({domain}) shows, on the page {page},"
    if verdict == "no_certificate":
        zh = f"{zh_where}展示了本中心的诚信标识，但贵网站并未获得本中心颁发的证书。"
        en = f"{en_where} the centre's trust badge, but holds no certificate from the centre."
    elif verdict in STATE_ZH:
        zh = f"{zh_where}展示了证书 {cert} 的诚信标识，该证书{STATE_ZH[verdict]}。"
        en = f"{en_where} the trust badge of certificate {cert}, which is {verdict}."
    elif verdict == "wrong_domain":
        other = owners.get(cert, "")
        zh = f"{zh_where}展示的诚信标识指向证书 {cert}，该证书属于 {other}，而非贵网站。"
        en = (
            f"{en_where} a trust badge for certificate {cert}, which belongs to {other}, "
            "not to your site."
        )
    elif verdict == "forged_link":
        zh = f"{zh_where}展示的诚信标识链接至 {link_host}，该网址并非本中心的官方验证网址。"
        en = (
            f"{en_where} a trust badge linked to {link_host}, which is not an official "
            "verification address of the centre."
        )
    else:  # unlinked
        zh = f"{zh_where}展示的诚信标识未链接至本中心的官方验证页面，消费者无法核实。"
        en = (
            f"{en_where} a trust badge that is not linked to the centre's official "
            "verification page, so shoppers cannot check it."
        )
    return {
        "zh": zh + "请立即撤下该标识，或按规定正确展示并链接至官方验证页面。",
        "en": en + " Please remove the badge at once, or display it as the rules require, "
        "linked to its official verification page.",
    }


def misuse_record(
    *,
    domain: str,
    url: str,
    registered: bool,
    own_certificate: str | None,
    audit: dict[str, Any],
    owners: dict[str, str],
) -> dict[str, Any]:
    """The stored record of one badge check (BadgeCheck.record)."""
    finding = next((f for f in audit["findings"] if f["rule_id"] == "badge.valid"), None)
    badge = audit.get("badge") or {}
    verdict = badge.get("verdict")
    status = finding["status"] if finding else "error"
    evidence = finding["evidence"] if finding else []
    decisive = evidence[0] if evidence else {}
    misuse = verdict in MISUSE_VERDICTS and status == "fail"
    record: dict[str, Any] = {
        "domain": domain,
        "start_url": url,
        "registered": registered,
        "own_certificate": own_certificate,
        "reachable": audit.get("reachable"),
        "verdict": verdict,
        "status": status,
        "misuse": misuse,
        "suspected": verdict in MISUSE_VERDICTS and status == "review",
        "certificate_id": badge.get("certificate_id"),
        "pages": badge.get("pages") or [],
        "message": finding["message"] if finding else "",
        "sightings": [
            {
                "page": e.get("url"),
                "element": e.get("selector"),
                "link": e.get("href"),
                "image": e.get("image"),
                "seen": e.get("excerpt"),
                "verdict": e.get("verdict"),
                "why": e.get("why"),
                "weak": e.get("weak", False),
            }
            for e in evidence
            if e.get("verdict")
        ],
        "references": finding.get("references", []) if finding else [],
        "guidance": finding.get("guidance", "") if finding else "",
        "audit_id": audit.get("audit_id"),
        "crawl_id": audit.get("crawl_id"),
        "checked_at": audit.get("finished_at"),
    }
    if verdict in MISUSE_VERDICTS and decisive.get("url"):
        record["notice"] = notice_text(verdict, domain, decisive["url"], decisive, owners)
    return record
