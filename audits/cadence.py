"""The re-check cadence: which registered site is due for a check, when, and why.

Pure functions of a site's certificate, its last check and the policy, so due computation,
staggering and expiry are tested without a scheduler or a clock.

Each site has its own grid of check times, ``anchor + k * interval``, where the anchor is
offset from the epoch by a hash of the domain. Sites with the same interval are therefore
spread evenly over the whole period (and over the hours of the day), not all at midnight,
and a site keeps its slot from one run of the scheduler to the next.
"""

from __future__ import annotations

import hashlib
import math
import os
import tomllib
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


class CadenceConfigError(ValueError):
    """The schedule configuration file is unreadable or has a bad value (exit status 2)."""


@dataclass(frozen=True)
class Policy:
    """The schedule configuration (``[schedule]`` in the file named by
    ``$ECTRUST_SCHEDULE``, default ``$ECTRUST_HOME/schedule.toml``; every key optional)."""

    red_days: float = 30  # certified, red badge (full certification)
    blue_days: float = 60  # certified, blue badge
    suspended_days: float = 7  # suspended sites are watched more closely
    expiry_lead_days: float = 14  # one check this long before a certificate expires
    overdue_after_hours: float = 24  # due for longer than this: overdue
    audit_time_limit_s: float = 900  # hard limit for one audit's child process
    max_pages: int = 30
    retry_after_minutes: float = 60  # a check that failed or was killed is tried again
    misfire_grace_hours: float = 48  # a check missed for longer (scheduler down) is skipped
    lease_seconds: float = 120  # the scheduler lease; a dead scheduler's lease expires
    digest_minutes: float = 10  # changes are gathered into one alert digest this often
    workers: int = 2  # audits at once
    # enqueue each check for `ectrust worker`s (ectrust/distributed.py) instead of auditing here;
    # also on when $ECTRUST_BROKER is set. The broker is $ECTRUST_BROKER, else local Redis.
    distributed: bool = False

    def interval(self, tier: str | None, status: str) -> timedelta | None:
        """None: checked on demand only (applicants, revoked or expired certificates)."""
        if status == "suspended":
            return timedelta(days=self.suspended_days)
        if status == "certified":
            return timedelta(days=self.blue_days if tier == "blue" else self.red_days)
        return None

    @classmethod
    def load(cls, path: Path | None) -> Policy:
        if path is None or not path.exists():
            return cls()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CadenceConfigError(
                f"{path}: cannot read the schedule configuration: {exc}"
            ) from exc
        section = data.get("schedule", {})
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in section.items():
            if key not in known:
                raise CadenceConfigError(
                    f"{path}: [schedule] {key}: unknown setting (known: {', '.join(known)})"
                )
            if key == "distributed":
                if not isinstance(value, bool):
                    raise CadenceConfigError(
                        f"{path}: [schedule] {key} = {value!r}: expected true or false"
                    )
                values[key] = value
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise CadenceConfigError(
                    f"{path}: [schedule] {key} = {value!r}: expected a number > 0"
                )
            values[key] = int(value) if key in ("max_pages", "workers") else float(value)
        return cls(**values)

    @classmethod
    def from_env(cls, home: Path, environ: dict[str, str] | None = None) -> Policy:
        env = os.environ if environ is None else environ
        named = env.get("ECTRUST_SCHEDULE")
        if named and not Path(named).exists():
            raise CadenceConfigError(f"ECTRUST_SCHEDULE={named}: no such file")
        return cls.load(Path(named) if named else home / "schedule.toml")


@dataclass(frozen=True)
class SiteState:
    """What the cadence needs to know about one registered site."""

    site_id: int
    domain: str
    status: str  # effective certificate status, or "applicant"
    tier: str | None = None
    valid_until: date | None = None
    last_check: datetime | None = None  # start of the last audit, any trigger
    registered_at: datetime | None = None


@dataclass(frozen=True)
class Plan:
    site_id: int
    domain: str
    reason: str  # certified | suspended | expiry
    due_at: datetime
    state: str  # due | overdue | planned
    last_check: datetime | None
    interval_days: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "reason": self.reason,
            "due_at": _iso(self.due_at),
            "state": self.state,
            "last_check": _iso(self.last_check),
            "interval_days": self.interval_days,
        }


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def stagger_offset(domain: str, period: timedelta) -> timedelta:
    """Where in each period a site's checks fall: a stable hash of the domain."""
    digest = int.from_bytes(hashlib.sha256(domain.encode("utf-8")).digest()[:8], "big")
    return timedelta(seconds=digest % max(1, int(period.total_seconds())))


def anchor(domain: str, interval: timedelta) -> datetime:
    """The first point of a site's grid of check times (APScheduler's interval start)."""
    return EPOCH + stagger_offset(domain, interval)


def next_slot_after(moment: datetime, start: datetime, interval: timedelta) -> datetime:
    """The first grid time ``start + k * interval`` strictly after ``moment``."""
    k = math.floor((_utc(moment) - start) / interval) + 1
    return start + max(k, 0) * interval


def expiry_slot(domain: str, valid_until: date, policy: Policy) -> datetime:
    """The pre-expiry check: ``expiry_lead_days`` before ``valid_until``, at the site's hour."""
    day = valid_until - timedelta(days=policy.expiry_lead_days)
    return datetime.combine(day, time(), UTC) + stagger_offset(domain, DAY)


def plan_site(state: SiteState, policy: Policy, now: datetime) -> Plan | None:
    """When ``state``'s next check is due, or None when it is checked on demand only."""
    now = _utc(now)
    interval = policy.interval(state.tier, state.status)
    if interval is None:
        return None
    start = anchor(state.domain, interval)
    since = _utc(state.last_check or state.registered_at or now)
    due, reason = next_slot_after(since, start, interval), state.status
    if state.valid_until is not None:
        before_expiry = expiry_slot(state.domain, state.valid_until, policy)
        if before_expiry > since and before_expiry < due:
            due, reason = before_expiry, "expiry"
    if due > now:
        label = "planned"
    elif now - due > timedelta(hours=policy.overdue_after_hours):
        label = "overdue"
    else:
        label = "due"
    return Plan(
        state.site_id,
        state.domain,
        reason,
        due,
        label,
        state.last_check,
        interval / DAY,
    )
