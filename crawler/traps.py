"""Crawler traps, bounded before a request is scheduled (RELIABILITY.md T07).

The audit spider is already bounded by its page cap, hint depth and sample budget; these rules
keep trap URLs from eating that budget and say that a trap was suspected:

- session ids in the query (``jsessionid``, ``PHPSESSID``, ``sid`` …) are dropped, so a site
  that mints a new id per page does not look like endless new pages;
- a path segment repeated ECTRUST_TRAP_REPEATS times (``/a/a/a/``) is a trap;
- a query with ECTRUST_TRAP_QUERY_PARAMS or more parameters (facet explosions) is a trap;
- more than ECTRUST_TRAP_QUERY_VARIANTS URLs on one path differing only in their query
  (``/cal?m=1``, ``/cal?m=2`` …) is a trap from then on.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SESSION_PARAMS = re.compile(
    r"^(?:jsessionid|phpsessid|aspsessionid\w*|sessionid|session_id|sessid|sid|s|zenid"
    r"|cfid|cftoken|osCsid)$",
    re.IGNORECASE,
)
_PATH_SESSION = re.compile(r";(?:jsessionid|phpsessid)=[^/?#]*", re.IGNORECASE)


def strip_session_ids(url: str) -> str:
    parts = urlsplit(url)
    path = _PATH_SESSION.sub("", parts.path)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if not SESSION_PARAMS.match(k)]
        if len(kept) != len(pairs):
            query = urlencode(kept)
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


@dataclass
class TrapDetector:
    repeats: int = 3
    max_params: int = 12
    max_variants: int = 8
    variants: Counter[str] = field(default_factory=Counter)
    suspected: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Any) -> TrapDetector:
        return cls(
            repeats=settings.getint("ECTRUST_TRAP_REPEATS", 3),
            max_params=settings.getint("ECTRUST_TRAP_QUERY_PARAMS", 12),
            max_variants=settings.getint("ECTRUST_TRAP_QUERY_VARIANTS", 8),
        )

    def check(self, url: str) -> str | None:
        """The trap rule this URL trips (and counts it), or None."""
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        reason = None
        if segments and Counter(segments).most_common(1)[0][1] >= self.repeats:
            reason = "path_repetition"
        elif parts.query and len(parse_qsl(parts.query, keep_blank_values=True)) >= self.max_params:
            reason = "query_parameters"
        elif parts.query:
            key = f"{parts.netloc}{parts.path}"
            self.variants[key] += 1
            if self.variants[key] > self.max_variants:
                reason = "query_variants"
        if reason:
            self.suspected[reason] += 1
            self.examples.setdefault(reason, url[:300])
        return reason

    def notes(self) -> dict[str, Any]:
        if not self.suspected:
            return {}
        return {
            "trap_suspected": dict(self.suspected),
            "trap_examples": dict(self.examples),
        }
