"""Rendering benchmark: headless Chromium throughput, peak memory, and what ``auto`` renders.

What it measures
----------------
One run builds the same generated Chinese shop farm as ``bench/crawl.py`` (N sites of about 18
pages, served on 127.0.0.1 by nginx when installed, else aiohttp) and turns a share of the sites
(``--js-share``, default one in three) into JavaScript shops: every page of such a site is an
empty ``<div id="app">`` filled by a script, as single-page-app shops are. Then:

a) ``ectrust audit --all --render auto`` over the mixed farm. Printed: how many pages and sites
   ``auto`` chose to render, and whether it chose right (every page of a JS site rendered, no
   page of a plain site rendered; both are counted and any miss is shown).
b) ``ectrust audit <JS sites> --render always``: only rendered pages (at least 200 with the
   defaults). Printed: rendered pages per second (wall time of the whole command, start-up
   included), peak RSS of the command's whole process tree (CLI, crawl child, Playwright driver
   and every Chromium process, sampled every 0.1 s) and CPU seconds.

Both runs must succeed completely (every site reachable, no failed snapshot) or the script
stops with an error. Politeness is off as in bench/crawl.py (no delay, 2 requests per site).
The browser is Debian's /usr/bin/chromium; traffic stays on 127.0.0.1 (``--connect-to``).

Usage::

    python bench/render.py [--sites 54] [--js-share 0.34] [--max-pages 30] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crawl import (
    CONCURRENCY,
    MB,
    OUT_DIR,
    BenchError,
    _tail,
    ectrust_command,
    ectrust_env,
    generate_farm,
    run_measured,
    start_server,
    write_sites_csv,
)

SHELL = (
    '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title>'
    '</head><body><div id="app"></div><script>'
    "setTimeout(function () {{ document.getElementById('app').innerHTML = {body}; }}, 50);"
    "</script></body></html>"
)


def to_js_site(site_dir: Path) -> int:
    """Rewrite every page of a generated site as an app shell whose script inserts the body."""
    import re

    count = 0
    for page in site_dir.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        title = re.search(r"<title>(.*?)</title>", html, re.S)
        body = re.search(r"<body[^>]*>(.*)</body>", html, re.S)
        if not body:
            continue
        page.write_text(
            SHELL.format(
                title=title.group(1) if title else "",
                body=json.dumps(body.group(1)).replace("</", "<\\/"),
            ),
            encoding="utf-8",
        )
        count += 1
    return count


def audit(work: Path, port: int, args: list[str], label: str, server) -> tuple:  # type: ignore[no-untyped-def]
    env = ectrust_env(work)
    cmd = [
        *ectrust_command(),
        "audit",
        *args,
        "--json",
        "--connect-to",
        f"::127.0.0.1:{port}",
    ]
    for key, value in CONCURRENCY.items():
        cmd += ["-s", f"{key}={json.dumps(value)}"]
    stdout, stderr = work / f"{label}.json", work / f"{label}.stderr"
    measured = run_measured(cmd, env=env, cwd=work, stdout=stdout, stderr=stderr, server=server)
    if measured.returncode != 0:
        raise BenchError(f"{label}: ectrust audit exited {measured.returncode}:\n{_tail(stderr)}")
    audits = json.loads(stdout.read_text(encoding="utf-8"))["audits"]
    ids = [a["crawl_id"] for a in audits]
    unreachable = [a["domain"] for a in audits if not a["reachable"]]
    if unreachable:
        raise BenchError(f"{label}: {len(unreachable)} site(s) unreachable: {unreachable[:5]}")
    with contextlib.closing(sqlite3.connect(work / "b.db")) as db:
        marks = ",".join("?" * len(ids))
        rows = db.execute(
            "SELECT t.domain, s.url, s.status, s.error, s.rendered, s.render_reason "
            "FROM snapshots s JOIN crawls c ON c.id = s.crawl_id JOIN sites t ON t.id = c.site_id "
            f"WHERE c.id IN ({marks})",
            ids,
        ).fetchall()
    failed = [r for r in rows if r[2] != 200 or r[3] is not None]
    if failed:
        raise BenchError(f"{label}: {len(failed)} snapshot(s) failed, e.g. {failed[:3]}")
    return measured, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sites", type=int, default=54)
    parser.add_argument("--js-share", type=float, default=0.34)
    parser.add_argument("--pages-per-site", type=int, default=18)
    parser.add_argument("--max-pages", type=int, default=30)
    parser.add_argument("--server", choices=("auto", "nginx", "aiohttp"), default="auto")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ectrust-bench-render-"))
    server = None
    try:
        work.chmod(0o711)
        farm_root = work / "farm"
        farm_root.mkdir()
        farm_root.chmod(0o755)
        farm = generate_farm(farm_root, args.sites, args.pages_per_site)
        step = max(1, round(1 / args.js_share)) if args.js_share > 0 else 0
        js_hosts = [h for i, h in enumerate(farm.hosts) if step and i % step == 0]
        js_pages = sum(to_js_site(farm_root / h) for h in js_hosts)
        for path in farm_root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        print(
            f"farm: {len(farm.hosts)} sites ({len(js_hosts)} JavaScript shops, {js_pages} app-"
            f"shell pages), {farm.pages} pages",
            flush=True,
        )
        server = start_server(farm_root, work, farm.hosts[0], args.server)
        print(f"server: {server.name} on 127.0.0.1:{server.port}", flush=True)
        write_sites_csv(work / "sites.csv", farm.hosts)
        subprocess.run(
            [*ectrust_command(), "sites", "import", str(work / "sites.csv")],
            env=ectrust_env(work),
            cwd=work,
            check=True,
            capture_output=True,
        )

        print("a) ectrust audit --all --render auto (mixed farm) …", flush=True)
        auto_m, rows = audit(
            work,
            server.port,
            ["--all", "--render", "auto", "--max-pages", str(args.max_pages)],
            "auto",
            server,
        )
        js = set(js_hosts)
        rendered = [r for r in rows if r[4]]
        missed = [r[1] for r in rows if r[0] in js and not r[4] and r[1].endswith(".html")]
        wrong = [r[1] for r in rows if r[0] not in js and r[4]]
        sites_rendered = {r[0] for r in rendered}
        print(
            f"   auto rendered {len(rendered)} of {len(rows)} pages "
            f"({100 * len(rendered) / max(1, len(rows)):.0f}%), on {len(sites_rendered)} of "
            f"{len(farm.hosts)} sites ({100 * len(sites_rendered) / len(farm.hosts):.0f}%); "
            f"JS-site HTML pages left static: {len(missed)}; plain-site pages rendered: "
            f"{len(wrong)}"
        )
        if missed or wrong:
            print(f"   misses: {missed[:5]} wrong: {wrong[:5]}")
        print(
            f"   {auto_m.seconds:.1f} s, {len(rows) / auto_m.seconds:.1f} pages/s, peak RSS "
            f"{auto_m.peak_rss_mb:.0f} MB over {auto_m.processes} processes"
        )

        print("b) ectrust audit <JS shops> --render always …", flush=True)
        always_m, rows_b = audit(
            work,
            server.port,
            [*js_hosts, "--render", "always", "--max-pages", str(args.max_pages)],
            "always",
            server,
        )
        n = sum(1 for r in rows_b if r[4])
        if n < 200:
            print(f"   WARNING: only {n} rendered pages; use more --sites for >= 200")
        print(
            f"   rendered pages: {n} in {always_m.seconds:.1f} s = {n / always_m.seconds:.2f} "
            f"rendered pages/s (whole command); peak RSS {always_m.peak_rss_mb:.0f} MB over "
            f"{always_m.processes} processes (largest {always_m.peak_rss_largest_process_mb:.0f}"
            f" MB); CPU {always_m.cpu_seconds:.1f} s; other CPU on the machine "
            f"{always_m.other_cpu_seconds:.1f} s"
        )
        shots = work / "home" / "blobs"
        print(f"   evidence store: {sum(p.stat().st_size for p in shots.rglob('*')) / MB:.1f} MB")
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        out = OUT_DIR / f"render-{stamp}.json"
        out.write_text(
            json.dumps(
                {
                    "sites": len(farm.hosts),
                    "js_sites": len(js_hosts),
                    "auto": {
                        "pages": len(rows),
                        "rendered": len(rendered),
                        "sites_rendered": len(sites_rendered),
                        "missed": len(missed),
                        "wrongly_rendered": len(wrong),
                        "seconds": auto_m.seconds,
                        "peak_rss_mb": auto_m.peak_rss_mb,
                    },
                    "always": {
                        "rendered": n,
                        "seconds": always_m.seconds,
                        "pages_per_s": n / always_m.seconds,
                        "peak_rss_mb": always_m.peak_rss_mb,
                        "cpu_s": always_m.cpu_seconds,
                    },
                },
                indent=2,
            )
        )
        print(f"figures written to {out}")
        return 0
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    sys.exit(main())
