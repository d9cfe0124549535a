"""Politeness across workers: at most one crawl per host at a time, whichever worker runs it.

One Redis lock per host (redis-py's ``Lock``: ``SET NX PX`` with a random token, released
and extended by Lua scripts that check the token) with a lease: a holder renews it every
third of the lease while its crawl runs, and a holder that dies (SIGKILL, power loss) stops
renewing, so the lease runs out and another worker can take the host. Taking the locks never
blocks: a job that cannot have its host gives its worker slot back and is retried later
(ectrust/distributed.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from redis import Redis
from redis.exceptions import LockError
from redis.lock import Lock

logger = logging.getLogger(__name__)


class HostLocks:
    """The locks of every host one job crawls, taken all or none (no deadlock between two
    jobs that share some of their hosts)."""

    def __init__(self, client: Redis, prefix: str, hosts: Iterable[str], lease_s: float) -> None:
        self.hosts = sorted({h.lower() for h in hosts if h})
        self.lease_s = lease_s
        self._locks = [
            # thread_local=False: the renewing thread must see the token the job's took
            Lock(client, f"{prefix}hostlock:{host}", timeout=lease_s, blocking=False,
                 thread_local=False)
            for host in self.hosts
        ]
        self._held: list[Lock] = []
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost = False

    def acquire(self) -> bool:
        """Take every host's lock, or none (False: some host is being crawled elsewhere)."""
        for lock in self._locks:
            if not lock.acquire(blocking=False):
                self.release()
                return False
            self._held.append(lock)
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="hostlock-renew", daemon=True)
        self._renewer.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            for lock in list(self._held):
                try:
                    lock.reacquire()
                except LockError as exc:
                    # The lease ran out before we renewed it (this process stalled): another
                    # worker may be crawling the host now. Nothing safe is left to do but say so.
                    self.lost = True
                    logger.error("lost the politeness lock %s: %s", lock.name, exc)
                except Exception as exc:  # Redis unreachable for a moment: try again next time
                    logger.warning("could not renew the politeness lock %s: %s", lock.name, exc)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
            self._renewer = None
        for lock in self._held:
            try:
                lock.release()
            except LockError:
                pass  # expired (and maybe taken by another worker): not ours to release
            except Exception as exc:
                logger.warning("could not release %s (its lease will expire): %s", lock.name, exc)
        self._held = []

    def __enter__(self) -> HostLocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
