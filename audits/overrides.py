"""An evaluator's override of a finding. The finding row is never changed (append-only by
database trigger): the override is a new row with the decided status, the reason, who and
when, and both stay visible. The latest override of a finding is the one in force."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from audits.models import Finding, Override

STATUSES = ("pass", "warn", "review", "fail", "not_applicable")
MIN_REASON = 5


class OverrideError(ValueError):
    pass


def add_override(
    session: Session, finding_id: int, status: str, reason: str, actor: str
) -> Override:
    reason = (reason or "").strip()
    if status not in STATUSES:
        raise OverrideError(f"status {status!r}: one of {', '.join(STATUSES)}")
    if len(reason) < MIN_REASON:
        raise OverrideError("an override needs a reason (at least a few words)")
    if not actor:
        raise OverrideError("an override needs the name of who decided")
    if session.get(Finding, finding_id) is None:
        raise OverrideError(f"no finding {finding_id}")
    row = Override(finding_id=finding_id, status=status, reason=reason, actor=actor)
    session.add(row)
    session.flush()
    return row


def overrides_for(session: Session, finding_ids: list[int]) -> dict[int, list[Override]]:
    """Every override of these findings, oldest first (the last is in force)."""
    out: dict[int, list[Override]] = {i: [] for i in finding_ids}
    if not finding_ids:
        return out
    rows = session.scalars(
        select(Override).where(Override.finding_id.in_(finding_ids)).order_by(Override.id)
    )
    for row in rows:
        out[row.finding_id].append(row)
    return out
