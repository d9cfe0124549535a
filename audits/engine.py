"""Evaluating a rule set over one site: findings, a score and the audit's summary.

Pure: the same SiteView and rules give the same results, which is what makes ``reaudit``
on stored snapshots reproduce ``audit``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from audits.checks import CHECKS, load_check_types
from audits.checks.base import Outcome, RuleTimeout
from audits.pages import SiteView
from audits.rulepack import Rule, RuleSet

logger = logging.getLogger(__name__)

SEVERITY_WEIGHT = {"critical": 10.0, "major": 5.0, "minor": 2.0, "info": 0.0}
STATUS_CREDIT = {"pass": 1.0, "warn": 0.5, "fail": 0.0}


@dataclass
class Result:
    rule: Rule
    outcome: Outcome

    @property
    def status(self) -> str:
        return self.outcome.status


@dataclass
class Evaluation:
    results: list[Result]
    reachable: bool
    score: float | None
    summary: dict[str, Any] = field(default_factory=dict)


def evaluate_rule(site: SiteView, rule: Rule) -> Outcome:
    if not site.reachable:
        home = site.homepage
        why = (home.error or f"HTTP {home.status}") if home is not None else "no homepage"
        return Outcome(
            "error",
            f"site unreachable ({why}): the rule could not be checked",
            [{"url": site.start_url, "excerpt": why}],
        )
    if rule.applies_to == "chinese" and not site.is_chinese:
        return Outcome(
            "not_applicable",
            "the site does not address Chinese-language readers; "
            "an evaluator should confirm whether it is hosted in mainland China",
        )
    try:
        return CHECKS[rule.check["type"]].run(site, rule, rule.check)
    except RuleTimeout as exc:
        return Outcome("error", f"rule pattern too slow on this site's text: {exc}")
    except Exception as exc:  # one broken check must not sink the whole audit
        logger.exception("check %s failed on %s", rule.id, site.domain)
        return Outcome("error", f"check failed: {type(exc).__name__}: {exc}")


def rule_weight(rule: Rule) -> float:
    """A rule's own weight, else its pack's weight for its severity, else the default."""
    if rule.weight is not None:
        return float(rule.weight)
    return float(rule.pack.weights.get(rule.severity, SEVERITY_WEIGHT[rule.severity]))


def score(results: list[Result]) -> float | None:
    """Share of decided, weighted requirements met, 0–100 (warn counts half). Rules that
    could not be decided (review, error) or do not apply are left out; None if none count."""
    total = earned = 0.0
    for r in results:
        if r.status in STATUS_CREDIT:
            weight = rule_weight(r.rule)
            total += weight
            earned += weight * STATUS_CREDIT[r.status]
    return round(100.0 * earned / total, 1) if total else None


def evaluate(site: SiteView, ruleset: RuleSet, *, incomplete: str | None = None) -> Evaluation:
    """``incomplete`` names why the crawl did not finish (timed_out, crashed …): it saw only
    part of the site, so its failures are not evidence of absence and become errors."""
    load_check_types()
    results = [Result(rule, evaluate_rule(site, rule)) for rule in ruleset.rules]
    if incomplete:
        for r in results:
            if r.outcome.status in ("fail", "not_applicable"):
                r.outcome.status = "error"
                r.outcome.message = (
                    f"crawl {incomplete}: not all pages were seen ({r.outcome.message})"
                )
    summary = summarise(site, results)
    badge = summary.get("badge")
    if incomplete and badge and badge["verdict"] == "absent":
        summary["badge"] = None  # not seen on part of a site is not "absent"
    return Evaluation(
        results=results,
        reachable=site.reachable,
        score=score(results),
        summary=summary,
    )


def summarise(site: SiteView, results: list[Result]) -> dict[str, Any]:
    """The audit document's ``privacy_policy`` and ``badge`` fields."""
    by_id = {r.rule.id: r for r in results}
    policy = None
    present = by_id.get("privacy.policy_present")
    if present is not None and present.outcome.data.get("url"):
        clauses = {}
        for r in results:
            if r.rule.id.startswith("privacy.clause."):
                clauses[r.rule.id.removeprefix("privacy.clause.")] = r.status == "pass"
        policy = {**present.outcome.data, "clauses": clauses}
    # ``badge`` is null when no verdict could be given (site unreachable, no official host
    # configured): CONTRACT.md's verdicts are all judgements, and "not judged" is none.
    badge = None
    badge_result = by_id.get("badge.valid")
    if badge_result is not None and badge_result.outcome.data.get("verdict"):
        badge = {
            k: badge_result.outcome.data.get(k) for k in ("verdict", "certificate_id", "pages")
        }
    return {"privacy_policy": policy, "badge": badge}
