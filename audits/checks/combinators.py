"""Combining checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audits.checks.base import CHECKS, Outcome, check_type

if TYPE_CHECKING:
    from audits.pages import SiteView
    from audits.rulepack import Rule

_RANK = {"pass": 0, "warn": 1, "review": 2, "fail": 3, "error": 4, "not_applicable": 5}


@check_type(
    "any_of",
    checks={"type": "array", "minItems": 1, "items": {"type": "object", "required": ["type"]}},
)
def any_of(site: SiteView, rule: Rule, params: dict[str, Any]) -> Outcome:
    """The best result of several checks: pass if any passes, else the most hopeful."""
    outcomes = []
    for sub in params["checks"]:
        outcome = CHECKS[sub["type"]].run(site, rule, sub)
        if outcome.status == "pass":
            return outcome  # the first that passes decides; the rest need not run
        outcomes.append(outcome)
    best = min(outcomes, key=lambda o: _RANK[o.status])
    return Outcome(
        best.status,
        "; ".join(o.message for o in outcomes),
        [e for o in outcomes for e in o.evidence][:5],
    )
