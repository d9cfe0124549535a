"""Train the Chinese clause model shipped in rules/models/ from CAPP-130 (CC BY 4.0).

Only CAPP-130 may train anything the project ships (OPP-115 and APPCorp are for
measurement only). Each policy is read the way the detector reads a document: its sentences
in order, each under the latest section title above it (``section_titles``), and labelled
with the CAPP-130 labels mapped to ectrust's categories (the mapping of bench/clauses.py).
How well this generalises is measured by ``bench/clauses.py``, which trains the same way on
half of the policies and scores the other half, never on the policies it trained on.

Usage::

    pip install -e '.[dev]'      # scikit-learn, used for training only
    python bench/train_clause_model.py [--corpora DIR] [--out rules/models/clauses-zh-capp130.npz]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import clauses as corpora  # noqa: E402

from audits.checks.privacy import section_titles  # noqa: E402
from audits.clausemodel import ClauseModel, train  # noqa: E402

DEFAULT_OUT = REPO / "rules" / "models" / "clauses-zh-capp130.npz"


def training_rows(
    corpus: corpora.Corpus, policies: list[str]
) -> tuple[list[str], list[str], list[set[str]]]:
    """Sentences, their section titles and their categories, policy by policy."""
    by_policy = corpus.policies()
    sentences: list[str] = []
    titles: list[str] = []
    labels: list[set[str]] = []
    for name in policies:
        items = [unit.text for unit in by_policy[name]]
        sentences += items
        titles += section_titles(items)
        labels += [set(unit.gold) for unit in by_policy[name]]
    return sentences, titles, labels


def train_on(corpus: corpora.Corpus, policies: list[str], source: dict[str, str]) -> ClauseModel:
    sentences, titles, labels = training_rows(corpus, policies)
    return train(sentences, titles, labels, list(corpus.scored), source)


def source_note(root: Path) -> dict[str, str]:
    note = (root / "capp130" / "SOURCE.md").read_text(encoding="utf-8")
    return {
        "corpus": "CAPP-130 (Chinese app privacy policies, sentence-level labels)",
        "licence": "CC BY 4.0",
        "provenance": " ".join(note.split())[:600],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", type=Path, default=corpora.DEFAULT_CORPORA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    root = args.corpora.resolve()
    corpus = corpora.load_capp(root)
    policies = sorted(corpus.policies())
    started = time.perf_counter()
    model = train_on(corpus, policies, source_note(root))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    print(
        f"trained on {len(policies)} CAPP-130 policies in {time.perf_counter() - started:.0f} s: "
        f"{len(model.keys)} features x {len(model.categories)} categories "
        f"({', '.join(model.categories)}) -> {args.out} ({args.out.stat().st_size // 1024} KB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
