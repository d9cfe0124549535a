"""Throughput benchmark at scale: 1,000 shops, ectrust against bare Scrapy, memory, workers.

What it measures (issue #10)
----------------------------
One run builds a farm of N generated Chinese shop sites (default 1,000; about 20 pages each,
32-48 KB of realistic shop markup with Chinese text, footer links to 隐私政策 / 投诉举报 /
营业执照 …) and serves it with nginx on 127.0.0.1. The farm, the server, the bare spider and
the measuring (process-tree RSS and CPU sampled every 0.1 s) are ``bench/crawl.py``'s, reused
here, so both benchmarks measure the same way. Then, against that same farm:

1. ``ectrust audit --all --json`` over all N sites in one process tree (SQLite; the crawl
   split between processes as ``ECTRUST_CRAWLERS=auto`` chooses: one per core), politeness
   switched off the same way on both sides (``DOWNLOAD_DELAY=0``, no AutoThrottle, 64
   requests in flight, 2 per site): sites per minute, pages per second, peak RSS of the whole
   tree, and the tree's RSS when N/4, N/2 and N sites were crawled (1,000 sites: at 250, 500
   and 1,000; the last is the whole run's peak, judging included) — it must stay flat, not
   grow with the number of sites.
2. A bare Scrapy spider fetching exactly the pages ectrust stored, with identical settings:
   the floor of the crawling stack. ``ectrust/bare`` pages per second is the headline.
3. One worker against two: ``ectrust worker --concurrency 1`` processes on a Redis broker
   (``ECTRUST_BROKER=redis://127.0.0.1:6379/<db>``), then ``ectrust audit --all --distributed
   --json`` over the first ``--worker-sites`` sites, timed until it returns (it waits for the
   jobs). Skipped with a message when ``ectrust worker`` or Redis is not available.

``--repeat N`` (N > 1) runs N - 1 more rounds of both, alternating which side goes first,
each ectrust round on a fresh database, and also reports every round's ratio with their
median: on a shared machine one pair of runs can be off by a fifth either way, and a
paired, order-alternated median is what to compare across revisions. The headline ratio is
then that median.

Targets: ectrust >= 0.70 of bare Scrapy; peak RSS < 500 MB for 1,000 sites; two workers
>= 1.6x one worker. Figures only mean something on an otherwise idle machine (the "other
CPU" line says how busy it was). Written to ``bench/out/throughput-<timestamp>.json``.

Usage::

    python bench/throughput.py [--sites 1000] [--pages-per-site 20] [--max-pages 30]
                               [--worker-sites 200] [--no-workers] [--repeat N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crawl as farmbench  # bench/ is a folder of scripts, not a package

REPO = farmbench.REPO
MB = farmbench.MB
PAGE_BYTES = (32_000, 48_000)  # about 40 KB a page
TARGET_RATIO = 0.70
TARGET_PEAK_MB = 500
TARGET_WORKER_SPEEDUP = 1.6
REDIS = ("127.0.0.1", 6379)
WORKER_WARMUP_S = 10.0


def memory_checkpoints(
    series: Sequence[tuple[float, int, int]], marks: Sequence[int], total: int, peak_mb: float
) -> list:
    """For each mark: (mark, seconds, tree RSS MB at the first reading with >= mark sites
    crawled, peak tree RSS MB up to then), or None when no reading got there. The mark
    ``total`` is the whole run's peak (judging may go on after the last site is crawled)."""
    out: list[tuple[int, float, float, float] | None] = []
    for mark in marks:
        peak = 0
        hit = None
        for seconds, rss, done in series:
            peak = max(peak, rss)
            if done >= mark:
                hit = (mark, seconds, rss / MB, peak / MB)
                break
        if mark == total and series:
            at = hit[1] if hit else series[-1][0]
            rss = hit[2] if hit else series[-1][1] / MB
            hit = (mark, at, rss, peak_mb)
        out.append(hit)
    return out


# ---------------------------------------------------------------------------------------
# repeated rounds
# ---------------------------------------------------------------------------------------


@dataclass
class Round:
    """One ectrust run and one bare run, back to back."""

    number: int
    ectrust_first: bool
    ectrust_s: float
    bare_s: float
    ratio: float  # ectrust pages/s over bare pages/s


def round_of(
    number: int, ectrust_first: bool, ectrust: farmbench.Result, bare: farmbench.Result
) -> Round:
    return Round(
        number=number,
        ectrust_first=ectrust_first,
        ectrust_s=ectrust.measured.seconds,
        bare_s=bare.measured.seconds,
        ratio=ectrust.pages_per_s / bare.pages_per_s,
    )


def more_rounds(
    work: Path,
    farm: farmbench.Farm,
    server: farmbench.Server,
    max_pages: int,
    urls: list[str],
    count: int,
) -> list[Round]:
    """Rounds 2 .. count + 1: bare first in even rounds, so drift in the machine's load
    does not always favour the same side. Each round gets its own folder (fresh database
    and evidence store), removed after it."""
    rounds: list[Round] = []
    for number in range(2, count + 2):
        run_dir = work / f"round-{number}"
        run_dir.mkdir()
        ectrust_first = number % 2 == 1
        print(
            f"round {number}: {'ectrust then bare' if ectrust_first else 'bare then ectrust'} …",
            flush=True,
        )
        if ectrust_first:
            ectrust, _ = farmbench.run_ectrust(run_dir, farm, server, max_pages)
            bare = farmbench.run_bare(run_dir, urls, server, ectrust.sites)
        else:
            bare = farmbench.run_bare(run_dir, urls, server, len(farm.hosts))
            ectrust, _ = farmbench.run_ectrust(run_dir, farm, server, max_pages)
        if ectrust.pages != bare.pages:
            raise farmbench.BenchError(
                f"round {number}: ectrust fetched {ectrust.pages} pages, the bare list has "
                f"{bare.pages}; the rounds would not compare the same work"
            )
        rounds.append(round_of(number, ectrust_first, ectrust, bare))
        shutil.rmtree(run_dir, ignore_errors=True)
    return rounds


def print_rounds(rounds: Sequence[Round]) -> float:
    """Print each round and the spread; returns the median ratio."""
    print(f"{'round':>5}  {'order':<18}{'ectrust s':>10}{'bare s':>8}{'ratio':>7}")
    for r in rounds:
        order = "ectrust then bare" if r.ectrust_first else "bare then ectrust"
        print(f"{r.number:>5}  {order:<18}{r.ectrust_s:>10.1f}{r.bare_s:>8.1f}{r.ratio:>7.2f}")
    ratios = [r.ratio for r in rounds]
    median = statistics.median(ratios)
    fastest = min(r.bare_s for r in rounds) / min(r.ectrust_s for r in rounds)
    print(
        f"ratio over {len(rounds)} rounds: median {median:.2f} (min {min(ratios):.2f}, "
        f"max {max(ratios):.2f}); fastest ectrust run against fastest bare run: {fastest:.2f}"
    )
    return median


# ---------------------------------------------------------------------------------------
# one worker against two
# ---------------------------------------------------------------------------------------


@dataclass
class WorkerRun:
    workers: int
    sites: int
    pages: int
    seconds: float

    @property
    def sites_per_min(self) -> float:
        return self.sites / self.seconds * 60


def _redis_up() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=2):
            return True
    except OSError:
        return False


def workers_unavailable(env: dict[str, str], work: Path) -> str | None:
    """Why the worker comparison cannot run here, or None when it can."""
    probe = subprocess.run(
        [*farmbench.ectrust_command(), "worker", "--help"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return "`ectrust worker` is not available in this checkout (the distributed interface)"
    if not _redis_up():
        return f"no Redis on {REDIS[0]}:{REDIS[1]}"
    return None


def _flush_redis(db: int) -> None:
    import redis

    redis.Redis(host=REDIS[0], port=REDIS[1], db=db).flushdb()


def run_workers(
    work: Path, hosts: Sequence[str], server: farmbench.Server, max_pages: int, workers: int
) -> WorkerRun:
    """``workers`` x ``ectrust worker --concurrency 1``, then ``audit --all --distributed``."""
    run_dir = work / f"workers-{workers}"
    run_dir.mkdir()
    env = farmbench.ectrust_env(run_dir)
    redis_db = 10 + workers
    env["ECTRUST_BROKER"] = f"redis://{REDIS[0]}:{REDIS[1]}/{redis_db}"
    _flush_redis(redis_db)
    csv_path = run_dir / "sites.csv"
    farmbench.write_sites_csv(csv_path, hosts)
    cmd = farmbench.ectrust_command()
    imported = subprocess.run(
        [*cmd, "sites", "import", str(csv_path)], env=env, cwd=run_dir, capture_output=True
    )
    if imported.returncode != 0:
        raise farmbench.BenchError(f"sites import failed: {imported.stderr.decode()[-2000:]}")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(workers):
            log = (run_dir / f"worker-{i}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [*cmd, "worker", "--concurrency", "1"],
                    env=env,
                    cwd=run_dir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        time.sleep(WORKER_WARMUP_S)  # connected to the broker before the clock starts
        dead = [p.pid for p in procs if p.poll() is not None]
        if dead:
            raise farmbench.BenchError(f"worker(s) {dead} exited; see {run_dir}/worker-*.log")
        audit = [
            *cmd,
            "audit",
            "--all",
            "--distributed",
            "--json",
            "--max-pages",
            str(max_pages),
            "--connect-to",
            f"::127.0.0.1:{server.port}",
        ]
        for key, value in farmbench.CONCURRENCY.items():
            audit += ["-s", f"{key}={json.dumps(value)}"]
        started = time.perf_counter()
        done = subprocess.run(audit, env=env, cwd=run_dir, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    finally:
        for p in procs:
            farmbench._stop_process(p, group=True)
        _flush_redis(redis_db)
    if done.returncode != 0:
        raise farmbench.BenchError(
            f"audit --distributed exited {done.returncode}: {done.stderr[-2000:]}"
        )
    audits = json.loads(done.stdout)["audits"]
    unreachable = [a["domain"] for a in audits if not a.get("reachable")]
    if len(audits) != len(hosts) or unreachable:
        raise farmbench.BenchError(
            f"distributed run: {len(audits)} audits for {len(hosts)} sites, "
            f"unreachable {unreachable[:5]}"
        )
    pages = sum(int(a["pages_fetched"]) for a in audits)
    return WorkerRun(workers=workers, sites=len(audits), pages=pages, seconds=seconds)


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "target met" if ok else "TARGET MISSED"


def benchmark(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="ectrust-throughput-"))
    server: farmbench.Server | None = None
    doc: dict[str, Any] = {}
    try:
        work.chmod(0o711)  # nginx workers (nobody) must reach farm/; nothing else is shared
        farm_root = work / "farm"
        farm_root.mkdir()
        farm_root.chmod(0o755)
        farm = farmbench.generate_farm(
            farm_root, args.sites, args.pages_per_site, page_bytes=PAGE_BYTES
        )
        print(
            f"farm: {args.sites} sites, {farm.pages} pages + robots.txt, "
            f"{farm.bytes / MB:.1f} MB (avg {farm.bytes / farm.pages / 1024:.1f} KB/page), "
            f"generated in {farm.seconds:.1f} s",
            flush=True,
        )
        server = farmbench.start_server(farm_root, work, farm.hosts[0], args.server)
        print(f"server: {server.name} on 127.0.0.1:{server.port}", flush=True)
        cpus = os.cpu_count() or 1
        print(
            "settings (all runs): "
            f"{', '.join(f'{k}={v}' for k, v in farmbench.CONCURRENCY.items())}; "
            f"ectrust --max-pages {args.max_pages}; {cpus} CPU(s)",
            flush=True,
        )

        from ectrust.pipeline import crawler_count

        print(
            f"ectrust crawl processes: {crawler_count(args.sites)} (ECTRUST_CRAWLERS=auto); "
            "the bare spider is one process",
            flush=True,
        )
        print("running ectrust audit --all --json …", flush=True)
        ectrust, urls = farmbench.run_ectrust(
            work, farm, server, args.max_pages, track_progress=True
        )
        print(f"running bare scrapy spider over the same {len(urls)} URLs …", flush=True)
        bare = farmbench.run_bare(work, urls, server, ectrust.sites)

        print()
        farmbench.print_table([ectrust, bare])
        ratio = ectrust.pages_per_s / bare.pages_per_s
        m = ectrust.measured
        print()
        print(
            f"ectrust/bare pages/s{' (round 1)' if args.repeat > 1 else ''}: {ratio:.2f} "
            f"(target >= {TARGET_RATIO:.2f}: {_verdict(ratio >= TARGET_RATIO)})"
        )
        print(
            f"ectrust: {ectrust.sites_per_min:.0f} sites/min, {ectrust.pages_per_s:.1f} pages/s "
            f"over {ectrust.sites} sites"
        )
        print(
            "CPU per page (all processes, start-up included): "
            f"ectrust {m.cpu_seconds / ectrust.pages * 1000:.2f} ms, "
            f"bare {bare.measured.cpu_seconds / bare.pages * 1000:.2f} ms "
            f"({m.cpu_seconds / ectrust.pages / (bare.measured.cpu_seconds / bare.pages):.1f}x: "
            "ectrust also parses, stores and judges every page)"
        )
        print(
            f"ectrust peak RSS (whole process tree): {m.peak_rss_mb:.0f} MB over "
            f"{m.processes} processes, largest single process "
            f"{m.peak_rss_largest_process_mb:.0f} MB (target < {TARGET_PEAK_MB} MB for 1,000 "
            f"sites: {_verdict(m.peak_rss_mb < TARGET_PEAK_MB)})"
        )
        marks = [args.sites // 4, args.sites // 2, args.sites]
        checkpoints = memory_checkpoints(m.series, marks, args.sites, m.peak_rss_mb)
        parts = []
        for mark, hit in zip(marks, checkpoints, strict=True):
            if hit is None:
                parts.append(f"{mark} sites: not sampled")
            else:
                _, sec, rss, peak = hit
                parts.append(f"{mark} sites: {rss:.0f} MB (peak so far {peak:.0f} MB, {sec:.0f} s)")
        print("ectrust RSS as sites are crawled: " + "; ".join(parts) + " (peak of the whole run)")
        if all(checkpoints):
            first, last = checkpoints[0][3], checkpoints[-1][3]  # type: ignore[index]
            growth = last - first
            print(
                f"memory growth from {marks[0]} to {marks[-1]} sites: {growth:+.0f} MB peak "
                f"({'flat' if growth < 0.15 * first else 'GROWING with the number of sites'})"
            )
        busy = farmbench.print_cpu_summary(ectrust, bare, cpus)
        rounds = [round_of(1, True, ectrust, bare)]
        headline = ratio
        if args.repeat > 1:
            print()
            rounds += more_rounds(work, farm, server, args.max_pages, urls, args.repeat - 1)
            print()
            headline = print_rounds(rounds)
            print(
                f"ectrust/bare pages/s, median of {len(rounds)} paired rounds: {headline:.2f} "
                f"(target >= {TARGET_RATIO:.2f}: {_verdict(headline >= TARGET_RATIO)})"
            )
        doc = {
            "sites": args.sites,
            "pages_per_site": args.pages_per_site,
            "max_pages": args.max_pages,
            "farm_pages": farm.pages,
            "farm_mb": round(farm.bytes / MB, 1),
            "server": server.name,
            "cpus": cpus,
            "settings": farmbench.CONCURRENCY,
            "ectrust": farmbench._results_json(ectrust),
            "bare": farmbench._results_json(bare),
            "ratio_pages_per_s": round(ratio, 3),
            "rounds": [
                {
                    "round": r.number,
                    "ectrust_first": r.ectrust_first,
                    "ectrust_s": round(r.ectrust_s, 2),
                    "bare_s": round(r.bare_s, 2),
                    "ratio": round(r.ratio, 3),
                }
                for r in rounds
            ],
            "ratio_median_of_rounds": round(headline, 3),
            "memory_checkpoints_mb": {
                str(mark): (None if hit is None else round(hit[2], 1))
                for mark, hit in zip(marks, checkpoints, strict=True)
            },
            "machine_busy_with_other_work": busy,
        }

        print()
        if args.no_workers:
            print("workers: skipped (--no-workers)")
        else:
            reason = workers_unavailable(farmbench.ectrust_env(work), work)
            if reason:
                print(f"workers: SKIPPED, {reason}")
                doc["workers"] = {"skipped": reason}
            else:
                hosts = farm.hosts[: args.worker_sites]
                print(f"workers: {len(hosts)} sites, one worker then two …", flush=True)
                one = run_workers(work, hosts, server, args.max_pages, 1)
                two = run_workers(work, hosts, server, args.max_pages, 2)
                speedup = one.seconds / two.seconds
                for r in (one, two):
                    print(
                        f"{r.workers} worker(s): {r.sites} sites, {r.pages} pages in "
                        f"{r.seconds:.1f} s = {r.sites_per_min:.0f} sites/min, "
                        f"{r.pages / r.seconds:.1f} pages/s"
                    )
                print(
                    f"two workers / one worker: {speedup:.2f}x (target >= "
                    f"{TARGET_WORKER_SPEEDUP}: {_verdict(speedup >= TARGET_WORKER_SPEEDUP)})"
                )
                doc["workers"] = {
                    "sites": len(hosts),
                    "one_s": round(one.seconds, 1),
                    "two_s": round(two.seconds, 1),
                    "speedup": round(speedup, 2),
                }

        farmbench.OUT_DIR.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = farmbench.OUT_DIR / f"throughput-{stamp}.json"
        doc["timestamp"] = stamp
        out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"figures written to {out.relative_to(REPO)}")
        return 0
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--sites", type=int, default=1000, help="generated shops (default 1000)")
    p.add_argument("--pages-per-site", type=int, default=20, help="pages per shop (default 20)")
    p.add_argument("--max-pages", type=int, default=30, help="ectrust --max-pages (default 30)")
    p.add_argument(
        "--worker-sites",
        type=int,
        default=200,
        help="sites for the one-worker/two-worker comparison (default 200)",
    )
    p.add_argument("--no-workers", action="store_true", help="skip the worker comparison")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="rounds of ectrust and bare, alternating which goes first; the headline ratio "
        "is then the median of the rounds (default 1)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument(
        "--server", choices=("auto", "nginx", "aiohttp"), default="nginx", help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    if args.sites < 4 or args.pages_per_site < 10:
        p.error("--sites must be >= 4 and --pages-per-site >= 10")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with farmbench._sigterm_as_interrupt():
            return benchmark(args)
    except farmbench.BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
