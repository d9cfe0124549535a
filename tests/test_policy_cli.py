"""`ectrust policy classify` and `policy analyze` (CONTRACT.md), in both languages."""

from __future__ import annotations

import json

import pytest

from audits.vocabulary import CLAUSE_CATEGORIES
from ectrust.cli import app
from tests.conftest import write_site

# One clear sentence per category, in Chinese and in English.
SENTENCES = {
    "collection": (
        "我们会收集您注册时提供的手机号码、姓名和收货地址。",
        "We collect your name, email address and delivery address when you order.",
    ),
    "purpose": (
        "您的收货地址仅用于商品配送和售后服务，不会用作其他用途。",
        "We use your address only for the purpose of delivering your order to you.",
    ),
    "sharing": (
        "未经您的同意，我们不会向任何第三方共享您的个人信息。",
        "We do not share your personal information with third parties for marketing.",
    ),
    "cookies": (
        "我们使用 Cookie 和同类技术记住您的登录状态，您可以在浏览器中拒绝。",
        "We use cookies and similar technologies to keep you signed in to the shop.",
    ),
    "retention": (
        "您的个人信息存储于中国境内，保存期限届满后我们将删除或匿名化处理。",
        "We retain order records for six years and delete them after that period.",
    ),
    "security": (
        "我们采用加密传输和严格的访问控制等安全措施保护您的个人信息。",
        "We protect your data with encryption and strict access controls at all times.",
    ),
    "rights": (
        "您可以随时访问、更正或删除您的个人信息，也可以申请注销账户。",
        "You have the right to access, correct or delete your personal data at any time.",
    ),
    "contact": (
        "如对本政策有疑问，请通过电子邮件与我们的个人信息保护负责人联系。",
        "Questions about this notice? Please contact us at privacy@shop.example.",
    ),
    "children": (
        "不满十四周岁的未成年人应在监护人同意后使用我们的服务。",
        "Our shop is not directed at children under the age of 16 years old.",
    ),
    "changes": (
        "本政策如有更新，我们将在网站上发布通知，更新后的政策自公布之日起生效。",
        "We may update this privacy policy and will notify you of significant changes.",
    ),
}


@pytest.mark.parametrize("category", CLAUSE_CATEGORIES)
@pytest.mark.parametrize("lang", [0, 1], ids=["zh", "en"])
def test_classify_each_category(cli, tmp_path, category, lang):
    path = tmp_path / "in.jsonl"
    path.write_text(
        json.dumps({"id": 7, "text": SENTENCES[category][lang]}, ensure_ascii=False),
        encoding="utf-8",
    )
    [line] = cli("policy", "classify", str(path)).stdout.splitlines()
    result = json.loads(line)
    assert result["id"] == 7 and category in result["categories"], result


def test_classify_reads_stdin_and_rejects_bad_lines(cli):
    result = cli.runner.invoke(
        app,
        ["policy", "classify"],
        input='{"id": "a", "text": "Cookie 政策"}\n\n{"id": "b", "text": "欢迎光临本店，'
        '图书每日上新，欢迎选购。"}\n',
    )
    assert result.exit_code == 0
    assert [json.loads(x) for x in result.stdout.splitlines()] == [
        {"id": "a", "categories": []},
        {"id": "b", "categories": []},
    ]
    bad = cli.runner.invoke(app, ["policy", "classify"], input="not json\n")
    assert bad.exit_code == 2 and "line 1" in bad.stderr


def _policy_html(lang: int, skip: str | None = None) -> str:
    body = "".join(f"<p>{SENTENCES[c][lang]}</p>" for c in CLAUSE_CATEGORIES if c != skip)
    return (
        f'<html><head><meta charset="utf-8"><title>Privacy</title></head><body>'
        f'<nav><a href="/">Home</a> <a href="/contact">Contact us</a></nav>'
        f"<main>{body}</main><footer>Contact us · Cookies · Privacy</footer></body></html>"
    )


def test_analyze_file_both_languages(cli, tmp_path):
    for lang in (0, 1):
        path = tmp_path / f"policy{lang}.html"
        path.write_text(_policy_html(lang, skip="contact"), encoding="utf-8")
        result = cli.json("policy", "analyze", str(path), "--json")
        assert result["reads_as_policy"] is True
        covered = {c for c, v in result["clauses"].items() if v["covered"]}
        # The navigation and footer say "Contact us", the policy itself does not.
        assert covered == set(CLAUSE_CATEGORIES) - {"contact"}
        assert result["clauses"]["sharing"]["evidence"] == [SENTENCES["sharing"][lang]]


def test_analyze_gbk_text_file(cli, tmp_path):
    path = tmp_path / "policy.txt"
    path.write_bytes("\n".join(s[0] for s in SENTENCES.values()).encode("gbk"))
    result = cli.json("policy", "analyze", str(path), "--json")
    assert result["categories_covered"] == 10


def test_analyze_url_through_the_crawler(env, cli, site_farm):
    farm, root = site_farm
    write_site(root, "policy.example", {"privacy.html": _policy_html(0)})
    result = cli.json(
        "policy",
        "analyze",
        "http://policy.example/privacy.html",
        "--json",
        "--connect-to",
        f"::127.0.0.1:{farm.port}",
    )
    assert result["categories_covered"] == 10
    assert ("policy.example", "/robots.txt") in farm.requests
    missing = cli(
        "policy",
        "analyze",
        "http://policy.example/nope.html",
        "--connect-to",
        f"::127.0.0.1:{farm.port}",
        expect=2,
    )
    assert "HTTP 404" in missing.stderr
