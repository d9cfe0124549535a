"""Check types as pure functions of snapshots: no server needed."""

from __future__ import annotations

from audits.checks.privacy import ClauseDetector, sentences
from audits.checks.registration import credit_code_valid, find_icp, format_icp
from audits.pages import decode_body
from audits.rulepack import load_rules
from audits.ruletest import example_site
from crawler import settings as crawl_settings


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
    assert quotes[0].startswith("除法律法规规定的情形外") and len(quotes) == 2


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
