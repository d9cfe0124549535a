"""Check types as pure functions of snapshots: no server needed."""

from __future__ import annotations

from functools import cache

import pytest

from audits.checks.privacy import ClauseDetector, sentences
from audits.checks.registration import credit_code_valid, find_icp, format_icp
from audits.pages import decode_body
from audits.rulepack import load_rules
from audits.ruletest import example_site
from crawler import settings as crawl_settings


@cache
def detector() -> ClauseDetector:
    pack = next(p for p in load_rules().packs if p.id == "privacy")
    return ClauseDetector.for_pack(pack)


def test_sentences_split_chinese_and_english():
    text = "我们收集信息。我们不会共享！Do we sell data? No. We never do.\n第二段；结束"
    assert sentences(text) == [
        "我们收集信息。",
        "我们不会共享！",
        "Do we sell data?",
        "No.",
        "We never do.",
        "第二段；",
        "结束",
    ]


def test_negation_still_speaks_of_the_clause():
    d = detector()
    assert "sharing" in d.classify("除法律规定外，我们不会与任何第三方共享您的个人信息。")
    assert "sharing" in d.classify("We do not share your personal information with anyone.")


def test_heading_alone_does_not_count():
    d = detector()
    assert d.classify("Cookie 政策") == []
    assert d.classify("Cookies") == []
    assert "cookies" in d.classify("我们使用 Cookie 记住您的登录状态，您可以在浏览器中拒绝。")


def test_unrelated_sentence_has_no_category():
    assert detector().classify("本店精选图书，每日上新，欢迎选购各类文学作品与教材。") == []


def test_credit_code_check_digit():
    assert credit_code_valid("91350100M000100Y43")
    assert not credit_code_valid("91350100M000100Y44")
    assert not credit_code_valid("91350100M000100Y4")  # too short
    assert not credit_code_valid("91350100M000100I43")  # I is not in the alphabet


def test_icp_formats():
    found = find_icp("版权所有 京ICP备12345678号-1 | 沪 ICP 证 030173 号")
    assert [format_icp(m) for m in found] == ["京ICP备12345678号-1", "沪ICP证030173号"]
    assert find_icp("ICP备案中") == []


def test_decoding_prefers_bom_then_header_then_meta():
    gbk = '<meta charset="gbk"><p>镕喆</p>'.encode("gbk")
    assert decode_body(gbk, None)[0].endswith("镕喆</p>")
    assert decode_body(gbk, "text/html; charset=gb2312")[0].endswith("镕喆</p>")
    bom = "\ufeff<p>镕喆</p>".encode()
    assert decode_body(bom, "text/html; charset=iso-8859-1")[0].endswith("镕喆</p>")


def test_link_present_needs_a_working_target():
    rules = {r.id: r for r in load_rules().rules}
    from audits.engine import evaluate_rule

    rule = rules["ecommerce.terms_present"]
    site = example_site(
        {
            "pages": [
                {
                    "url": "http://s.example/",
                    "html": '<footer><a href="/terms">用户协议</a></footer>',
                },
                {"url": "http://s.example/terms", "status": 404, "html": "not found"},
            ]
        }
    )
    outcome = evaluate_rule(site, rule)
    assert outcome.status == "fail" and "target failed: 404" in outcome.evidence[0]["note"]


def test_crawler_settings_refuse_non_http_schemes():
    """RELIABILITY.md T18 (settings part)."""
    assert crawl_settings.DOWNLOAD_HANDLERS == {"file": None, "data": None, "ftp": None, "s3": None}
    assert crawl_settings.TELNETCONSOLE_ENABLED is False
    assert crawl_settings.ROBOTSTXT_OBEY is True
    assert crawl_settings.DOWNLOAD_MAXSIZE <= 16 * 1024 * 1024


def test_evidence_prefers_sentences_over_headings():
    text = (
        "三、我们如何共享、转让、公开披露您的个人信息\n"
        "除法律法规规定的情形外，我们不会与任何第三方共享您的个人信息。"
    )
    quotes = detector().analyse(text)["sharing"]
    # the sentence first; the numbered heading, if counted at all, only after it
    assert quotes[0].startswith("除法律法规规定的情形外")
    assert all(not q.startswith("除法律") for q in quotes[1:])


def test_table_of_contents_alone_does_not_count():
    d = detector()
    toc = "\n".join(
        [
            "本政策包括以下内容：",
            "一、我们如何收集和使用您的个人信息",
            "二、我们如何共享、转让、公开披露您的个人信息",
            "三、我们如何保护您的个人信息",
        ]
    )
    assert not any(d.analyse(toc).values())
    # the same heading with a section under it counts, quoted after the full sentence
    section = "三、我们如何保护您的个人信息\n我们采用加密技术保护您的个人信息。"
    assert d.analyse(section)["security"][0].startswith("我们采用加密技术")


def test_numbered_statements_are_not_titles():
    items = [
        "1. We collect your e-mail address when you register.",
        "2. We share it with couriers.",
    ]
    found = detector().analyse("\n".join(items))
    assert found["collection"] and found["sharing"]


def test_scanning_a_document_equals_sentence_by_sentence():
    d = detector()
    lines = [
        "我们会收集您的手机号码。",
        "我们不会出售您的个人信息。",
        "Cookies",
        "您可以删除您的账户。",
        "We keep your data for 3 years.",
        "If you are under 14, ask a parent.",
        "短句",
    ]
    assert d.classify_many(lines) == [d.classify(line) for line in lines]


CATEGORY_SENTENCES = {
    "collection": (
        "在您注册账户时，我们会收集您的手机号码和收货地址。",
        "When you place an order we collect your name, address and phone number.",
    ),
    "purpose": (
        "我们收集的信息将用于为您完成订单配送和售后服务。",
        "We use your address in order to deliver the goods you bought.",
    ),
    "sharing": (
        "未经您同意，我们不会向任何第三方共享您的个人信息。",
        "We do not sell or share your personal information with third parties.",
    ),
    "cookies": (
        "我们使用 Cookie 记住您的登录状态，您可以在浏览器设置中拒绝 Cookie。",
        "We use cookies and similar technologies to remember what is in your basket.",
    ),
    "retention": (
        "我们仅在实现目的所必需的期限内保存您的个人信息，保存期限届满后予以删除。",
        "We retain order records for five years as required by tax law.",
    ),
    "security": (
        "我们采用加密技术和访问控制等安全措施保护您的个人信息。",
        "We protect your data with encryption and strict access controls.",
    ),
    "rights": (
        "您有权访问、更正、删除您的个人信息，也可以注销您的账户。",
        "You have the right to access, correct or delete your personal information.",
    ),
    "contact": (
        "如您对本政策有任何疑问，可以发送邮件至 privacy@shop.example 与我们联系。",
        "If you have questions about this policy, contact us at privacy@shop.example.",
    ),
    "children": (
        "若您是未满十四周岁的未成年人，请在监护人的陪同下阅读本政策。",
        "Our shop is not directed to children under 13 and we do not knowingly collect their data.",
    ),
    "changes": (
        "我们可能适时修订本隐私政策，变更后将在网站显著位置公告。",
        "We may update this privacy policy from time to time and will post the changes here.",
    ),
}


@pytest.mark.parametrize("category", list(CATEGORY_SENTENCES))
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_category_in_both_languages(category, lang):
    sentence = CATEGORY_SENTENCES[category][0 if lang == "zh" else 1]
    assert category in detector().classify(sentence)
    # the same sentence reworded into a title with no content under it does not count
    assert not detector().analyse(sentence.rstrip("。.").split("，")[0][:12])[category]
