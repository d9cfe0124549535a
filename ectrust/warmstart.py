"""Warm crawl starts: crawl processes forked from a server that has imported the crawler.

Every crawl runs in a process of its own (a Twisted reactor cannot be restarted, and a
process can be killed at its time limit). Started as ``python -m crawler.run``, such a process
first imports Scrapy, Twisted, SQLAlchemy, Playwright and the components its settings name:
about 0.9 s of CPU, where crawling a 12-page shop takes about 0.2 s. A process that starts
crawl after crawl (a distributed worker starts one per job) calls ``enable()``; its crawls are
then forked from a fork server, the standard library's multiprocessing ``forkserver``, that
imported all of that once (crawler/warm.py), and start in a few milliseconds.

A warm crawl process is otherwise the same as a fresh one: its own reactor and database
connections (made after the fork), its log file on stdout and stderr, its events on a pipe,
the same niceness, and it dies with the process that asked for it, even one killed with
SIGKILL (a thread waits on multiprocessing's parent sentinel, which reports the death of the
requesting process, not of the fork server). What differs: its environment and its modules
are those of the moment the fork server started, at the first warm crawl. A worker is
restarted after an upgrade or a change to its environment anyway.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from multiprocessing.context import BaseContext
from multiprocessing.process import AuthenticationString
from pathlib import Path
from typing import IO, Any

#: What the fork server imports once: the crawler, and the CLI that the ``ectrust`` console
#: script imports (multiprocessing runs the parent's main script again, as ``__mp_main__``,
#: in every process it forks this way; with the CLI imported that is a few lines).
PRELOAD = ["crawler.warm", "ectrust.cli"]

_enabled = False
_context: BaseContext | None = None
_lock = threading.Lock()


def enable(*, start_now: bool = True) -> None:
    """Fork this process's crawls from a warm fork server from now on; ``start_now`` starts
    the server at once (it imports in the background) so the first crawl need not wait.

    As with any multiprocessing start method but ``fork``, the main script is run again
    (as ``__mp_main__``) in each crawl process: it must do its work under ``if __name__ ==
    "__main__":``, as the ``ectrust`` command does."""
    global _enabled
    _enabled = True
    if start_now:
        _fork_context()
        from multiprocessing import forkserver

        forkserver.ensure_running()


def enabled() -> bool:
    return _enabled


def _fork_context() -> BaseContext:
    global _context
    with _lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            _context = context
        return _context


class WarmCrawl:
    """A crawl process forked from the fork server, with the part of ``subprocess.Popen``'s
    interface that ectrust/pipeline.py uses: ``stdout`` (its events), ``poll``, ``wait``,
    ``send_signal``, ``kill``.

    The process is the fork server's child, not this process's: whether it still runs, and
    signalling it, go through a pidfd (Linux), so neither depends on the fork server (if it
    died, by the OOM killer say, the crawl could still be stopped at its time limit) and a
    signal cannot reach another process that later got the same pid. The exit status comes
    from the fork server (255 when it is gone)."""

    #: How long to wait, once the crawl has exited, for the fork server to report its status.
    STATUS_WAIT_S = 5.0

    def __init__(self, job: dict[str, Any], log_path: Path, niceness: int) -> None:
        context = _fork_context()
        reader, writer = context.Pipe(duplex=False)
        try:
            with _as_plain_process():
                self._process = context.Process(
                    target=_crawl_main,
                    args=(job, writer, str(log_path), niceness),
                    name="ectrust-crawl",
                    daemon=True,  # this process's exit stops it too
                )
                self._process.start()
        finally:
            writer.close()
        self.pid = self._process.pid
        self.stdout: IO[bytes] = _file_of(reader, "rb")
        self.returncode: int | None = None
        self._lock = threading.Lock()
        self._pidfd: int | None = None
        with contextlib.suppress(ProcessLookupError):  # it has already ended
            self._pidfd = os.pidfd_open(self.pid)  # type: ignore[arg-type]

    def _running(self, timeout: float | None = 0) -> bool:
        if self._pidfd is None:
            return False
        readable, _, _ = select.select([self._pidfd], [], [], timeout)
        return not readable  # a pidfd turns readable when its process exits

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None and not self._running():
                self._process.join(self.STATUS_WAIT_S)
                code = self._process.exitcode
                self.returncode = 255 if code is None else code
                self._release()
            return self.returncode

    def wait(self) -> int | None:
        self._running(timeout=None)
        return self.poll()

    def send_signal(self, sig: int) -> None:
        with self._lock:
            if self.returncode is None and self._pidfd is not None:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._pidfd, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _release(self) -> None:
        """Close what the ended process held here at once (not at the next garbage
        collection: a worker starts thousands of crawls). The event pipe stays open until
        its reader has read it to the end (CrawlRun closes it)."""
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        with contextlib.suppress(ValueError):  # still running after STATUS_WAIT_S: leave it
            self._process.close()


@contextlib.contextmanager
def _as_plain_process() -> Iterator[None]:
    """Start a process from here as from a plain Python process, in a Celery worker's pool
    process too. Billiard, Celery's fork of multiprocessing, puts its own description of a
    pool process in the standard library's: a daemonic process (multiprocessing refuses
    children to one, lest they be orphaned when it is terminated; a crawl process cannot be,
    it dies with the process that asked for it, see ``_die_with_requester``) with billiard's
    authentication key (which multiprocessing cannot hand over to a new process)."""
    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    with _lock:
        saved = dict(config)
        config["daemon"] = False
        config["authkey"] = AuthenticationString(bytes(config.get("authkey") or os.urandom(32)))
        try:
            yield
        finally:
            config.clear()
            config.update(saved)


def _crawl_main(job: dict[str, Any], events_pipe: Any, log_path: str, niceness: int) -> None:
    """The forked crawl process: set up as ``python -m crawler.run`` would be, then crawl."""
    # Default signal handling first (the fork server ignores SIGINT); Scrapy installs its own
    # SIGTERM/SIGINT handlers when the crawl starts.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_requester()
    os.nice(niceness)
    # Standard streams: the fork server's are those of whatever process started it (a
    # worker's log, a CLI's JSON output); this crawl's go to its own log.
    with open(log_path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    with open(os.devnull, "rb") as null:
        os.dup2(null.fileno(), 0)
    events = _file_of(events_pipe, "w")

    from crawler.run import run

    sys.exit(run(job, events=events))


def _file_of(connection: Any, mode: str) -> Any:
    """A file on the connection's pipe, which it then hands over (lines, not messages)."""
    fd = os.dup(connection.fileno())
    connection.close()
    return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))


def _die_with_requester() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the requesting process has exited, however it ended
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-requester", daemon=True).start()
