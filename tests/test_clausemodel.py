"""The clause model's vectorised inference against its reference featuriser, and the
shipped model's provenance."""

from __future__ import annotations

import json

import numpy as np

from audits.checks.privacy import ClauseDetector, section_titles
from audits.clausemodel import ORDERS, ClauseModel, _packed, features, ngram_keys
from audits.policy import privacy_pack

SENTENCES = [
    "我们会收集您的手机号码。",
    "Cookie 政策",
    "您有权删除您的信息",
    "aa  bb",
    "",
    "😀表情",
]
TITLES = ["一、收集", "", "六、您的权利", "一、收集", "y", ""]


def test_packed_ngrams_equal_the_reference():
    rows, keys = _packed(SENTENCES, ORDERS)
    for i, text in enumerate(SENTENCES):
        assert sorted(keys[rows == i].tolist()) == sorted(ngram_keys(text))


def test_scores_equal_the_reference_formula(tmp_path):
    keys = sorted({k for s, t in zip(SENTENCES, TITLES, strict=True) for k in features(s, t)[0]})
    weights = np.random.default_rng(0).normal(size=(len(keys), 2)).astype(np.float32)
    model = ClauseModel(["a", "b"], np.array(keys), weights, np.array([0.1, -0.2]), {"x": "y"})
    model.save(tmp_path / "m.npz")
    loaded = ClauseModel.load(tmp_path / "m.npz")  # float16 on disk
    column = {k: i for i, k in enumerate(keys)}
    got = loaded.scores(SENTENCES, TITLES)
    for i, (sentence, title) in enumerate(zip(SENTENCES, TITLES, strict=True)):
        values, norm = features(sentence, title)
        z = sum(loaded.weights[column[k]] * v for k, v in values.items()) / norm + loaded.bias
        assert np.allclose(got[i], 1 / (1 + np.exp(-z)), atol=1e-4)


def test_shipped_model_names_its_source_and_judges_chinese_sentences():
    pack = privacy_pack()
    assert pack.clause_model["language"] == "zh"
    detector = ClauseDetector.for_pack(pack)
    assert detector.model is not None
    assert "CAPP-130" in detector.model.source["corpus"]
    assert detector.model.source["licence"] == "CC BY 4.0"
    # no retention pattern matches this sentence: the model reads it as annotators do
    stored = "您的订单信息将存放在位于杭州的服务器中，直到您注销账户。"
    assert "retention" in detector.classify(stored)
    # a sentence that says nothing alone speaks of its section's subject
    items = ["五、我们如何保护您的个人信息", "我们将按照本政策的约定执行。"]
    assert detector.classify(items[1]) == []
    assert detector.classify_many(items, section_titles(items))[1] == ["security"]


def test_classify_stream_reads_lines_under_their_section(cli, tmp_path):
    path = tmp_path / "lines.jsonl"
    path.write_text(
        '{"id": 1, "text": "五、我们如何保护您的个人信息"}\n'
        '{"id": 2, "text": "我们将按照本政策的约定执行。"}\n',
        encoding="utf-8",
    )
    with_context = cli("policy", "classify", str(path)).stdout.splitlines()
    alone = cli("policy", "classify", "--no-context", str(path)).stdout.splitlines()
    assert json.loads(with_context[1]) == {"id": 2, "categories": ["security"]}
    assert json.loads(alone[1]) == {"id": 2, "categories": []}


def test_analyze_says_what_decided_each_clause(cli, tmp_path):
    from tests.test_discovery import FULL_ZH

    path = tmp_path / "p.html"
    path.write_text(FULL_ZH, encoding="utf-8")
    clauses = cli.json("policy", "analyze", str(path), "--json")["clauses"]
    assert clauses["retention"]["decided_by"] == "model"
    ngrams = [text for text, share in clauses["retention"]["model_ngrams"]]
    assert ngrams and all(text in clauses["retention"]["evidence"][0] for text in ngrams)
    assert clauses["cookies"]["decided_by"] == "patterns"  # no CAPP-130 label for cookies
