"""The re-check scheduler under a fake clock (time-machine: APScheduler's own clock moves
with it, nothing sleeps): restart after downtime, misfires, two schedulers on one database,
a check still running at its next time, a child audit killed by its time limit."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from sqlalchemy import func, select

from audits.cadence import Policy
from audits.certificates import issue
from audits.db import Store
from audits.models import Audit, Crawl
from audits.monitoring_models import ScheduledCheck, SchedulerLease, apscheduler_jobs
from audits.registry import add_site
from ectrust.alerts import AlertSettings
from ectrust.config import Settings
from ectrust.scheduler import (
    Monitor,
    SchedulerBusy,
    acquire_lease,
    claim_check,
    plans,
)
from tests.conftest import write_site

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HEADER = "domain,name,start_url,industry,status,certificate_id,badge,valid_from,valid_until\n"


def import_sites(cli, tmp: Path, rows: list[str]) -> None:
    csv = tmp / "sites.csv"
    csv.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    cli("sites", "import", str(csv))


class FakeRunner:
    """Stands in for the child audit where the test is about the scheduler's decisions;
    the real child runner is tested below."""

    def __init__(self, block: threading.Event | None = None) -> None:
        self.calls: list[str] = []
        self.block = block
        self.started = threading.Event()

    def __call__(self, domain: str) -> tuple[str, int | None, str]:
        self.calls.append(domain)
        self.started.set()
        if self.block is not None:
            assert self.block.wait(60)
        return "done", None, ""


@pytest.fixture
def world(env, cli):
    settings = Settings.from_env()
    with time_machine.travel(T0, tick=False) as clock:
        import_sites(
            cli,
            env,
            [
                "red.example,Red,http://red.example/,books,certified,ECT-1,red,2026-01-01,2030-12-31",
                "blue.example,Blue,http://blue.example/,books,certified,ECT-2,blue,2026-01-01,2030-12-31",
                "new.example,New,http://new.example/,books,applicant,,,,",
            ],
        )
        store = Store(settings.db_url)
        yield {"settings": settings, "store": store, "clock": clock}
        store.dispose()


def monitor(world, policy: Policy, runner=None, owner: str = "test-a") -> Monitor:
    return Monitor(
        world["store"], world["settings"], policy, AlertSettings(), runner=runner, owner=owner
    )


def job_next_runs(store: Store) -> dict[str, datetime]:
    with store.session(readonly=True) as s:
        return {
            r.id: datetime.fromtimestamp(r.next_run_time, UTC)
            for r in s.execute(select(apscheduler_jobs))
        }


def count_checks(store: Store) -> dict[str, int]:
    with store.session(readonly=True) as s:
        rows = s.execute(
            select(ScheduledCheck.site_id, func.count()).group_by(ScheduledCheck.site_id)
        ).all()
    return {str(k): v for k, v in rows}


def test_restart_after_downtime_runs_each_missed_check_once(world):
    policy = Policy(red_days=1, blue_days=2)
    runner = FakeRunner()
    first = monitor(world, policy, runner)
    first.start()
    jobs = job_next_runs(world["store"])
    # Applicants are on demand only; the two certified sites each have a staggered job and
    # one before their certificate expires.
    assert sorted(k.split(":")[0] for k in jobs) == ["expiry", "expiry", "site", "site"]
    assert all(t > T0 for t in jobs.values())  # registered now: first check at their slot
    first.shutdown()
    assert runner.calls == []

    # Down for three and a half days: red missed 3-4 slots, blue 1-2.
    world["clock"].shift(timedelta(days=3, hours=12))
    now = datetime.now(UTC)
    second = monitor(world, policy, runner, owner="test-b")
    second.start()
    try:
        assert second.wait_for(lambda: len(second.outcomes) >= 2, 60), runner.calls
        # Every job's next time is now in the future: nothing else is coming. (APScheduler
        # writes a job's next run time after handing the run to its executor, so a fast
        # run can finish first: wait for the store rather than read it once.)
        assert second.wait_for(
            lambda: all(t > now for t in job_next_runs(world["store"]).values()), 10
        ), job_next_runs(world["store"])
        second.scheduler.wakeup()
        assert not second.wait_for(lambda: len(second.outcomes) > 2, 2)
    finally:
        second.shutdown()
    assert sorted(runner.calls) == ["blue.example", "red.example"]
    assert sorted(count_checks(world["store"]).values()) == [1, 1]


def test_missed_beyond_grace_is_skipped_and_logged(world, caplog):
    policy = Policy(red_days=1, blue_days=1, misfire_grace_hours=0.5)
    runner = FakeRunner()
    first = monitor(world, policy, runner)
    first.start()
    first.shutdown()
    slots = {k: t for k, t in job_next_runs(world["store"]).items() if k.startswith("site:")}
    # Restart 3 days and 2 hours after the first slots: the newest missed time is 2 h old.
    world["clock"].shift(max(slots.values()) - T0 + timedelta(days=2, hours=2))
    second = monitor(world, policy, runner, owner="test-b")
    with caplog.at_level(logging.WARNING, logger="ectrust.scheduler"):
        second.start()
        try:
            missed = lambda: sum(1 for c, _ in second.events if c == EVENT_JOB_MISSED) >= 2  # noqa: E731
            assert second.wait_for(missed, 30), second.events
        finally:
            second.shutdown()
    assert runner.calls == []
    assert "missed check site:" in caplog.text
    # ... and `schedule list` shows them as overdue.
    states = {s.domain: p.state for s, p in plans(world["store"], policy, datetime.now(UTC)) if p}
    assert states == {"red.example": "overdue", "blue.example": "overdue"}


def test_second_scheduler_refuses_and_stale_lease_is_taken_over(world):
    policy = Policy(lease_seconds=120)
    a = monitor(world, policy, FakeRunner(), owner="sched-a")
    a.start()
    try:
        b = monitor(world, policy, FakeRunner(), owner="sched-b")
        with pytest.raises(SchedulerBusy, match=r"another scheduler is running.*sched-a"):
            b.start()
    finally:
        a.shutdown()
    # A scheduler killed without releasing its lease: refused until the lease expires.
    acquire_lease(world["store"], "killed-one", datetime.now(UTC), timedelta(seconds=120))
    c = monitor(world, policy, FakeRunner(), owner="sched-c")
    with pytest.raises(SchedulerBusy, match="killed-one"):
        c.start()
    world["clock"].shift(timedelta(seconds=121))
    c.start()
    try:
        with world["store"].session(readonly=True) as s:
            assert s.get(SchedulerLease, "scheduler").owner == "sched-c"
    finally:
        c.shutdown()


def test_forced_duplicate_check_is_stopped_by_the_database(world):
    policy = Policy(red_days=1)
    world["clock"].shift(timedelta(days=3))
    now = datetime.now(UTC)
    state, plan = next(
        (s, p) for s, p in plans(world["store"], policy, now) if p and p.state != "planned"
    )
    first = claim_check(world["store"], state.site_id, plan, "scheduler", now)
    again = claim_check(world["store"], state.site_id, plan, "due", now)
    assert first is not None and again is None
    assert count_checks(world["store"]) == {str(state.site_id): 1}


def test_check_still_running_at_next_time_is_skipped(world, caplog):
    policy = Policy(red_days=1 / 24, blue_days=1 / 24)  # hourly
    release = threading.Event()
    runner = FakeRunner(block=release)
    m = monitor(world, policy, runner)
    with caplog.at_level(logging.WARNING, logger="ectrust.scheduler"):
        m.start()
        try:
            world["clock"].shift(timedelta(hours=1, minutes=1))
            m.scheduler.wakeup()
            assert runner.started.wait(30)
            assert m.wait_for(lambda: len(runner.calls) == 2, 30)  # both sites started
            world["clock"].shift(timedelta(hours=1))
            m.scheduler.wakeup()
            busy = lambda: sum(1 for c, _ in m.events if c == EVENT_JOB_MAX_INSTANCES) >= 2  # noqa: E731
            assert m.wait_for(busy, 30), m.events
            assert len(runner.calls) == 2
        finally:
            release.set()
            m.wait_for(lambda: len(m.outcomes) == 2, 30)
            m.shutdown()
    assert "still running at its next time" in caplog.text
    with world["store"].session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(ScheduledCheck)) == 2


def test_interval_jobs_run_in_utc_across_a_dst_change(world):
    """T29: the host in a DST zone; check times stay 24 h apart through the change."""
    berlin = ZoneInfo("Europe/Berlin")
    # time-machine sets TZ from the destination's zone: the process now runs in Berlin.
    with time_machine.travel(datetime(2026, 10, 23, 12, tzinfo=berlin), tick=False):
        assert time.localtime().tm_isdst == 1
        m = monitor(world, Policy(red_days=1, blue_days=1), FakeRunner())
        trigger = next(t for k, (t, _) in m.desired_jobs().items() if k.startswith("site:"))
        assert str(trigger.timezone) == "UTC"
        fire, times = None, []
        now = datetime(2026, 10, 23, tzinfo=UTC)
        for _ in range(5):  # 23 Oct .. 27 Oct: Berlin leaves summer time on 25 Oct
            fire = trigger.get_next_fire_time(fire, now)
            times.append(fire)
            now = fire
        assert {b - a for a, b in itertools.pairwise(times)} == {timedelta(days=1)}
        local_hours = {t.astimezone(berlin).hour for t in times}
        assert len(local_hours) == 2  # the local hour moves by one: UTC does not


def test_child_audit_killed_by_time_limit_is_recorded_and_retried(env, cli, site_farm, monkeypatch):
    farm, root = site_farm
    write_site(root, "slow.example", {"index.html": "<html><body><h1>Shop</h1></body></html>"})
    monkeypatch.setenv("ECTRUST_CONNECT_TO", f"::127.0.0.1:{farm.port}")
    settings = Settings.from_env()
    with time_machine.travel(T0, tick=False) as clock:
        import_sites(
            cli,
            env,
            [
                "slow.example,Slow,http://slow.example/,books,certified,ECT-9,red,2026-01-01,2030-12-31"
            ],
        )
        store = Store(settings.db_url)
        # A limit no audit can meet: the child (and its crawler) is killed.
        policy = Policy(red_days=1, audit_time_limit_s=0.3, retry_after_minutes=30)
        m = Monitor(store, settings, policy, AlertSettings(), owner="t")
        clock.shift(timedelta(days=1, hours=1))
        m.start()
        try:
            assert m.wait_for(lambda: len(m.outcomes) == 1, 60)
            killed = m.outcomes[0]
            assert killed.status == "timed_out" and killed.audit_id is None
            assert "time limit of 0.3s" in killed.error
            retry_at = job_next_runs(store)["retry:1"]
            assert retry_at == datetime.now(UTC) + timedelta(minutes=30)
            # Next cycle, with a workable limit, the check is run again and completes.
            workable = dataclasses.replace(policy, audit_time_limit_s=240)
            m.policy = m.runner.policy = workable
            clock.shift(timedelta(minutes=31))
            m.scheduler.wakeup()
            assert m.wait_for(lambda: len(m.outcomes) == 2, 240)
        finally:
            m.shutdown()
        done = m.outcomes[1]
        assert done.status == "done" and done.audit_id is not None, done
        with store.session(readonly=True) as s:
            rows = s.scalars(select(ScheduledCheck).order_by(ScheduledCheck.id)).all()
            assert [(r.status, r.reason) for r in rows] == [
                ("timed_out", "certified"),
                ("done", "retry"),
            ]
            assert s.get(Audit, done.audit_id).reachable
            # The killed check's crawl is not left "running".
            statuses = set(s.scalars(select(Crawl.status)))
            assert "running" not in statuses
        store.dispose()


def test_two_scheduler_processes_second_refuses(env, cli):
    """T28 with real processes: the second `ectrust schedule run` exits 3 naming the first."""
    import_sites(
        cli,
        env,
        ["red.example,Red,http://red.example/,books,certified,ECT-1,red,2026-01-01,2030-12-31"],
    )
    proc_env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cmd = [sys.executable, "-m", "ectrust", "schedule", "run"]
    first = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=proc_env, text=True)
    try:
        assert first.stderr is not None
        line = ""
        deadline = time.monotonic() + 90
        while "scheduler running" not in line and time.monotonic() < deadline:
            line = first.stderr.readline()
            assert line or first.poll() is None, "first scheduler exited"
        assert "scheduler running" in line
        second = subprocess.run(cmd, capture_output=True, text=True, env=proc_env, timeout=90)
        assert second.returncode == 3, second.stderr
        assert "another scheduler is running" in " ".join(second.stderr.split())
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    assert first.returncode == 0
    store = Store(Settings.from_env().db_url)
    with store.session(readonly=True) as s:
        assert s.get(SchedulerLease, "scheduler") is None  # released on a clean stop
    store.dispose()


def test_lease_and_job_store_on_postgresql(pg_url):
    """The same on PostgreSQL: the job store lives in the schema, the lease is exclusive."""
    with time_machine.travel(T0, tick=False) as clock:
        store = Store(pg_url)
        with store.session() as s:
            add_site(s, "pg.example", "http://pg.example/", "PG", "books")
        with store.session() as s:
            issue(s, "pg.example", tier="red", reason="test", actor="t", valid_from=T0.date())
        settings = Settings(db_url=pg_url, home=Path("unused"))
        policy = Policy(red_days=1)
        runner = FakeRunner()
        a = Monitor(store, settings, policy, AlertSettings(), runner=runner, owner="pg-a")
        a.start()
        try:
            with pytest.raises(SchedulerBusy):
                Monitor(store, settings, policy, AlertSettings(), owner="pg-b").start()
            assert any(k.startswith("site:") for k in job_next_runs(store))
            clock.shift(timedelta(days=3, hours=1))
            a.scheduler.wakeup()
            assert a.wait_for(lambda: len(a.outcomes) == 1, 60)
        finally:
            a.shutdown()
        assert runner.calls == ["pg.example"]
        store.dispose()
