# ruff: noqa: E501
"""A farm of 32 generated shops for the report tests: Chinese and English, policies one or two
clicks away, reachable only through sitemap.xml, or missing, with different clause coverage;
certified, expired and uncertified sites, a forged badge link, a badge shown without a
certificate, and one shop whose crawled text and URLs carry hostile markup."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_site

OFFICIAL = "verify.trust.example"
HEADER = "domain,name,start_url,industry,status,certificate_id,badge,valid_from,valid_until\n"
SITES = 32
HOSTILE_TITLE = '<script>alert("t")</script>书店'
HOSTILE_SENTENCE = "我们收集您的姓名<img src=x onerror=alert(1)>和地址，用于完成订单配送。"

ZH = {
    "collection": "我们收集您在注册和下单时提供的姓名、手机号码和收货地址。",
    "purpose": "我们将这些信息用于完成订单配送、售后服务和身份验证。",
    "sharing": "除配送所必需外，我们不会与第三方共享您的个人信息。",
    "cookies": "我们使用 Cookie 记住您的登录状态，您可以在浏览器中清除 Cookie。",
    "retention": "我们仅在实现目的所必需的期限内保存您的个人信息，超出保存期限后删除。",
    "security": "我们采用加密传输和访问控制等安全措施保护您的个人信息。",
    "rights": "您有权查阅、更正、删除您的个人信息，并可以注销账户。",
    "contact": "如对本政策有任何疑问，您可以通过电子邮件 privacy@{host} 联系我们。",
    "children": "我们不会在未经监护人同意的情况下收集不满十四周岁儿童的个人信息。",
    "changes": "本政策如有变更，我们会在网站上发布更新后的版本并通知您。",
}
EN = {
    "collection": "We collect the name, e-mail and delivery address you provide when you order.",
    "purpose": "We use this information to deliver your orders and to provide customer service.",
    "sharing": "We do not share your personal information with third parties except our couriers.",
    "cookies": "We use cookies to keep you signed in; you can delete cookies in your browser.",
    "retention": "We retain your personal information only as long as needed for these purposes.",
    "security": "We protect your information with encryption and strict access controls.",
    "rights": "You have the right to access, correct or delete your personal information.",
    "contact": "If you have questions about this policy, contact us at privacy@{host}.",
    "children": "We do not knowingly collect information from children under 14.",
    "changes": "We will post any changes to this policy on this page and notify you.",
}
ORDER = list(ZH)
ALWAYS = ("collection", "purpose", "sharing", "rights", "contact")


def host(i: int) -> str:
    return "hostile.example" if i == 0 else f"shop{i:02d}.example"


def lang(i: int) -> str:
    return "en" if i % 3 == 2 else "zh"


def placement(i: int) -> str:
    if i % 8 == 3:
        return "none"
    if i % 8 == 7:
        return "sitemap"
    return "help" if i % 4 == 1 else "footer"


def clauses(i: int) -> list[str]:
    optional = [c for c in ORDER if c not in ALWAYS]
    drop = {optional[(i + k) % len(optional)] for k in range(i % 4)}
    return [c for c in ORDER if c not in drop]


def status(i: int) -> tuple[str, str, str, str, str]:
    """status, certificate id, badge tier, valid from, valid until."""
    if i % 4 in (0, 1) or i == 9:
        until = "2021-12-31" if i == 5 else "2030-12-31"
        return "certified", f"ECT-2026-{1000 + i}", "red", "2020-01-01", until
    return "applicant", "", "", "", ""


def badge_html(i: int) -> str:
    st, cert, *_ = status(i)
    if i == 9:  # a certificate, but the badge links a look-alike verification host
        return f'<a href="http://trust-verify.test/cert/{cert}"><img src="/seal.svg" alt="诚信认证"></a>'
    if i == 13:  # an applicant showing shop04's certificate
        return f'<a href="http://{OFFICIAL}/cert/ECT-2026-1004"><img src="http://{OFFICIAL}/badge/ECT-2026-1004.svg"></a>'
    if st == "certified":
        return f'<a href="http://{OFFICIAL}/cert/{cert}"><img src="http://{OFFICIAL}/badge/{cert}.svg" alt="诚信认证"></a>'
    return ""


def page(i: int, title: str, body: str, footer: str) -> str:
    lng = "zh-CN" if lang(i) == "zh" else "en"
    return (
        f'<!DOCTYPE html><html lang="{lng}"><head><meta charset="utf-8"><title>{title}</title>'
        f'</head><body><header><a href="/">{title}</a></header><main>{body}</main>'
        f"<footer>{footer}</footer></body></html>"
    )


def policy_page(i: int, with_clauses: list[str] | None = None) -> str:
    h = host(i)
    texts = ZH if lang(i) == "zh" else EN
    paras = "".join(f"<p>{texts[c].format(host=h)}</p>" for c in with_clauses or clauses(i))
    if i == 0:
        paras += f"<p>{HOSTILE_SENTENCE.replace('<', '&lt;').replace('>', '&gt;')}</p>"
    title = "隐私政策" if lang(i) == "zh" else "Privacy Policy"
    return page(i, title, f"<h1>{title}</h1>{paras}", "")


def footer(i: int, *, policy: bool = True, complaint: bool = True) -> str:
    zh = lang(i) == "zh"
    parts = []
    where = placement(i)
    if policy and where == "footer":
        href = '/privacy.html?from="><svg onload=alert(1)>' if i == 0 else "/privacy.html"
        parts.append(f'<a href="{href}">{"隐私政策" if zh else "Privacy Policy"}</a>')
    if policy and where == "help":
        parts.append(f'<a href="/help/">{"帮助中心" if zh else "Help centre"}</a>')
    if complaint:
        parts.append(f'<a href="/complaints.html">{"投诉举报" if zh else "Complaints"}</a>')
    if i == 0:
        parts.append('<a href="javascript:alert(1)" onclick="alert(2)">联系我们</a>')
    if zh:
        parts.append(f"<span>京ICP备{12340000 + i}号</span>")
        parts.append(f"<span>营业执照：统一社会信用代码 91110000{700000000 + i}X</span>")
    parts.append(badge_html(i))
    return " | ".join(p for p in parts if p)


def site_files(i: int, *, policy: bool = True, complaint: bool = True) -> dict[str, str]:
    zh = lang(i) == "zh"
    title = HOSTILE_TITLE if i == 0 else (f"书城{i:02d}" if zh else f"Books {i:02d}")
    files = {
        "index.html": page(
            i,
            title,
            f'<p>{"欢迎选购图书" if zh else "Welcome"}</p><a href="/product/1.html">1</a>',
            footer(i, policy=policy, complaint=complaint),
        ),
        "product/1.html": page(
            i, title, "<p>商品详情 product</p>", footer(i, policy=policy, complaint=complaint)
        ),
        "complaints.html": page(
            i,
            "投诉" if zh else "Complaints",
            "<p>投诉电话 400-800-1234，邮箱 complain@example.com</p>",
            "",
        ),
        "robots.txt": "User-agent: *\nAllow: /\n",
        "seal.svg": '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    }
    where = placement(i)
    if policy and where in ("footer", "help", "sitemap"):
        files["privacy.html"] = policy_page(i)
    if policy and where == "help":
        files["help/index.html"] = page(
            i,
            "帮助中心" if zh else "Help",
            f'<a href="/privacy.html">{"隐私政策" if zh else "Privacy Policy"}</a>',
            "",
        )
    if policy and where == "sitemap":
        files["sitemap.xml"] = (
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>http://{host(i)}/privacy.html</loc></url></urlset>"
        )
    return files


def industry(i: int) -> str:
    return "fashion" if i % 5 == 4 else "books"


def build(root: Path) -> str:
    """Write every shop under ``root``; returns the registry CSV."""
    rows = []
    for i in range(SITES):
        write_site(root, host(i), site_files(i))
        st, cert, tier, start, until = status(i)
        name = "恶意<b>书店</b>" if i == 0 else f"商城{i:02d}"
        rows.append(
            f"{host(i)},{name},http://{host(i)}/,{industry(i)},{st},{cert},{tier},{start},{until}"
        )
    return HEADER + "\n".join(rows) + "\n"
