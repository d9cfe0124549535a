"""After a crash: reconcile what a killed run left behind (RELIABILITY.md T25, T31).

A run killed at any moment (SIGKILL of the CLI, the machine losing power) leaves at most:
crawls still marked ``running`` whose process is gone, finished crawls never judged (killed
while judging), and ``*.tmp`` files of evidence writes cut short. Every database write is one
transaction and every evidence file is renamed into place only when complete, so nothing
else can be half-done. ``reconcile`` runs before each audit run:

- a ``running`` crawl whose runner process is gone (same host: the pid is dead or reused;
  another host: older than ``stale_after``) becomes ``crashed``, with the pages it stored;
- a crawl that is finished, crashed, timed out or interrupted but has no audit is judged now,
  so the work the killed run did is not lost; except a distributed job's crawl (``options
  ["job"]``): the queue delivers that job again and its new run records the job's one audit;
- a ``*.tmp`` evidence file whose writer process is gone is removed.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
from sqlalchemy import func, select, update

from audits.db import Store
from audits.evidence import BlobStore
from audits.models import Audit, Crawl, Snapshot

logger = logging.getLogger(__name__)

STALE_AFTER = timedelta(hours=6)


def runner_identity() -> dict[str, Any]:
    """Who runs a crawl: stored in ``crawls.options["runner"]`` when the crawl starts."""
    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": me.pid, "since": round(me.create_time(), 2)}


def _alive(runner: dict[str, Any] | None, started: datetime | None, now: datetime,
           stale_after: timedelta) -> bool:
    if runner and runner.get("host") == socket.gethostname():
        try:
            proc = psutil.Process(int(runner["pid"]))
            return abs(proc.create_time() - float(runner.get("since", 0))) < 1.0
        except (psutil.Error, ValueError, KeyError):
            return False
    if started is None:
        return False
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return now - started < stale_after


def _pid_of_tmp(name: str) -> int | None:
    # BlobStore writes "<digest>.gz.<pid>.tmp"
    parts = name.split(".")
    try:
        return int(parts[-2])
    except (IndexError, ValueError):
        return None


def gc_orphan_tmp(blobs: BlobStore) -> int:
    """Remove ``*.tmp`` files whose writer process no longer exists (``blobs/tmp/`` only:
    this runs before every audit run and job, and must not walk the whole store)."""
    removed = 0
    for tmp in blobs.tmp_files():
        pid = _pid_of_tmp(tmp.name)
        if pid is not None and (pid == os.getpid() or psutil.pid_exists(pid)):
            continue  # its writer is this process or still running
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


@dataclass
class Recovery:
    crashed: list[int] = field(default_factory=list)
    judged: list[int] = field(default_factory=list)  # audit ids written for unjudged crawls
    tmp_removed: int = 0


def reconcile(
    store: Store,
    blobs: BlobStore,
    judge: Callable[[int], int] | None = None,
    *,
    stale_after: timedelta = STALE_AFTER,
) -> Recovery:
    """See the module docstring. ``judge(crawl_id) -> audit_id`` judges unjudged crawls."""
    result = Recovery()
    now = datetime.now(UTC)
    with store.session(readonly=True) as session:
        running = session.execute(
            select(Crawl.id, Crawl.options, Crawl.started_at).where(Crawl.status == "running")
        ).all()
    dead = [cid for cid, options, started in running
            if not _alive((options or {}).get("runner"), started, now, stale_after)]
    if dead:
        with store.session() as session:
            session.execute(
                update(Crawl)
                .where(Crawl.id.in_(dead), Crawl.status == "running")
                .values(
                    status="crashed",
                    finished_at=now,
                    pages_fetched=select(func.count(Snapshot.id))
                    .where(Snapshot.crawl_id == Crawl.id, Snapshot.status.is_not(None))
                    .scalar_subquery(),
                )
            )
        result.crashed = dead
        logger.warning("marked %d crawl(s) of a killed run as crashed: %s", len(dead), dead)
    if judge is not None:
        with store.session(readonly=True) as session:
            rows = session.execute(
                select(Crawl.id, Crawl.options, Crawl.started_at)
                .where(Crawl.status != "running", ~Crawl.id.in_(select(Audit.crawl_id)))
                .order_by(Crawl.id)
            ).all()
        # Only crawls whose runner is gone: a live run judges its own crawls (a crawl is
        # marked finished a moment before its runner judges it).
        unjudged = [cid for cid, options, started in rows
                    if not (options or {}).get("job")
                    and not _alive((options or {}).get("runner"), started, now, stale_after)]
        for crawl_id in unjudged:
            result.judged.append(judge(crawl_id))
        if unjudged:
            logger.warning("judged %d crawl(s) a killed run left unjudged", len(unjudged))
    result.tmp_removed = gc_orphan_tmp(blobs)
    return result
