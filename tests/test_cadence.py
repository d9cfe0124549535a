"""Due computation and staggering: pure functions of a site, its last check, the policy."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from audits.cadence import (
    CadenceConfigError,
    Policy,
    SiteState,
    anchor,
    expiry_slot,
    plan_site,
)

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
POLICY = Policy(red_days=30, blue_days=60, suspended_days=7, expiry_lead_days=14)


def state(domain="shop.example", status="certified", tier="red", **kw) -> SiteState:
    return SiteState(site_id=1, domain=domain, status=status, tier=tier, **kw)


def test_due_follows_the_sites_grid_and_tier():
    last = NOW - timedelta(days=10)
    red = plan_site(state(last_check=last), POLICY, NOW)
    assert red is not None and red.reason == "certified" and red.interval_days == 30
    start = anchor("shop.example", timedelta(days=30))
    # The first grid time after the last check, 0-30 days later.
    assert (red.due_at - start) % timedelta(days=30) == timedelta(0)
    assert last < red.due_at <= last + timedelta(days=30)
    blue = plan_site(state(tier="blue", last_check=last), POLICY, NOW)
    assert blue.interval_days == 60
    suspended = plan_site(state(status="suspended", last_check=last), POLICY, NOW)
    assert suspended.interval_days == 7 and suspended.reason == "suspended"
    assert suspended.due_at <= last + timedelta(days=7)


def test_planned_due_overdue():
    last = NOW - timedelta(days=10)
    due_at = plan_site(state(last_check=last), POLICY, NOW).due_at
    assert plan_site(state(last_check=last), POLICY, due_at - timedelta(seconds=1)).state == (
        "planned"
    )
    assert plan_site(state(last_check=last), POLICY, due_at).state == "due"
    assert plan_site(state(last_check=last), POLICY, due_at + timedelta(hours=23)).state == "due"
    assert plan_site(state(last_check=last), POLICY, due_at + timedelta(hours=25)).state == (
        "overdue"
    )
    # A check (a manual audit counts) after the due time moves it to the next slot.
    assert plan_site(
        state(last_check=due_at + timedelta(hours=1)), POLICY, NOW + timedelta(days=40)
    ).due_at == due_at + timedelta(days=30)


@pytest.mark.parametrize("status", ["applicant", "revoked", "expired"])
def test_on_demand_only(status):
    assert (
        plan_site(state(status=status, last_check=NOW - timedelta(days=400)), POLICY, NOW) is None
    )


def test_check_before_expiry():
    until = date(2026, 12, 1)
    last = datetime(2026, 11, 10, tzinfo=UTC)
    plan = plan_site(state(valid_until=until, last_check=last), POLICY, NOW)
    before = expiry_slot("shop.example", until, POLICY)
    assert plan.reason == "expiry" and plan.due_at == before
    assert date(2026, 11, 17) == before.date()  # 14 days before valid_until
    # Once checked after that time, the regular grid takes over again.
    after = plan_site(state(valid_until=until, last_check=before + timedelta(hours=1)), POLICY, NOW)
    assert after.reason == "certified"


def test_checks_are_spread_over_the_period_and_the_day():
    """400 certified sites all last checked at the same moment: their next checks fall on
    every day of the 30-day period and at every hour of the day, none crowded."""
    last = datetime(2026, 11, 1, tzinfo=UTC)
    plans = [
        plan_site(state(domain=f"shop{i}.example", last_check=last), POLICY, NOW)
        for i in range(400)
    ]
    days = Counter((p.due_at - last).days for p in plans)
    hours = Counter(p.due_at.hour for p in plans)
    assert set(days) == set(range(30))
    assert max(days.values()) <= 3 * 400 / 30
    assert len(hours) == 24 and max(hours.values()) <= 3 * 400 / 24
    # Stable: the same domain always gets the same slot.
    again = plan_site(state(domain="shop7.example", last_check=last), POLICY, NOW)
    assert again.due_at == plans[7].due_at


def test_policy_file(tmp_path):
    path = tmp_path / "schedule.toml"
    path.write_text("[schedule]\nred_days = 14\nworkers = 3\n", encoding="utf-8")
    policy = Policy.load(path)
    assert policy.red_days == 14 and policy.workers == 3 and policy.blue_days == 60
    path.write_text("[schedule]\nred_dayz = 14\n", encoding="utf-8")
    with pytest.raises(CadenceConfigError, match="red_dayz: unknown setting"):
        Policy.load(path)
    path.write_text("[schedule]\nred_days = -1\n", encoding="utf-8")
    with pytest.raises(CadenceConfigError, match="red_days = -1"):
        Policy.load(path)
    with pytest.raises(CadenceConfigError, match="no such file"):
        Policy.from_env(tmp_path, {"ECTRUST_SCHEDULE": str(tmp_path / "missing.toml")})


def test_bad_schedule_file_is_exit_2(env, cli, monkeypatch):
    (env / "bad.toml").write_text("[schedule]\nsuspended_days = 'often'\n", encoding="utf-8")
    monkeypatch.setenv("ECTRUST_SCHEDULE", str(env / "bad.toml"))
    result = cli("schedule", "list", expect=2)
    assert "suspended_days" in result.stderr
