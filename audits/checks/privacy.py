"""Finding the privacy policy like a customer would, and which clauses it covers.

The policy is found once per site (cached on the SiteView) and shared by
``privacy.policy_present``, the ten ``privacy.clause.*`` rules and the audit's
``privacy_policy`` summary. A page counts as a policy only if it reads as one: enough text
speaking of several clause categories, so a privacy-tips blog post or a login page is not
mistaken for one.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import regex

from audits.checks.base import Outcome, check_type, compile_patterns, excerpt, search
from audits.clausemodel import ClauseModel, load_model
from audits.vocabulary import CLAUSE_CATEGORIES

if TYPE_CHECKING:
    from audits.pages import Page, SiteView
    from audits.rulepack import Pack, Rule

CATEGORIES = CLAUSE_CATEGORIES
# the standard library's engine splits on look-behinds four times faster than ``regex``
SENTENCE_END = re.compile(r"(?<=[。！？；!?;])\s*|(?<=[.])\s+(?=[A-Z0-9\"“(])|\n+")
CJK = regex.compile(r"\p{Han}")
NOT_HAN = regex.compile(r"\P{Han}+")
HEADING_MAX_CHARS = 16  # a line this short is a heading, not a statement about the clause


def sentences(text: str) -> list[str]:
    """Sentences of a policy text, Chinese and English punctuation alike."""
    out = []
    for part in SENTENCE_END.split(text):
        part = " ".join(part.split())
        if part:
            out.append(part)
    return out


@lru_cache(maxsize=16384)
def han_count(sentence: str) -> int:
    """Han characters in a sentence (asked several times per sentence: cached)."""
    return len(NOT_HAN.sub("", sentence))


def is_chinese(sentence: str) -> bool:
    """Mostly Han characters (a Chinese sentence may name "Cookie" or "App")."""
    han = han_count(sentence)
    return han >= 4 and han * 2 >= len(sentence.replace(" ", ""))


def is_statement(sentence: str) -> bool:
    """Says something, rather than naming a section: a bare heading like "Cookie 政策" or
    "Cookies" does not count. Headings are short and rarely end in sentence punctuation."""
    punctuated = sentence.rstrip()[-1:] in "。！？；.!?;:："
    han = han_count(sentence)
    if han:
        return han > HEADING_MAX_CHARS // 2 or (punctuated and han >= 5)
    words = len(sentence.split())
    return words >= 6 or (punctuated and words >= 3)


@dataclass
class ClauseDetector:
    """The clause patterns of a pack, applied sentence by sentence.

    Patterns are matched per sentence, but a document's sentences are scanned as one
    newline-joined text with one search per *matching* sentence rather than one per
    sentence and category: on a 15,000-character policy that is a few hundred regex calls
    instead of several thousand. ``MULTILINE`` makes ``^``/``$`` mean sentence start/end, and
    a match that runs across a sentence boundary is re-checked on its own sentence, so the
    result is the same as matching each sentence alone."""

    patterns: dict[str, regex.Pattern[str]]
    # For sentences in its language, the model decides the categories it was trained on;
    # the patterns decide the others (cookies has no CAPP-130 label) and other languages.
    model: ClauseModel | None = None
    model_categories: frozenset[str] = frozenset()  # what the model decides

    @classmethod
    def for_pack(cls, pack: Pack) -> ClauseDetector:
        """The detector of a pack's ``clauses:`` (built once per distinct set of patterns)."""
        key = (
            pack.id,
            json.dumps(pack.clauses, sort_keys=True),
            pack.clause_model.get("sha256", ""),
        )
        if key not in _DETECTORS:
            _DETECTORS[key] = cls._build(pack)
        return _DETECTORS[key]

    @classmethod
    def _build(cls, pack: Pack) -> ClauseDetector:
        compiled = {c: compile_patterns(p) for c, p in pack.clauses.items()}
        model = load_model(pack.clause_model["path"]) if pack.clause_model.get("path") else None
        detector = cls({c: p for c, p in compiled.items() if p is not None}, model)
        if model is not None:
            wanted = pack.clause_model.get("categories") or model.categories
            detector.model_categories = frozenset(wanted) & frozenset(model.categories)
        # English patterns are scanned one by one: in a large case-insensitive alternation
        # the regex engine loses its literal-prefix shortcuts (measured 2.5 times slower on
        # English policies). Chinese patterns stay together: Chinese policies have many short
        # sentences, so the number of scans matters more there than the cost of one.
        flags = regex.IGNORECASE | regex.MULTILINE | regex.V0
        detector._parts = {}
        for c in detector.patterns:
            chinese = [x for x in pack.clauses[c] if x and CJK.search(x)]
            other = [x for x in pack.clauses[c] if x and not CJK.search(x)]
            parts = [regex.compile(f"(?:{x})", flags) for x in other]
            if chinese:
                parts.insert(0, regex.compile("|".join(f"(?:{x})" for x in chinese), flags))
            detector._parts[c] = parts
        return detector

    def __post_init__(self) -> None:
        self._parts: dict[str, list[regex.Pattern[str]]] = {
            c: [regex.compile(p.pattern, p.flags | regex.MULTILINE)]
            for c, p in self.patterns.items()
        }

    def classify(self, sentence: str) -> list[str]:
        return self.classify_many([sentence])[0]

    def classify_many(
        self, items: Sequence[str], titles: Sequence[str] | None = None
    ) -> list[list[str]]:
        """Categories of each sentence (in CATEGORIES order); non-statements get none.
        ``titles``: the section title each sentence stands under (default: read from
        ``items`` as one document, see ``section_titles``)."""
        index = [i for i, s in enumerate(items) if "\n" not in s and is_statement(s)]
        hits: list[set[str]] = [set() for _ in items]
        if self.model is None:
            self._match(items, index, self._parts, hits)
        else:
            # the model decides its categories for Chinese sentences: the patterns of those
            # categories need not run there
            known = self.model_categories
            chinese, other = [], []
            for i in index:
                (chinese if is_chinese(items[i]) else other).append(i)
            self._match(items, other, self._parts, hits)
            rest = {c: parts for c, parts in self._parts.items() if c not in known}
            self._match(items, chinese, rest, hits)
            if chinese:
                if titles is None:
                    titles = section_titles(items)
                predicted = self.model.predict(
                    [items[i] for i in chinese], [titles[i] for i in chinese]
                )
                for i, categories in zip(chinese, predicted, strict=True):
                    hits[i].update(c for c in categories if c in known)
        return [[c for c in CATEGORIES if c in found] if found else [] for found in hits]

    def _match(
        self,
        items: Sequence[str],
        index: list[int],
        parts_by_category: dict[str, list[regex.Pattern[str]]],
        hits: list[set[str]],
    ) -> None:
        """Pattern hits of the sentences ``items[i] for i in index``, scanned as one text."""
        if not index or not parts_by_category:
            return
        text = "\n".join(items[i] for i in index)
        starts = [0]
        for i in index[:-1]:
            starts.append(starts[-1] + len(items[i]) + 1)
        for category, parts in parts_by_category.items():
            for part in parts:
                self._scan(part, category, text, starts, index, items, hits)

    @staticmethod
    def _scan(
        part: regex.Pattern[str],
        category: str,
        text: str,
        starts: list[int],
        index: list[int],
        items: Sequence[str],
        hits: list[set[str]],
    ) -> None:
        pos = 0
        while pos < len(text):
            match = search(part, text, pos)
            if match is None:
                return
            k = bisect_right(starts, match.start()) - 1
            end_of_k = starts[k] + len(items[index[k]])
            # a match running past the sentence's end is re-checked on the sentence alone
            if match.end() <= end_of_k or search(part, items[index[k]]):
                hits[index[k]].add(category)
            pos = end_of_k + 1

    def analyse(self, text: str, max_evidence: int = 3) -> dict[str, list[str]]:
        """category -> up to ``max_evidence`` sentences that show it ([] when not covered).

        A heading-like line ("三、我们如何共享…") counts only when its section says
        something (a full sentence follows before the next heading); it is quoted after the
        full sentences, which make better evidence."""
        return self.analyse_sentences(sentences(text), max_evidence)

    def analyse_sentences(
        self, items: Sequence[str], max_evidence: int = 3
    ) -> dict[str, list[str]]:
        return self.read(items, max_evidence).clauses

    def read(
        self,
        items: Sequence[str],
        max_evidence: int = 3,
        voice: regex.Pattern[str] | None = None,
    ) -> Reading:
        """Evidence per category, and which categories some sentence in ``voice`` (the
        operator speaking: "we", "本平台") speaks of."""
        voiced: set[str] = set()
        strong: dict[str, list[str]] = {c: [] for c in CATEGORIES if c in self.patterns}
        weak: dict[str, list[str]] = {c: [] for c in strong}
        heading = [looks_like_heading(s) for s in items]
        title = [looks_like_title(s) for s in items]
        # has_content[i]: something other than a title follows line i before the next title,
        # so a table of contents or an empty section does not count
        has_content = [False] * len(items)
        seen_content = False
        for i in range(len(items) - 1, -1, -1):
            has_content[i] = seen_content
            seen_content = not title[i]
        for i, categories in enumerate(self.classify_many(items, section_titles(items, title))):
            if title[i] and not has_content[i]:
                continue
            bucket = weak if heading[i] else strong
            if voice is not None and categories and search(voice, items[i]):
                voiced.update(categories)
            for category in categories:
                if len(bucket[category]) < max_evidence:
                    bucket[category].append(excerpt(items[i], width=300))
        return Reading({c: (strong[c] + weak[c])[:max_evidence] for c in strong}, voiced)


@dataclass
class Reading:
    clauses: dict[str, list[str]]  # category -> evidence sentences ([] when not covered)
    voiced: set[str]  # categories spoken of in the operator's voice

    @property
    def covered(self) -> int:
        return sum(1 for quotes in self.clauses.values() if quotes)


def reads_as_policy(reading: Reading, text: str, cfg: dict[str, Any]) -> str | None:
    """None when a text reads as a privacy policy under a pack's ``policy:`` settings, else
    the reason it does not."""
    min_categories = cfg.get("min_categories", 4)
    min_voiced = cfg.get("min_voiced_categories", 0)
    if len(text) < cfg.get("min_chars", 200) or reading.covered < min_categories:
        return (
            f"does not read as a privacy policy ({reading.covered} of {len(CATEGORIES)} clause "
            f"categories, {len(text)} characters)"
        )
    if len(reading.voiced) < min_voiced:
        return (
            "speaks about privacy policies rather than as one (the site commits itself on "
            f"{len(reading.voiced)} clause categories, {min_voiced} needed)"
        )
    return None


_DETECTORS: dict[tuple[str, str, str], ClauseDetector] = {}

HEADING_START = regex.compile(
    r"^\s*(?:[一二三四五六七八九十]+[、.．]|[(（][一二三四五六七八九十\d]+[)）]|\d+(?:\.\d+)*[、.．\s])"
)


def looks_like_title(sentence: str) -> bool:
    """A section title: unpunctuated, and numbered or short."""
    if sentence.rstrip()[-1:] in "。！？；.!?;:：":
        return False
    if HEADING_START.match(sentence):
        return True
    han = han_count(sentence)
    return han <= 20 if han else len(sentence.split()) <= 10


def section_titles(items: Sequence[str], is_title: Sequence[bool] | None = None) -> list[str]:
    """For each line, the latest section title above it ("" before the first).
    ``is_title``: ``looks_like_title`` of each line, when the caller has it."""
    if is_title is None:
        is_title = [looks_like_title(item) for item in items]
    out, current = [], ""
    for item, title in zip(items, is_title, strict=True):
        out.append(current)
        if title:
            current = item
    return out


def looks_like_heading(sentence: str) -> bool:
    """Numbered section titles, and lines that end without sentence punctuation."""
    return bool(HEADING_START.match(sentence)) or sentence.rstrip()[-1:] not in "。！？；.!?;"


# Snapshot reasons of pages no customer click leads to (see crawler/spiders/site_audit.py).
LAST_RESORT = {"sitemap": "sitemap.xml", "common_path": "a common address"}


@dataclass
class PolicyResult:
    page: Page | None = None
    clauses: dict[str, list[str]] = field(default_factory=dict)
    link: dict[str, Any] | None = None
    status: str = "fail"
    message: str = ""
    rejected: list[dict[str, Any]] = field(default_factory=list)
    parts: list[Page] = field(default_factory=list)  # a policy split over several pages
    quote_urls: dict[str, str] = field(default_factory=dict)  # quote -> its page, when split

    @property
    def clicks_from_home(self) -> int | None:
        if self.page is None or self.page.reason in LAST_RESORT:
            return None
        return self.page.depth


def _link_to(site: SiteView, page: Page) -> dict[str, Any] | None:
    """The link that led to ``page`` (on its referrer), for the evidence."""
    if page.referrer is None:
        return None
    referrer = site.page_for(page.referrer)
    if referrer is not None:
        for link in referrer.links:
            if link.url in (page.url, page.final_url):
                return {
                    "url": referrer.final_url,
                    "excerpt": link.text[:160],
                    "selector": link.selector,
                    "href": link.url,
                }
    return {"url": page.referrer, "excerpt": page.link_text[:160]}


def find_policy(site: SiteView, pack: Pack) -> PolicyResult:
    key = f"privacy_policy:{pack.id}"
    if key not in site.cache:
        site.cache[key] = _find_policy(site, pack)
    return site.cache[key]


def _find_policy(site: SiteView, pack: Pack) -> PolicyResult:
    cfg = pack.policy
    link_text = compile_patterns(cfg.get("link_text", []))
    link_href = compile_patterns(cfg.get("link_href", []))
    title = compile_patterns(cfg.get("title", []))
    decoy = compile_patterns(cfg.get("decoy", []))
    min_categories = cfg.get("min_categories", 4)
    voice = compile_patterns(cfg.get("voice", []))
    detector = ClauseDetector.for_pack(pack)

    candidates = []
    for page in site.pages:
        by_link = bool(search(link_text, page.link_text) or search(link_href, page.url))
        by_title = page.is_html and bool(search(title, page.title))
        if by_link or by_title:
            candidates.append(page)
    result = PolicyResult()
    best: tuple[tuple[bool, int, int], Page, dict[str, list[str]]] | None = None
    fragments: list[tuple[Page, Reading]] = []  # policy-like pages too thin on their own
    for page in candidates:
        if page.reason in LAST_RESORT and not page.ok:
            continue  # a guessed address that does not exist says nothing
        reason = None
        if not page.ok:
            reason = f"not fetched: {page.error or page.status}"
        elif "pdf" in page.content_type:
            reason = "served as PDF (not analysed)"
        elif not page.is_html:
            reason = f"not an HTML page ({page.content_type or 'unknown type'})"
        if reason is not None:
            result.rejected.append(
                {
                    "url": page.url,
                    "excerpt": page.link_text[:160],
                    "note": reason,
                    "depth": page.depth,
                }
            )
            continue
        reading = detector.read(sentences(page.main_text), voice=voice)
        clauses, covered = reading.clauses, reading.covered
        heading = f"{page.title} {page.link_text}"
        problem = reads_as_policy(reading, page.main_text, cfg)
        decoy_like = decoy is not None and bool(search(decoy, heading))
        if problem is None and decoy_like and covered < min_categories + 2:
            problem = f"reads like {heading.strip()[:60]!r}, not a privacy policy"
        if problem is not None:
            result.rejected.append(
                {
                    "url": page.final_url,
                    "excerpt": (page.link_text or page.title)[:160],
                    "note": problem,
                    "depth": page.depth,
                }
            )
            if reading.voiced and not decoy_like and page.reason not in LAST_RESORT:
                fragments.append((page, reading))
            continue
        # a page a customer can click to beats one found only by the last resort
        rank = (page.reason in LAST_RESORT, -covered, page.depth)
        if best is None or rank < best[0]:
            best = (rank, page, clauses)
    if best is not None:
        page, clauses = best[1], best[2]
        result.page, result.clauses, result.status = page, clauses, "pass"
        covered = sum(1 for v in clauses.values() if v)
        if page.reason in LAST_RESORT:
            result.status = "warn"
            result.message = (
                f"a privacy policy exists at {page.final_url} but no link on the site leads "
                f"to it within two clicks of the homepage (found through "
                f"{LAST_RESORT[page.reason]}); speaks of {covered} of {len(CATEGORIES)} "
                "clause categories"
            )
            return result
        result.link = _link_to(site, page)
        result.message = (
            f"privacy policy at {page.final_url}, {page.depth} click(s) from the "
            f"homepage; speaks of {covered} of {len(CATEGORIES)} clause categories"
        )
        return result
    split = _split_policy(fragments, cfg)
    if split is not None:
        pages, clauses, result.quote_urls = split
        result.page, result.clauses, result.status = pages[0], clauses, "warn"
        result.parts = pages
        result.link = _link_to(site, pages[0])
        covered = sum(1 for v in clauses.values() if v)
        result.message = (
            f"the privacy policy appears split over {len(pages)} pages "
            f"({', '.join(p.final_url for p in pages[:5])}); no single page reads as a "
            f"policy, together they speak of {covered} of {len(CATEGORIES)} clause "
            "categories: an evaluator should confirm they form one policy"
        )
        return result
    fetch_problems = [
        r for r in result.rejected if r["note"].startswith(("not fetched", "served as PDF"))
    ]
    if fetch_problems:
        result.status = "review" if fetch_problems[0]["note"].startswith("not fetched") else "warn"
        result.message = (
            f"a privacy policy link was found but could not be read: {fetch_problems[0]['note']}"
        )
    elif result.rejected:
        result.message = "links that look like a privacy policy lead to pages that are not one"
    else:
        result.message = "no privacy policy link found within two clicks of the homepage"
    return result


def _split_policy(
    fragments: list[tuple[Page, Reading]], cfg: dict[str, Any]
) -> tuple[list[Page], dict[str, list[str]], dict[str, str]] | None:
    """Pages that each speak, in the site's voice, of part of what a policy covers and
    together read as one (a policy split into chapters): the pages, by clicks from the
    homepage, and the evidence of their union."""
    if len(fragments) < 2:
        return None
    fragments = sorted(fragments, key=lambda f: (f[0].depth, f[0].final_url))
    clauses: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    quote_urls: dict[str, str] = {}
    voiced: set[str] = set()
    for page, reading in fragments:
        voiced |= reading.voiced
        for category, quotes in reading.clauses.items():
            clauses[category] = (clauses[category] + quotes)[:3]
            for quote in quotes:
                quote_urls.setdefault(quote, page.final_url)
    union = Reading(clauses, voiced)
    text = "\n".join(page.main_text for page, _ in fragments)
    if reads_as_policy(union, text, cfg) is not None:
        return None
    return [page for page, _ in fragments], clauses, quote_urls


@check_type("privacy_policy")
def privacy_policy(site: SiteView, rule: Rule, params: dict[str, Any]) -> Outcome:
    """A privacy policy a customer can find (within two clicks) that reads as a policy."""
    found = find_policy(site, rule.pack)
    evidence: list[dict[str, Any]] = []
    data: dict[str, Any] = {}
    if found.page is not None:
        if found.link:
            evidence.append(found.link)
        evidence.append(
            {
                "url": found.page.final_url,
                "excerpt": found.page.title[:160],
                "clicks_from_home": found.clicks_from_home,
            }
        )
        data = {
            "url": found.page.final_url,
            "clicks_from_home": found.clicks_from_home,
            "found_by": found.page.reason if found.page.reason in LAST_RESORT else "link",
        }
        if found.parts:
            data["split_over"] = [part.final_url for part in found.parts]
            evidence.extend(
                {"url": part.final_url, "excerpt": part.title[:160]} for part in found.parts[1:]
            )
    else:
        evidence.extend(found.rejected[:3])
    return Outcome(found.status, found.message, evidence, data)


@check_type("privacy_clause", category={"enum": list(CATEGORIES)})
def privacy_clause(site: SiteView, rule: Rule, params: dict[str, Any]) -> Outcome:
    """Whether the site's privacy policy speaks of one clause category, with the sentences
    that show it. "We do not share …" still speaks of sharing; a heading alone does not."""
    category = params["category"]
    found = find_policy(site, rule.pack)
    if found.page is None:
        status = "fail" if found.status == "fail" else found.status
        return Outcome(
            status, f"no readable privacy policy, so nothing on {category}: {found.message}"
        )
    quotes = found.clauses.get(category, [])
    if not quotes:
        return Outcome(
            "fail",
            f"the privacy policy at {found.page.final_url} says nothing about {category}",
            [{"url": found.page.final_url, "excerpt": ""}],
        )
    return Outcome(
        "pass",
        f"{len(quotes)} sentence(s) on {category}",
        [{"url": found.quote_urls.get(q, found.page.final_url), "excerpt": q} for q in quotes],
    )
