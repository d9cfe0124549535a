"""Rule packs: the bundled ones are valid and pass their own examples; bad files are refused
with their path and line; hostile rule files cannot run code or hang."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from audits.checks.base import RuleTimeout, compile_patterns, search
from audits.rulepack import RULES_DIR, RuleFileError, load_pack, load_rules
from audits.vocabulary import CONTRACT_RULE_IDS

MINIMAL = """\
pack: test-pack
version: "1"
title: {zh: 测试, en: Test}
rules:
  - id: test.icp
    title: {zh: 备案号, en: ICP}
    severity: major
    references: [law]
    scope: homepage
    check: {type: icp_number}
    guidance: {zh: 显示备案号, en: show it}
    examples:
      - expect: pass
        pages: [{url: "http://s.example/", html: "<p>京ICP备12345678号</p>"}]
      - expect: fail
        pages: [{url: "http://s.example/", html: "<p>nothing</p>"}]
"""


def test_bundled_packs_carry_every_contract_rule_id():
    ids = {r.id for r in load_rules().rules}
    assert set(CONTRACT_RULE_IDS) <= ids
    for rule in load_rules().rules:
        assert rule.title["zh"] and rule.title["en"] and rule.guidance["zh"] and rule.references
        assert {e["expect"] for e in rule.examples} >= {"fail"} or rule.id == "badge.valid"


def test_rules_validate_and_test_commands(env, cli):
    out = cli("rules", "validate").stdout
    assert out.count("ok:") == len(list(RULES_DIR.glob("*.yaml")))
    result = cli("rules", "test")
    assert " 0 failed" in result.stdout
    listed = cli.json("rules", "list", "--json")
    assert {r["id"] for r in listed} >= set(CONTRACT_RULE_IDS)


def test_rules_test_reports_disagreement(env, cli):
    path = env / "wrong.yaml"
    path.write_text(MINIMAL.replace("expect: fail", "expect: pass"), encoding="utf-8")
    result = cli("rules", "test", str(path), expect=1)
    assert "DISAGREE" in result.stdout and "wrong.yaml" in result.stdout
    assert "expected pass, got fail" in result.stdout


@pytest.mark.parametrize(
    ("mutation", "line", "words"),
    [
        (("check: {type: icp_number}", "check: {type: icp_numbr}"), 10, "unknown check type"),
        (("severity: major", "severity: huge"), 7, "'huge' is not one of"),
        (("scope: homepage", "scope: homepage\n    colour: red"), 10, "colour"),
        (
            ("check: {type: icp_number}", "check: {type: text_present, patterns: ['(a']}"),
            10,
            "not a valid pattern",
        ),
        (('version: "1"', 'version: "1"\nversion: "2"'), 3, "duplicate key"),
        (("  - id: test.icp", "  - id: Test ICP"), 5, "does not match"),
    ],
)
def test_bad_rule_file_is_refused_with_its_line(env, cli, mutation, line, words):
    path = env / "bad.yaml"
    path.write_text(MINIMAL.replace(*mutation), encoding="utf-8")
    result = cli("rules", "validate", str(path), expect=2)
    assert f"bad.yaml:{line}:" in result.stderr, result.stderr
    assert words in result.stderr


def test_yaml_cannot_build_python_objects(env, tmp_path):
    """RELIABILITY.md T39: a rule file must never run code."""
    marker = tmp_path / "pwned"
    path = env / "evil.yaml"
    path.write_text(
        MINIMAL.replace(
            'version: "1"', f'version: !!python/object/apply:os.system ["touch {marker}"]'
        ),
        encoding="utf-8",
    )
    with pytest.raises(RuleFileError) as info:
        load_pack(path)
    assert "evil.yaml:2" in str(info.value)
    assert not marker.exists()


def test_runaway_pattern_is_bounded():
    """RELIABILITY.md T39: (a+)+$ over 50 KB of 'a…b' stops at the timeout."""
    pattern = compile_patterns(["(a+)+$"])
    started = time.monotonic()
    with pytest.raises(RuleTimeout):
        search(pattern, "a" * 50_000 + "b")
    assert time.monotonic() - started < 5


def test_missing_file(env, cli):
    assert "cannot read" in cli("rules", "validate", str(Path("nope.yaml")), expect=2).stderr


def test_pack_and_rule_weights_decide_the_score(tmp_path):
    from audits.checks.base import Outcome
    from audits.engine import Result, rule_weight, score

    text = MINIMAL.replace(
        "title: {zh: 测试, en: Test}\n", "title: {zh: 测试, en: Test}\nweights: {major: 1}\n"
    )
    text = text.replace("rules:\n", "rules:\n", 1) + text[text.index("  - id: test.icp") :].replace(
        "test.icp", "test.icp2"
    ).replace("severity: major", "severity: major\n    weight: 3")
    path = tmp_path / "w.yaml"
    path.write_text(text, encoding="utf-8")
    first, second = load_pack(path).rules
    assert (rule_weight(first), rule_weight(second)) == (1.0, 3.0)
    results = [Result(first, Outcome("fail", "")), Result(second, Outcome("pass", ""))]
    assert score(results) == 75.0  # 3 of 4 weighted points
