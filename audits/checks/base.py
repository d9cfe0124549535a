"""The contract between rules and check types.

A check type is a pure function ``(site, rule) -> Outcome`` over stored snapshots: no
network, no clock, no database. Rules name a check type and give its parameters; each type
declares a JSON schema for those parameters so a rule file is validated before it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import regex

if TYPE_CHECKING:
    from audits.pages import Page, SiteView
    from audits.rulepack import Rule

STATUSES = ("pass", "fail", "warn", "review", "error", "not_applicable")
# Hostile text must not make a rule pattern run away (RELIABILITY.md T39).
REGEX_TIMEOUT_S = 0.5


class RuleTimeout(Exception):
    """A rule pattern took too long on some page text."""


@dataclass
class Outcome:
    status: str
    message: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # structured results (policy, badge)


CheckFn = Callable[["SiteView", "Rule", dict[str, Any]], Outcome]


@dataclass(frozen=True)
class CheckType:
    name: str
    params_schema: dict[str, Any]
    run: CheckFn
    doc: str


CHECKS: dict[str, CheckType] = {}

PATTERNS = {"type": "array", "items": {"type": "string", "minLength": 1}}


def check_type(name: str, **properties: Any) -> Callable[[CheckFn], CheckFn]:
    """Register a check type; ``properties`` is the JSON schema of its parameters."""
    required = [k.rstrip("_") for k in properties if not k.endswith("_")]
    schema = {
        "type": "object",
        "properties": {
            "type": {"const": name},
            **{k.rstrip("_"): v for k, v in properties.items()},
        },
        "required": ["type", *required],
        "additionalProperties": False,
    }

    def register(fn: CheckFn) -> CheckFn:
        CHECKS[name] = CheckType(name, schema, fn, (fn.__doc__ or "").strip())
        return fn

    return register


def compile_patterns(patterns: Iterable[str]) -> regex.Pattern[str] | None:
    """One case-insensitive alternation of a rule's patterns (regex syntax)."""
    items = tuple(p for p in patterns if p)
    if not items:
        return None
    return _alternation(items)


@lru_cache(maxsize=1024)
def _alternation(items: tuple[str, ...]) -> regex.Pattern[str]:
    # Checks compile their rule's patterns on every site: built once (the regex module's
    # own cache lookup costs about as much as a search).
    return regex.compile("|".join(f"(?:{p})" for p in items), regex.IGNORECASE | regex.V0)


def search(pattern: regex.Pattern[str] | None, text: str, pos: int = 0) -> regex.Match[str] | None:
    if pattern is None or not text:
        return None
    try:
        return pattern.search(text, pos, timeout=REGEX_TIMEOUT_S)
    except TimeoutError as exc:
        raise RuleTimeout(f"pattern {pattern.pattern[:80]!r} exceeded {REGEX_TIMEOUT_S}s") from exc


# Pattern syntax whose result on one line can differ inside a longer text: negative
# lookarounds, text anchors, inline flags and named or other extension groups, verbs, and
# possessive quantifiers (``\s*+`` may swallow the line end and then fail where the line
# alone matched). A false alarm only costs speed: the line-by-line search.
_CONTEXT_SYNTAX = regex.compile(r"\\[AZzGK]|\(\?(?![:=]|<=)|\(\*|[*+?}]\+")
_LINE_FLAGS = regex.IGNORECASE | regex.UNICODE | regex.MULTILINE | regex.DOTALL | regex.V0
_LINE_PATTERNS: dict[regex.Pattern[str], regex.Pattern[str] | None] = {}
PREFILTER_TIMEOUT_S = 0.05


def _line_pattern(pattern: regex.Pattern[str]) -> regex.Pattern[str] | None:
    if pattern not in _LINE_PATTERNS:
        if len(_LINE_PATTERNS) >= 1024:  # rule files are few; never grow without bound
            _LINE_PATTERNS.clear()
        safe = not pattern.flags & ~_LINE_FLAGS and not _CONTEXT_SYNTAX.search(pattern.pattern)
        _LINE_PATTERNS[pattern] = (
            regex.compile(pattern.pattern, pattern.flags | regex.MULTILINE) if safe else None
        )
    return _LINE_PATTERNS[pattern]


def lines_to_search(pattern: regex.Pattern[str] | None, text: str) -> list[int] | None:
    """Which lines of ``text`` (``text.split("\n")``) ``search(pattern, line)`` may match,
    from one search of the whole text instead of one per line; None when that cannot tell
    (search every line then).

    The whole-text search uses ``^``/``$`` at line ends (MULTILINE) and finds a match
    wherever a line alone has one, only perhaps longer (running on into the next line) or
    more: a line's surroundings can only add matches when the pattern has no negative
    lookaround, text anchor, inline flag or other extension group (those fall back). Every
    line a match touches is returned, so a line whose own match lies inside a longer one is
    not lost; the caller searches these lines one by one as before, so its results are the
    same, only the lines that cannot match are skipped."""
    if pattern is None or not text:
        return []
    whole = _line_pattern(pattern)
    if whole is None:
        return None
    lines: list[int] = []
    line = pos = 0
    try:
        for match in whole.finditer(text, timeout=PREFILTER_TIMEOUT_S):
            start, end = match.span()
            line += text.count("\n", pos, start)
            pos = start
            last = line + text.count("\n", start, end - 1) if end > start else line
            for i in range(max(line, lines[-1] + 1 if lines else 0), last + 1):
                lines.append(i)
    except TimeoutError:
        return None
    return lines


def excerpt(text: str, match: regex.Match[str] | None = None, width: int = 160) -> str:
    """A quote for the evidence: the whole text if short, else a window around the match."""
    if len(text) <= width or match is None:
        return text[:width] + ("…" if len(text) > width else "")
    start = max(0, match.start() - width // 2)
    end = min(len(text), start + width)
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def scoped_pages(site: SiteView, rule: Rule) -> list[Page]:
    if rule.scope == "homepage":
        home = site.homepage
        return [home] if home is not None and home.is_html else []
    if rule.scope == "policy":
        from audits.checks.privacy import find_policy

        found = find_policy(site, rule.pack)
        return [found.page] if found.page is not None else []
    return site.html_pages()
