"""The privacy-policy detector for analysts: one document, or a stream of sentences.

The same detector the audits use (the bundled ``privacy`` pack's clause patterns, see
audits/checks/privacy.py), exposed by ``ectrust policy analyze`` and ``ectrust policy
classify``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from audits.checks.base import compile_patterns
from audits.checks.privacy import (
    CATEGORIES,
    ClauseDetector,
    is_chinese,
    looks_like_title,
    reads_as_policy,
    section_titles,
    sentences,
)
from audits.pages import Page, decode_body
from audits.rulepack import Pack, load_rules


class PolicyInputError(ValueError):
    """Input an analyst gave that cannot be read."""


def privacy_pack(pack_id: str = "privacy") -> Pack:
    for pack in load_rules().packs:
        if pack.id == pack_id:
            return pack
    raise PolicyInputError(f"no rule pack {pack_id!r} with clause patterns")


def classify_segment(detector: ClauseDetector, text: str, title: str = "") -> list[str]:
    """Categories of a sentence or paragraph: the union over its sentences, each read under
    ``title`` or the latest title line before it in the paragraph."""
    items = sentences(text)
    titles = []
    for item in items:
        titles.append(title)
        if looks_like_title(item):
            title = item
    found = {c for cats in detector.classify_many(items, titles) for c in cats}
    return [c for c in CATEGORIES if c in found]


def classify_lines(
    lines: Iterable[str], detector: ClauseDetector, context: bool = True
) -> Iterator[dict[str, Any]]:
    """JSON lines ``{"id", "text"}`` in, ``{"id", "categories"}`` out (CONTRACT.md). With
    ``context`` the lines are one policy in order: each is read under the latest section
    title seen before it."""
    title = ""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text = item["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise PolicyInputError(
                f'line {number}: expected a JSON object with "id" and "text" ({exc})'
            ) from exc
        if not isinstance(text, str):
            raise PolicyInputError(f'line {number}: "text" must be a string')
        yield {"id": item.get("id"), "categories": classify_segment(detector, text, title)}
        if context:
            for sentence in sentences(text):
                if looks_like_title(sentence):
                    title = sentence


def document_page(body: bytes, source: str, content_type: str | None = None) -> Page:
    """A document as a Page: HTML is parsed; anything else is read as plain text."""
    head = body[:2048].lower()
    is_html = (content_type or "").startswith(("text/html", "application/xhtml")) or (
        b"<html" in head or b"<body" in head or b"<p" in head or b"<div" in head
    )
    if not is_html:
        text, _ = decode_body(body, content_type or "text/plain")
        paragraphs = "".join(f"<p>{_escape(line)}</p>" for line in text.splitlines())
        body = f"<html><body>{paragraphs}</body></html>".encode()
        content_type = "text/html; charset=utf-8"
    return Page(
        url=source,
        final_url=source,
        status=200,
        depth=0,
        reason="analyze",
        link_text="",
        referrer=None,
        error=None,
        headers={"content-type": [content_type or "text/html"]},
        body=body,
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _explanation(
    detector: ClauseDetector, units: list[str], category: str, quotes: list[str]
) -> dict[str, Any]:
    """For a category the clause model decided: the n-grams behind its first quote."""
    model = detector.model
    if not quotes:
        return {}
    quote = quotes[0].removesuffix("…")
    sentence = next((u for u in units if u.startswith(quote)), None)
    if (
        model is None
        or category not in detector.model_categories
        or sentence is None
        or not is_chinese(sentence)
    ):
        return {"decided_by": "patterns"}
    titles = dict(zip(units, section_titles(units), strict=True))
    why = model.explain(sentence, titles[sentence], category)
    return {"decided_by": "model", "model_ngrams": [[text, share] for text, share in why]}


def analyse_page(page: Page, pack: Pack, detector: ClauseDetector | None = None) -> dict[str, Any]:
    """The ``policy analyze`` document of one page. ``detector`` defaults to the pack's own
    (the benchmark passes one whose model never saw the page)."""
    detector = detector or ClauseDetector.for_pack(pack)
    text = page.main_text
    units = sentences(text)
    reading = detector.read(units, voice=compile_patterns(pack.policy.get("voice", [])))
    clauses = reading.clauses
    covered = [c for c, quotes in clauses.items() if quotes]
    problem = reads_as_policy(reading, text, pack.policy)
    return {
        "source": page.final_url,
        "title": page.title,
        "encoding": page.encoding,
        "characters": len(text),
        "sentences": len(units),
        "reads_as_policy": problem is None,
        "not_a_policy_because": problem,
        "categories_covered": len(covered),
        "clauses": {
            c: {
                "covered": bool(clauses.get(c)),
                "evidence": clauses.get(c, []),
                **_explanation(detector, units, c, clauses.get(c, [])),
            }
            for c in CATEGORIES
        },
    }
