"""Clause-detector benchmark: ectrust's privacy clause patterns against labelled corpora.

What it measures
----------------
The detector the audits use (``ClauseDetector.for_pack(privacy_pack())``, i.e. the
``clauses:`` patterns of rules/privacy.yaml) is run over three public, human-labelled
privacy-policy corpora, read by path at run time (default ``../shared/corpora`` from the
repository root; nothing is copied into the project):

* CAPP-130 (Chinese app policies; unit = one annotated sentence, policy = one rw_N.jsonl),
* OPP-115 (English website policies; unit = one segment, policy = one policy file),
* APPCorp (English app policies; unit = one paragraph; policy boundaries are not marked).

Each corpus' own labels are mapped to the ten ectrust categories as the table in the
corpora README says (the mapping actually used is printed per corpus). Categories a corpus
cannot express are left out of its scores, and the output says so.

1. Segment level: a unit is *predicted* to carry category c when
   ``classify_segment(detector, text)`` contains c, and *labelled* c when any of its labels
   maps to c. Per category: TP/FP/FN, precision, recall, F1; then macro-F1 over the scored
   categories. This is what evidence quotes need: is *this* paragraph about retention?
2. Policy level: a policy *covers* c when at least one of its units is labelled c, and is
   predicted to when at least one unit is predicted c. This is what reports show. A second
   figure runs ``analyse_page(document_page(...))`` on the whole document instead (what an
   audit or ``ectrust policy analyze`` does), which also exercises sentence splitting.
3. Throughput on one core (the process is pinned to one CPU where the OS allows it):
   whole-document ``analyse_page(document_page(text_bytes, name), pack)`` per policy of
   CAPP-130 (sentences joined by newlines) and OPP-115 (segments joined by newlines), the
   median of ``--rounds`` rounds; and units/s for ``classify_segment``.

How to read it
--------------
Policy-level F1 is easy to inflate: most policies speak of most categories, so a detector
that says "yes" to everything scores high. Each policy table therefore shows TN (policies
correctly found silent on c) and the macro-F1 of that trivial always-yes detector; a figure
close to the baseline means the detector tells policies apart no better than guessing "yes".
Segment-level figures are the honest measure of the patterns themselves. Annotators label
what a unit is *about*; a pattern fires on any mention ("we do not share", a cross
reference to "the purposes above"), so some false positives are mentions rather than
errors. The issue's targets are printed at the end with the measured figures.

These corpora are a development split; a held-back part measures the project on material
it was never tuned on. Use ``--errors CATEGORY --corpus capp|opp|appcorp`` to read up to 15
false negatives and 15 false positives (false positives show what the pattern matched) when
improving the general patterns; never turn the misses into corpus-specific patterns.

Usage::

    python bench/clauses.py [--corpora DIR] [--corpus capp|opp|appcorp ...] [--rounds 3]
    python bench/clauses.py --errors retention --corpus opp [--limit 15] [--seed 1]

Figures are also written to ``bench/out/clauses-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import random
import re
import statistics
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audits.checks.privacy import CATEGORIES, ClauseDetector, sentences
from audits.policy import analyse_page, classify_segment, document_page, privacy_pack
from audits.rulepack import Pack

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPORA = REPO / ".." / "shared" / "corpora"
OUT_DIR = REPO / "bench" / "out"
TARGETS = {"policy_macro_f1": 0.90, "segment_macro_f1": 0.80, "policies_per_s": 50.0}
CORPUS_KEYS = ("capp", "opp", "appcorp")

# CAPP-130 label (Chinese name in label_explanation.json) -> ectrust categories.
CAPP_MAPPING: dict[str, tuple[str, ...]] = {
    "数据收集": ("collection",),
    "权限获取": ("collection",),  # app permissions: the README's "(权限获取 for apps)"
    "使用": ("purpose",),
    "共享、委托、转让、公开（披露）": ("sharing",),
    "存储方式": ("retention",),
    "安全措施": ("security",),
    "数据、权限管理": ("rights",),
    "联系方式": ("contact",),
    "特殊人群": ("children",),
    "隐私政策的授权、修改与变更": ("changes",),
    "停止运营": (),
    "摘要": (),
    "潜在风险": (),
}

# APPCorp paragraph label -> ectrust categories.
APPCORP_MAPPING: dict[str, tuple[str, ...]] = {
    "First_Party_Collection_and_Use": ("collection", "purpose"),
    "Third_Party_Share_and_Collection": ("sharing",),
    "Cookies_and_Similar_Technologies": ("cookies",),
    "Data_Retention": ("retention",),
    "Data_Security": ("security",),
    "User_Right_and_Control": ("rights",),
    "Policy_Contact_Information": ("contact",),
    "Specific_Audiences": ("children",),
    "Policy_Change": ("changes",),
    "Policy_Introductory": (),
    "International_Data_Transfer": (),
}

# OPP-115 category -> ectrust categories, by category alone.
OPP_CATEGORY_MAPPING: dict[str, tuple[str, ...]] = {
    "First Party Collection/Use": ("collection",),
    "Third Party Sharing/Collection": ("sharing",),
    "Data Retention": ("retention",),
    "Data Security": ("security",),
    "User Access, Edit and Deletion": ("rights",),
    "User Choice/Control": ("rights",),
    "Policy Change": ("changes",),
}
OPP_COOKIE_TYPE = "Cookies and tracking elements"
OPP_UNSPECIFIED = {"", "Unspecified", "not-selected", "Not selected", "null"}


class BenchError(RuntimeError):
    """The corpora are missing or not laid out as expected."""


@dataclass(frozen=True)
class Unit:
    """One labelled sentence, segment or paragraph."""

    ref: str
    policy: str | None
    text: str
    gold: frozenset[str]
    labels: tuple[str, ...]  # the corpus' own labels, for --errors


@dataclass
class Corpus:
    key: str
    title: str
    language: str
    unit: str
    units: list[Unit]
    scored: tuple[str, ...]
    mapping: dict[str, str]
    notes: list[str] = field(default_factory=list)
    has_policies: bool = True

    def policies(self) -> dict[str, list[Unit]]:
        grouped: dict[str, list[Unit]] = defaultdict(list)
        for unit in self.units:
            if unit.policy is not None:
                grouped[unit.policy].append(unit)
        return dict(grouped)

    def documents(self) -> dict[str, str]:
        """Whole policy texts: the units of each policy, in order, one per line."""
        return {p: "\n".join(u.text for u in units) for p, units in self.policies().items()}


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def gold(self) -> int:
        return self.tp + self.fn

    @property
    def predicted(self) -> int:
        return self.tp + self.fp

    @property
    def precision(self) -> float | None:
        return self.tp / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.tp / self.gold if self.gold else None

    @property
    def f1(self) -> float | None:
        """2TP / (2TP + FP + FN); undefined only when the category never occurs at all."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "gold": self.gold,
            "predicted": self.predicted,
            "precision": _round(self.precision),
            "recall": _round(self.recall),
            "f1": _round(self.f1),
        }


# ----------------------------------------------------------------------------- loading


def _require(path: Path) -> Path:
    if not path.exists():
        raise BenchError(f"missing {path} (is --corpora pointing at the shared corpora?)")
    return path


def _describe(mapping: dict[str, tuple[str, ...]], category: str) -> str:
    return " + ".join(label for label, cats in mapping.items() if category in cats)


def load_capp(root: Path) -> Corpus:
    base = _require(root / "capp130")
    explanation = json.loads(
        _require(base / "label_explanation.json").read_text(encoding="utf-8-sig")
    )
    names = {str(item["id"]): item["label_chinese_name"].strip() for item in explanation}
    unknown = sorted(set(CAPP_MAPPING) - set(names.values()))
    if unknown or len(names) != len(CAPP_MAPPING):
        raise BenchError(f"label_explanation.json does not list the expected labels: {unknown}")
    files = sorted(
        _require(base / "annotations").glob("rw_*.jsonl"),
        key=lambda p: int(re.sub(r"\D", "", p.stem) or 0),
    )
    if not files:
        raise BenchError(f"no rw_*.jsonl in {base / 'annotations'}")
    units: list[Unit] = []
    noise = Counter[str]()
    for path in files:
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                item = json.loads(line)
                text = str(item.get("text") or "").strip()
                if not text:
                    continue
                labels: list[str] = []
                for raw in item.get("label") or []:
                    label = str(raw).strip()
                    label = names.get(label, label)  # an id resolves to its name
                    if label in CAPP_MAPPING:
                        labels.append(label)
                    else:
                        noise["label"] += 1
                gold = frozenset(c for label in labels for c in CAPP_MAPPING[label])
                units.append(Unit(f"{path.stem}:{number}", path.stem, text, gold, tuple(labels)))
    by_id = {v: k for k, v in names.items()}
    mapping = {
        c: " + ".join(f"{n} (id {by_id[n]})" for n, cats in CAPP_MAPPING.items() if c in cats)
        for c in CATEGORIES
    }
    mapping["cookies"] = "— (no CAPP label: cookies sit inside 数据收集)"
    unmapped = ", ".join(n for n, cats in CAPP_MAPPING.items() if not cats)
    return Corpus(
        key="capp",
        title="CAPP-130",
        language="zh",
        unit="sentence",
        units=units,
        scored=tuple(c for c in CATEGORIES if c != "cookies"),
        mapping=mapping,
        notes=[
            "cookies is not scored: CAPP-130 has no cookie label (cookie sentences are "
            "labelled 数据收集, so they count for collection).",
            f"collection = 数据收集 + 权限获取 (app permissions); labels without an ectrust "
            f"category ({unmapped}) give no category; {noise['label']} label entries that are "
            f"not one of the 13 labels in label_explanation.json were ignored as noise.",
            f"{len(files)} policies (one rw_N.jsonl each), {len(units)} non-empty sentences.",
        ],
    )


def _opp_attribute(attributes: dict[str, Any], name: str) -> str:
    value = attributes.get(name)
    return str(value.get("value", "")) if isinstance(value, dict) else ""


def _opp_categories(category: str, attributes: dict[str, Any]) -> set[str]:
    """ectrust categories of one consolidated OPP-115 data practice."""
    found = set(OPP_CATEGORY_MAPPING.get(category, ()))
    purpose = _opp_attribute(attributes, "Purpose")
    if category == "First Party Collection/Use" and purpose not in OPP_UNSPECIFIED:
        found.add("purpose")
    if category == "Do Not Track" or (
        _opp_attribute(attributes, "Personal Information Type") == OPP_COOKIE_TYPE
    ):
        found.add("cookies")
    if category == "Other" and (
        _opp_attribute(attributes, "Other Type") == "Privacy contact information"
    ):
        found.add("contact")
    if category == "International and Specific Audiences" and (
        _opp_attribute(attributes, "Audience Type") == "Children"
    ):
        found.add("children")
    return found


def load_opp(root: Path) -> Corpus:
    base = _require(root / "opp115")
    csv.field_size_limit(sys.maxsize)
    with _require(base / "segments_consolidated075.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = {"policy_file", "segment_id", "categories", "text"}
    if not rows or not expected <= set(rows[0]):
        raise BenchError(f"segments_consolidated075.csv lacks columns {sorted(expected)}")
    consolidation = base / "consolidation" / "threshold-0.75-overlap-similarity"
    policies = sorted({r["policy_file"] for r in rows})
    with_attributes = all((consolidation / f"{p}.csv").is_file() for p in policies)

    practices: dict[tuple[str, int], set[str]] = defaultdict(set)
    raw_categories: dict[tuple[str, int], set[str]] = defaultdict(set)
    if with_attributes:
        for policy in policies:
            with (consolidation / f"{policy}.csv").open(encoding="utf-8", newline="") as f:
                for record in csv.reader(f):
                    if len(record) < 7:
                        continue
                    key, category = (policy, int(record[4])), record[5]
                    raw_categories[key].add(category)
                    practices[key] |= _opp_categories(category, json.loads(record[6] or "{}"))

    units: list[Unit] = []
    disagreements = 0
    for row in sorted(rows, key=lambda r: (r["policy_file"], int(r["segment_id"]))):
        key = (row["policy_file"], int(row["segment_id"]))
        labels = tuple(c for c in row["categories"].split("|") if c)
        if with_attributes:
            gold = frozenset(practices.get(key, set()))
            disagreements += set(labels) != raw_categories.get(key, set())
        else:
            gold = frozenset(
                {c for label in labels for c in OPP_CATEGORY_MAPPING.get(label, ())}
                | ({"purpose"} if "First Party Collection/Use" in labels else set())
                | ({"children"} if "International and Specific Audiences" in labels else set())
            )
        units.append(Unit(f"{key[0]}#{key[1]}", key[0], row["text"].strip(), gold, labels))

    mapping = {
        c: " + ".join(k for k, v in OPP_CATEGORY_MAPPING.items() if c in v) for c in CATEGORIES
    }
    if with_attributes:
        mapping |= {
            "purpose": "First Party Collection/Use with a specified Purpose attribute",
            "cookies": f'any practice with Personal Information Type "{OPP_COOKIE_TYPE}" '
            "+ Do Not Track",
            "contact": "Other, Other Type = Privacy contact information",
            "children": "International and Specific Audiences, Audience Type = Children",
        }
        scored = CATEGORIES
        notes = [
            "labels from the consolidated practices (threshold 0.75) with their attributes; "
            "segment text from segments_consolidated075.csv.",
            f"{disagreements} segments whose category list in segments_consolidated075.csv "
            "differs from the consolidation CSVs.",
        ]
    else:
        mapping |= {
            "purpose": "First Party Collection/Use (no attributes: approximation)",
            "children": "International and Specific Audiences (all audiences: approximation)",
            "cookies": "— (needs attributes: not scored)",
            "contact": "— (needs attributes: not scored)",
        }
        scored = tuple(c for c in CATEGORIES if c not in ("cookies", "contact"))
        notes = [
            "no consolidation CSVs with attributes: purpose = First Party Collection/Use and "
            "children = all International and Specific Audiences (approximations); cookies and "
            "contact are not scored."
        ]
    notes.append(f"{len(policies)} policies, {len(units)} segments.")
    return Corpus("opp", "OPP-115", "en", "segment", units, scored, mapping, notes)


_DETOKENISE = (
    (re.compile(r" ([.,;:!?%)\]”’])"), r"\1"),
    (re.compile(r"([(\[“‘$]) "), r"\1"),
    (re.compile(r"\b(ca|wo|do|does|did|is|are|was|were|could|would|should) n't\b"), r"\1n't"),
    (re.compile(r" (['’])(s|re|ve|ll|d|m)\b"), r"\1\2"),
    (re.compile(r"\bcan not\b"), "cannot"),
)


def detokenise(line: str) -> str:
    """Undo APPCorp's word tokenisation ("we do n't share it .") so the detector reads text
    as it appears on a page. Placeholders such as -email- and -url- stay as they are."""
    for pattern, replacement in _DETOKENISE:
        line = pattern.sub(replacement, line)
    return line


def load_appcorp(root: Path) -> Corpus:
    base = _require(root / "appcorp_en" / "data")
    files = sorted(base.glob("privacypolicy.test_*"), key=lambda p: p.name)
    if not files:
        raise BenchError(f"no privacypolicy.test_* in {base}")
    units: list[Unit] = []
    unknown = Counter[str]()
    for path in files:
        blocks = re.split(r"\n\s*\n", path.read_text(encoding="utf-8"))
        for number, block in enumerate(b for b in blocks if b.strip()):
            lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
            label, sentences = lines[0], lines[1:]
            if label not in APPCORP_MAPPING:
                unknown[label] += 1
                continue
            text = "\n".join(detokenise(s) for s in sentences)
            gold = frozenset(APPCORP_MAPPING[label])
            ref = f"{path.name.rsplit('_', 1)[-1]}:{number}"
            units.append(Unit(f"fold{ref}", None, text, gold, (label,)))
    mapping = {c: _describe(APPCORP_MAPPING, c) for c in CATEGORIES}
    notes = [
        "policy boundaries are not marked in APPCorp: policy level is not available, and it "
        "gives no documents for the throughput run.",
        "collection and purpose both = First_Party_Collection_and_Use (one paragraph label); "
        "Policy_Introductory and International_Data_Transfer give no category.",
        "sentences are tokenised in the corpus; they are detokenised (punctuation spacing, "
        "n't, can not) and joined by newlines; e-mail addresses and URLs are placeholders.",
        f"{len(units)} paragraphs from {len(files)} folds.",
    ]
    if unknown:
        notes.append(f"skipped blocks with unknown labels: {dict(unknown)}")
    return Corpus("appcorp", "APPCorp", "en", "paragraph", units, CATEGORIES, mapping, notes, False)


LOADERS: dict[str, Callable[[Path], Corpus]] = {
    "capp": load_capp,
    "opp": load_opp,
    "appcorp": load_appcorp,
}


# ----------------------------------------------------------------------------- scoring


def score(
    pairs: Iterable[tuple[frozenset[str], frozenset[str]]], categories: Sequence[str]
) -> dict[str, Counts]:
    """Per-category confusion counts of (gold, predicted) label sets."""
    counts = {c: Counts() for c in categories}
    for gold, predicted in pairs:
        for c in categories:
            cell = counts[c]
            if c in gold and c in predicted:
                cell.tp += 1
            elif c in predicted:
                cell.fp += 1
            elif c in gold:
                cell.fn += 1
            else:
                cell.tn += 1
    return counts


def macro_f1(counts: dict[str, Counts]) -> float | None:
    values = [c.f1 for c in counts.values() if c.f1 is not None]
    return sum(values) / len(values) if values else None


def always_yes(
    pairs: Sequence[tuple[frozenset[str], frozenset[str]]], cats: Sequence[str]
) -> float | None:
    """Macro-F1 of a detector that predicts every category for every unit or policy."""
    everything = frozenset(cats)
    return macro_f1(score(((gold, everything) for gold, _ in pairs), cats))


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def predict_units(
    corpus: Corpus, detectors: Callable[[str | None], ClauseDetector]
) -> tuple[list[frozenset[str]], float]:
    """Predicted categories per unit, and the seconds it took over them all.

    Where the corpus groups units into policies, each policy is read as one document (its
    units' sentences in order, so each sentence is seen under its section title, as in an
    audit) and a unit gets the union of its sentences' categories; otherwise each unit is
    classified alone with ``classify_segment``. ``detectors(policy)`` gives the detector for
    a policy (one whose model was not trained on it)."""
    started = time.perf_counter()
    if not corpus.has_policies:
        detector = detectors(None)
        predicted = [frozenset(classify_segment(detector, u.text)) for u in corpus.units]
        return predicted, time.perf_counter() - started
    found: dict[str, frozenset[str]] = {}
    for policy, units in corpus.policies().items():
        split = [sentences(u.text) for u in units]
        flat = [s for parts in split for s in parts]
        cats = detectors(policy).classify_many(flat)
        at = 0
        for unit, parts in zip(units, split, strict=True):
            found[unit.ref] = frozenset(c for cs in cats[at : at + len(parts)] for c in cs)
            at += len(parts)
    predicted = [found.get(u.ref, frozenset()) for u in corpus.units]
    return predicted, time.perf_counter() - started


def fold_detectors(
    corpus: Corpus, detector: ClauseDetector, folds: int, seed: int
) -> tuple[Callable[[str | None], ClauseDetector], str]:
    """Detectors whose clause model never saw the policy they judge: the corpus' policies
    are split into ``folds`` groups, and a model is trained (as bench/train_clause_model.py
    does) on all groups but the policy's own. The shipped model was trained on these very
    policies, so scoring it here would measure memory, not reading."""
    if detector.model is None or corpus.key != "capp" or folds < 2:
        return (lambda _policy: detector), "no trained model involved"
    from train_clause_model import train_on

    names = sorted(corpus.policies())
    random.Random(seed).shuffle(names)
    groups = [names[i::folds] for i in range(folds)]
    by_policy: dict[str | None, ClauseDetector] = {}
    for k, group in enumerate(groups):
        training = [n for j, g in enumerate(groups) if j != k for n in g]
        started = time.perf_counter()
        model = train_on(corpus, training, {"corpus": f"CAPP-130 fold {k + 1}/{folds}"})
        print(
            f"  clause model for fold {k + 1}/{folds}: trained on {len(training)} policies in "
            f"{time.perf_counter() - started:.0f} s, judges the other {len(group)}",
            flush=True,
        )
        fold = copy.copy(detector)
        fold.model = model
        by_policy.update(dict.fromkeys(group, fold))
    note = (
        f"{folds}-fold cross-validation by policy (seed {seed}): each policy judged by a "
        "model trained without it"
    )
    return (lambda policy: by_policy.get(policy, detector)), note


def policy_pairs(
    corpus: Corpus, predicted: Sequence[frozenset[str]]
) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    gold: dict[str, set[str]] = defaultdict(set)
    pred: dict[str, set[str]] = defaultdict(set)
    for unit, cats in zip(corpus.units, predicted, strict=True):
        if unit.policy is None:
            continue
        gold[unit.policy] |= unit.gold
        pred[unit.policy] |= cats
    return {p: (frozenset(gold[p]), frozenset(pred[p])) for p in gold}


# ----------------------------------------------------------------------------- throughput


def pin_to_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this OS)"
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[0]})
    return f"pinned to CPU {cpus[0]} (of {len(cpus)} available)"


def time_documents(
    documents: dict[str, str],
    pack: Pack,
    rounds: int,
    detectors: Callable[[str | None], ClauseDetector],
) -> tuple[dict[str, Any], dict[str, frozenset[str]]]:
    """Whole-document analysis of every policy, ``rounds`` times; the median round counts."""
    encoded = [(name, text.encode("utf-8")) for name, text in documents.items()]
    if encoded:  # warm-up: imports, lxml, regex compilation caches
        analyse_page(document_page(encoded[0][1], encoded[0][0]), pack, detectors(encoded[0][0]))
    walls: list[float] = []
    cpus: list[float] = []
    covered: dict[str, frozenset[str]] = {}
    not_policies: dict[str, str] = {}
    for _ in range(max(1, rounds)):
        wall, cpu = time.perf_counter(), time.process_time()
        for name, body in encoded:
            result = analyse_page(document_page(body, name), pack, detectors(name))
            covered[name] = frozenset(c for c, v in result["clauses"].items() if v["covered"])
            if not result["reads_as_policy"]:
                not_policies[name] = result["not_a_policy_because"]
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    wall_s, cpu_s = statistics.median(walls), statistics.median(cpus)
    n = len(encoded)
    figures = {
        "policies": n,
        "mean_chars": round(sum(len(documents[k]) for k, _ in encoded) / n) if n else 0,
        "rounds": len(walls),
        "wall_s": round(wall_s, 4),
        "cpu_s": round(cpu_s, 4),
        "policies_per_s": round(n / wall_s, 1) if wall_s else None,
        "policies_per_cpu_s": round(n / cpu_s, 1) if cpu_s else None,
        "read_as_policy": n - len(not_policies),
        "not_read_as_policy": not_policies,
    }
    return figures, covered


# ----------------------------------------------------------------------------- output


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _width(text: str) -> int:
    """Terminal columns of ``text``: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _is_number(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d.,]+|n/a|-", text))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """Plain-text table: first column and text left-aligned, numbers right-aligned."""
    cells = [[str(h) for h in headers], *[[str(v) for v in row] for row in rows]]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [i > 0 and all(_is_number(row[i]) for row in cells[1:]) for i in range(len(headers))]
    lines = []
    for number, row in enumerate(cells):
        parts = []
        for i, value in enumerate(row):
            pad = " " * (widths[i] - _width(value))
            parts.append(pad + value if numeric[i] else value + pad)
        lines.append(indent + "  ".join(parts).rstrip())
        if number == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def counts_table(counts: dict[str, Counts], with_tn: bool) -> str:
    headers = ["category", "gold", "pred", "TP", "FP", "FN"]
    headers += ["TN"] if with_tn else []
    headers += ["P", "R", "F1"]
    rows = []
    for category, cell in counts.items():
        row: list[Any] = [category, cell.gold, cell.predicted, cell.tp, cell.fp, cell.fn]
        row += [cell.tn] if with_tn else []
        row += [fmt(cell.precision), fmt(cell.recall), fmt(cell.f1)]
        rows.append(row)
    return table(headers, rows)


def heading(text: str, char: str = "=") -> str:
    return f"\n{text}\n{char * len(text)}"


# ----------------------------------------------------------------------------- benchmark


def bench_corpus(
    corpus: Corpus, detector: ClauseDetector, pack: Pack, rounds: int, folds: int, seed: int
) -> dict[str, Any]:
    """Scores and timings of one corpus; prints its tables as it goes."""
    print(heading(f"{corpus.title} ({corpus.language})"))
    print("label mapping (corpus label -> ectrust category):")
    print(table(["category", "corpus labels"], [[c, corpus.mapping[c]] for c in CATEGORIES]))
    for note in corpus.notes:
        print(f"  note: {note}")
    detectors, validation = fold_detectors(corpus, detector, folds, seed)
    print(f"  clause model: {validation}")

    predicted, seconds = predict_units(corpus, detectors)
    pairs = [(u.gold, p) for u, p in zip(corpus.units, predicted, strict=True)]
    counts = score(pairs, corpus.scored)
    seg_macro = macro_f1(counts)
    seg_base = always_yes(pairs, corpus.scored)
    result: dict[str, Any] = {
        "title": corpus.title,
        "language": corpus.language,
        "unit": corpus.unit,
        "units": len(corpus.units),
        "scored_categories": list(corpus.scored),
        "mapping": corpus.mapping,
        "notes": corpus.notes,
        "validation": validation,
        "segment_level": {
            "per_category": {c: v.as_dict() for c, v in counts.items()},
            "macro_f1": _round(seg_macro),
            "always_yes_macro_f1": _round(seg_base),
        },
        "classify_segment": {
            "units": len(corpus.units),
            "seconds": round(seconds, 4),
            "units_per_s": round(len(corpus.units) / seconds, 1) if seconds else None,
        },
    }
    print(heading(f"{corpus.title}: {corpus.unit} level ({len(corpus.units)} {corpus.unit}s)", "-"))
    print(counts_table(counts, with_tn=False))
    print(
        f"  macro-F1 over {len(corpus.scored)} categories: {fmt(seg_macro)}"
        f"   (always-yes baseline {fmt(seg_base)})"
    )

    if not corpus.has_policies:
        print(heading(f"{corpus.title}: policy level", "-"))
        print("  not available: the corpus does not mark which paragraphs belong to which policy.")
        result["policy_level"] = None
        result["throughput"] = None
        return result

    by_policy = policy_pairs(corpus, predicted)
    pol_pairs = list(by_policy.values())
    pol_counts = score(pol_pairs, corpus.scored)
    pol_macro = macro_f1(pol_counts)
    pol_base = always_yes(pol_pairs, corpus.scored)

    throughput, covered = time_documents(corpus.documents(), pack, rounds, detectors)
    doc_pairs = [(by_policy[p][0], covered[p]) for p in by_policy]
    doc_counts = score(doc_pairs, corpus.scored)
    doc_macro = macro_f1(doc_counts)

    print(heading(f"{corpus.title}: policy level ({len(pol_pairs)} policies)", "-"))
    print(counts_table(pol_counts, with_tn=True))
    print(
        f"  macro-F1 over {len(corpus.scored)} categories: {fmt(pol_macro)}"
        f"   (always-yes baseline {fmt(pol_base)})"
    )
    if pol_macro is not None and pol_base is not None and pol_macro <= pol_base + 0.02:
        print(
            "  caution: no better than answering yes for every category; on this corpus the "
            "policy level cannot tell a good detector from a trivial one."
        )
    print(
        f"  whole document through analyse_page(document_page(...)): macro-F1 {fmt(doc_macro)}"
        f"  [F1 per category: "
        + ", ".join(f"{c} {fmt(v.f1, 2)}" for c, v in doc_counts.items())
        + "]"
    )
    rejected = throughput["not_read_as_policy"]
    print(
        f"  read as a privacy policy (the discovery gate): {throughput['read_as_policy']} of "
        f"{throughput['policies']}"
        + "".join(f"\n    not: {name}: {why}" for name, why in sorted(rejected.items()))
    )
    result["policy_level"] = {
        "policies": len(pol_pairs),
        "per_category": {c: v.as_dict() for c, v in pol_counts.items()},
        "macro_f1": _round(pol_macro),
        "always_yes_macro_f1": _round(pol_base),
        "whole_document": {
            "per_category": {c: v.as_dict() for c, v in doc_counts.items()},
            "macro_f1": _round(doc_macro),
        },
    }
    result["throughput"] = throughput
    return result


def print_throughput(results: dict[str, dict[str, Any]], pinning: str) -> dict[str, Any]:
    print(heading("Throughput (one core)"))
    print(f"  {pinning}; analyse_page per policy: median of rounds")
    rows = []
    total_n, total_wall, total_cpu = 0, 0.0, 0.0
    for r in results.values():
        seg = r["classify_segment"]
        t = r["throughput"]
        if t:
            total_n += t["policies"]
            total_wall += t["wall_s"]
            total_cpu += t["cpu_s"]
        rows.append(
            [
                r["title"],
                t["policies"] if t else "-",
                t["mean_chars"] if t else "-",
                f"{t['wall_s']:.2f}" if t else "-",
                t["policies_per_s"] if t else "-",
                t["policies_per_cpu_s"] if t else "-",
                f"{seg['units']} {r['unit']}s",
                seg["units_per_s"],
            ]
        )
    headers = ["corpus", "policies", "mean chars", "wall s", "policies/s", "per CPU s"]
    print(table([*headers, "classify_segment on", "units/s"], rows))
    overall = {
        "policies": total_n,
        "wall_s": round(total_wall, 4),
        "policies_per_s": round(total_n / total_wall, 1) if total_wall else None,
        "policies_per_cpu_s": round(total_n / total_cpu, 1) if total_cpu else None,
    }
    if total_n:
        print(
            f"  all policies: {total_n} in {total_wall:.2f} s = "
            f"{overall['policies_per_s']} policies/s"
        )
    return overall


def print_targets(
    results: dict[str, dict[str, Any]], overall: dict[str, Any]
) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(name: str, target: float, value: float | None) -> None:
        met = None if value is None else value >= target
        checks.append({"target": name, "threshold": target, "measured": value, "met": met})

    for key, lang in (("capp", "zh"), ("opp", "en")):
        r = results.get(key)
        if r and r["policy_level"]:
            name = f"policy-level macro-F1 {lang} ({r['title']}) >= 0.90"
            check(name, TARGETS["policy_macro_f1"], r["policy_level"]["macro_f1"])
    for r in results.values():
        name = f"{r['unit']}-level macro-F1 ({r['title']}) >= 0.80"
        check(name, TARGETS["segment_macro_f1"], r["segment_level"]["macro_f1"])
    for r in results.values():
        if r["throughput"]:
            name = f"policies/s on one core ({r['title']}) >= 50"
            check(name, TARGETS["policies_per_s"], r["throughput"]["policies_per_s"])
    if overall["policies"]:
        check(
            "policies/s on one core (all) >= 50",
            TARGETS["policies_per_s"],
            overall["policies_per_s"],
        )

    print(heading("Targets from the issue"))
    rows = [
        [
            c["target"],
            fmt(c["measured"], 1 if c["threshold"] > 1 else 3),
            {True: "yes", False: "NO", None: "n/a"}[c["met"]],
        ]
        for c in checks
    ]
    print(table(["target", "measured", "met"], rows))
    print(
        "  English policy level = OPP-115 (APPCorp has no policy grouping). Throughput is "
        "judged on wall-clock time; the CPU-time figures above differ when other processes "
        "share the core."
    )
    return checks


def print_weakest(results: dict[str, dict[str, Any]], count: int = 3) -> dict[str, Any]:
    """Categories ranked by segment-level F1, averaged over each language's corpora."""
    print(heading("Weakest categories per language (segment-level F1)"))
    ranking: dict[str, Any] = {}
    for lang in ("zh", "en"):
        per: dict[str, dict[str, float]] = defaultdict(dict)
        for r in results.values():
            if r["language"] != lang:
                continue
            for category, cell in r["segment_level"]["per_category"].items():
                if cell["f1"] is not None:
                    per[category][r["title"]] = cell["f1"]
        if not per:
            continue
        ordered = sorted(per, key=lambda c: statistics.mean(per[c].values()))
        ranking[lang] = [
            {"category": c, "mean_f1": round(statistics.mean(per[c].values()), 4), **per[c]}
            for c in ordered
        ]
        rows = [
            [
                c,
                fmt(statistics.mean(per[c].values())),
                ", ".join(f"{t} {fmt(v)}" for t, v in per[c].items()),
                "<- weakest" if i < count else "",
            ]
            for i, c in enumerate(ordered)
        ]
        print(f"  {lang}:")
        print(table(["category", "mean F1", "per corpus", ""], rows, indent="    "))
    return ranking


def run_benchmark(args: argparse.Namespace) -> int:
    pinning = pin_to_one_core()
    pack = privacy_pack()
    detector = ClauseDetector.for_pack(pack)
    corpora_dir = Path(args.corpora).resolve()
    print(f"ectrust clause benchmark — pack {pack.id} {pack.version}, corpora {corpora_dir}")
    results: dict[str, dict[str, Any]] = {}
    for key in args.corpus or CORPUS_KEYS:
        corpus = LOADERS[key](corpora_dir)
        results[key] = bench_corpus(corpus, detector, pack, args.rounds, args.folds, args.seed)
    overall = print_throughput(results, pinning)
    weakest = print_weakest(results)
    checks = print_targets(results, overall)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else OUT_DIR / f"clauses-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "generated": stamp,
        "corpora_dir": str(corpora_dir),
        "pack": {"id": pack.id, "version": pack.version, "sha256": pack.sha256},
        "python": platform.python_version(),
        "cpu": pinning,
        "targets": TARGETS,
        "corpora": results,
        "throughput_all": overall,
        "weakest_categories": weakest,
        "target_check": checks,
    }
    out.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"\nfigures written to {out}")
    return 0


def _truncate(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run_errors(args: argparse.Namespace) -> int:
    """Sample false negatives and false positives of one category in one corpus."""
    category = args.errors
    if category not in CATEGORIES:
        raise BenchError(
            f"--errors: unknown category {category!r} (one of {', '.join(CATEGORIES)})"
        )
    if not args.corpus or len(args.corpus) != 1:
        raise BenchError("--errors needs exactly one --corpus (capp, opp or appcorp)")
    corpus = LOADERS[args.corpus[0]](Path(args.corpora).resolve())
    if category not in corpus.scored:
        raise BenchError(f"{corpus.title} does not score {category}: {corpus.mapping[category]}")
    detector = ClauseDetector.for_pack(privacy_pack())
    pattern = detector.patterns.get(category)
    detectors, _ = fold_detectors(corpus, detector, args.folds, args.seed)
    predicted, _ = predict_units(corpus, detectors)
    pairs = list(zip(corpus.units, predicted, strict=True))
    misses = [u for u, p in pairs if category in u.gold - p]
    extras = [u for u, p in pairs if category in p - u.gold]
    rng = random.Random(args.seed)

    def sample(units: list[Unit]) -> list[Unit]:
        """Up to --limit of ``units``, spread over the corpus, in corpus order."""
        if len(units) <= args.limit:
            return units
        chosen = set(rng.sample(range(len(units)), args.limit))
        return [u for i, u in enumerate(units) if i in chosen]

    print(f"{corpus.title}: {category} = {corpus.mapping[category]}")
    title = f"false negatives (labelled {category}, not detected): {len(misses)}"
    print(heading(f"{title}, showing {min(len(misses), args.limit)}", "-"))
    for unit in sample(misses):
        print(f"- [{unit.ref}] {_truncate(unit.text)}")
    title = f"false positives (detected {category}, not labelled): {len(extras)}"
    print(heading(f"{title}, showing {min(len(extras), args.limit)}", "-"))
    for unit in sample(extras):
        hit = ""
        for sentence in sentences(unit.text):  # the sentence the detector fired on
            if pattern is not None and category in detector.classify(sentence):
                match = pattern.search(sentence)
                hit = f' matched "{match.group(0)}"' if match else ""
                break
        labels = ", ".join(unit.labels) or "no label"
        print(f"- [{unit.ref}; {labels};{hit}] {_truncate(unit.text)}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure ectrust's privacy clause detector on the labelled corpora."
    )
    parser.add_argument(
        "--corpora",
        default=str(DEFAULT_CORPORA),
        help="folder holding capp130/, opp115/ and appcorp_en/ (default ../shared/corpora)",
    )
    parser.add_argument(
        "--corpus",
        action="append",
        choices=CORPUS_KEYS,
        help="only this corpus (repeatable); exactly one with --errors",
    )
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (median counts)")
    parser.add_argument("--out", help="JSON output file (default bench/out/clauses-<time>.json)")
    parser.add_argument(
        "--errors",
        metavar="CATEGORY",
        help="print false negatives and false positives of CATEGORY instead of the benchmark",
    )
    parser.add_argument("--limit", type=int, default=15, help="examples per list for --errors")
    parser.add_argument(
        "--seed", type=int, default=1, help="seed for --errors sampling and the fold split"
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=2,
        help="cross-validation folds for the trained clause model on CAPP-130 (each fold "
        "trains a model, about a minute; 1 scores the shipped model, trained on these very "
        "policies: not a fair figure)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run_errors(args) if args.errors else run_benchmark(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head, less …: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
