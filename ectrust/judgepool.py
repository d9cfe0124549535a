"""A second judging process beside the CLI's own, for the end of runs over many sites.

Judging is pure CPU (parsing, regexes, the clause model) and runs in the CLI process while
the crawl child fetches. Over hundreds of sites it is the slower of the two: the crawl
finishes and the run then waits for judging alone on one core (bench/throughput.py: 1,000
sites crawled in 241 s, judged 270 s later). When the crawl process has exited (its memory
freed, so the peak does not grow), one process from the standard library's
ProcessPoolExecutor judges part of the backlog, on the second core. Each judgement is
still one transaction (audit, findings and manifest, or nothing), so a killed worker leaves
no half audit; workers die with the CLI (PR_SET_PDEATHSIG) so none goes on writing after
it, and they ignore SIGINT/SIGTERM: the CLI decides how a run stops and waits for the
judgements in flight.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from audits.db import Store
from audits.evidence import BlobStore
from audits.judge import judge_crawl
from audits.models import Audit
from audits.rulepack import RuleSet

#: Below this many sites a run judges in the CLI process only (starting a worker costs
#: about as much CPU as judging a few sites) …
MIN_SITES = 16
#: … and so it does when fewer than this many crawls are left to judge when the crawl ends.
MIN_BACKLOG = 8


@dataclass
class _Worker:
    store: Store
    ruleset: RuleSet
    blobs: BlobStore
    badge_hosts: tuple[str, ...]


_WORKER: _Worker | None = None


def _init(db_url: str, ruleset: RuleSet, home: str, badge_hosts: tuple[str, ...]) -> None:
    from ectrust.pipeline import _die_with_parent

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    global _WORKER
    _WORKER = _Worker(Store(db_url, migrate=False), ruleset, BlobStore(Path(home)), badge_hosts)


def _ready() -> None:
    return None


def _judge(crawl_id: int) -> int:
    assert _WORKER is not None, "judge worker not initialised"
    w = _WORKER
    return judge_crawl(w.store, crawl_id, w.ruleset, w.blobs, w.badge_hosts)


def wanted(sites: int) -> bool:
    """Is a judging worker worth starting for a run over ``sites`` sites?"""
    return sites >= MIN_SITES and (os.cpu_count() or 1) > 1


class JudgePool:
    """At most ``slots`` judgements queued or running in one worker process (two: the next
    one is there when the worker finishes, while the CLI judges the others itself)."""

    def __init__(
        self,
        db_url: str,
        ruleset: RuleSet,
        home: Path,
        badge_hosts: tuple[str, ...],
        slots: int = 2,
    ) -> None:
        self.slots = slots
        self.in_flight: dict[Future[int], int] = {}
        self._executor = ProcessPoolExecutor(
            max_workers=1,
            # spawn: a fresh interpreter, not a fork of a process holding database
            # connections, a Rich console and a reader thread on the crawl's pipe
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init,
            initargs=(db_url, ruleset, str(home), badge_hosts),
        )
        # Start the worker now: its start-up (imports, rules) overlaps the crawl's.
        self._executor.submit(_ready)

    def has_room(self) -> bool:
        return len(self.in_flight) < self.slots

    def submit(self, crawl_id: int) -> None:
        self.in_flight[self._executor.submit(_judge, crawl_id)] = crawl_id

    def done(self, *, wait: bool = False) -> list[tuple[int, int | None]]:
        """Finished judgements as (crawl id, audit id or None when the worker failed);
        with ``wait``, all of them."""
        out = []
        for fut in list(self.in_flight):
            if wait or fut.done():
                crawl_id = self.in_flight.pop(fut)
                try:
                    out.append((crawl_id, fut.result()))
                except Exception:  # the CLI judges it again itself
                    out.append((crawl_id, None))
        return out

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def audit_of(store: Store, crawl_id: int) -> int | None:
    """The audit a worker wrote for ``crawl_id`` before it failed to report it, if any."""
    with store.session(readonly=True) as session:
        return session.scalar(
            select(Audit.id).where(Audit.crawl_id == crawl_id, Audit.kind == "audit").limit(1)
        )
