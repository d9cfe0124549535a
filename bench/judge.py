"""Judging benchmark: CPU time of ``judge_crawl`` over a stored corpus, and a digest of results.

What it measures (issue #10)
----------------------------
Judging a crawl (audits/judge.py ``judge_crawl``: load the snapshots, parse the HTML, run
every rule, record the audit, its findings and its evidence manifest) runs in the CLI process
beside the crawl, so its CPU cost per page limits ``ectrust audit --all``. This script copies
a stored corpus (an SQLite database and its ``ECTRUST_HOME`` evidence files, e.g. one left by
``bench/throughput.py --keep``) to a temporary folder and re-judges every crawl in it, once,
in one process, with the bundled rules:

- ``CPU ms/site`` and ``CPU ms/page``: ``time.process_time()`` of the judging loop divided by
  the crawls and by their snapshots (one site is judged first, untimed, so imports, the rule
  files and the clause model are not counted: they are paid once per process);
- ``sites/s``: crawls judged per wall-clock second (one process, so one core at most);
- ``digest``: SHA-256 over, per new audit, its domain, score, reachable flag and summary and,
  per finding, rule id, status, message and evidence; ``manifests``: SHA-256 over the new
  audits' evidence manifest hashes. The clock is frozen (time-machine) while judging so the
  rows, and so the manifests, do not depend on when the benchmark ran: two versions of the
  code that judge alike print the same digest *and* the same manifest digest.

Every new audit's manifest is also checked against ``audits.manifest.build_body`` (the text
``evidence verify`` trusts) and ``verify_audit``: a faster way of writing it must produce the
same canonical bytes. ``--extra-certs N`` first adds N registered sites with a certificate
each (not crawled): the registry a real deployment judges against.

``--baseline-ref REV`` runs the same measurement on the code of git revision REV (extracted
with ``git archive`` to a temporary folder), on a fresh copy of the corpus, in the same run,
and prints the ratio and whether the digests agree. Each side runs in its own child process.
``--repeat N`` runs each side N times, taking turns, and keeps the run with the least CPU
(a shared machine slows some runs; the digests of the runs must agree).

Usage::

    python bench/judge.py --corpus DIR [--sites N] [--extra-certs N] [--baseline-ref REV]
                          [--repeat N]

``DIR`` holds ``b.db`` and ``home/``; badge hosts are ``verify.trust.example`` (the corpus's).
Figures go to ``bench/out/judge-<timestamp>.json``. Measure on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "bench" / "out"
BADGE_HOSTS = "verify.trust.example"
FROZEN_AT = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def copy_corpus(corpus: Path, work: Path) -> tuple[Path, Path]:
    db, home = work / "b.db", work / "home"
    shutil.copy2(corpus / "b.db", db)
    shutil.copytree(corpus / "home", home)
    for path in [db, *home.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # a read-only corpus gives read-only copies
    return db, home


# ---------------------------------------------------------------------------------------
# the measured side (a child process, importing the code under test from its PYTHONPATH)
# ---------------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _add_certificates(store: Any, count: int) -> None:
    from datetime import date

    from audits.models import Certificate, Site

    with store.session() as session:
        for i in range(count):
            site = Site(
                domain=f"registry{i:05d}.example",
                name=f"Registry shop {i}",
                start_url=f"https://registry{i:05d}.example/",
                created_at=FROZEN_AT,
                updated_at=FROZEN_AT,
            )
            site.certificates.append(
                Certificate(
                    cert_id=f"ECT-BENCH-{i:05d}",
                    tier="red" if i % 2 else "blue",
                    status=("certified", "suspended", "revoked")[i % 3],
                    valid_from=date(2025, 1, 1),
                    valid_until=date(2026, 1, 1) if i % 5 == 0 else date(2027, 12, 31),
                    updated_at=FROZEN_AT,
                )
            )
            session.add(site)


def measure(db: Path, home: Path, sites: int | None, extra_certs: int, out: Path) -> None:
    os.environ["ECTRUST_DB"] = f"sqlite:///{db}"
    os.environ["ECTRUST_HOME"] = str(home)
    os.environ["ECTRUST_BADGE_HOSTS"] = BADGE_HOSTS
    import time_machine
    from sqlalchemy import func, select

    from audits.db import Store
    from audits.evidence import BlobStore
    from audits.judge import judge_crawl
    from audits.manifest import build_body, canonical, verify_audit
    from audits.models import Audit, Crawl, EvidenceManifest, Finding, Snapshot
    from audits.rulepack import load_rules

    store = Store(os.environ["ECTRUST_DB"])
    blobs = BlobStore(home)
    badge_hosts = (BADGE_HOSTS,)
    ruleset = load_rules()
    if extra_certs:
        _add_certificates(store, extra_certs)
    with store.session(readonly=True) as session:
        crawl_ids = list(session.scalars(select(Crawl.id).order_by(Crawl.id)))[:sites]
        pages = session.scalar(
            select(func.count()).select_from(Snapshot).where(Snapshot.crawl_id.in_(crawl_ids))
        )
        first_new = (session.scalar(select(func.max(Audit.id))) or 0) + 1
    with time_machine.travel(FROZEN_AT, tick=False):
        judge_crawl(store, crawl_ids[0], ruleset, blobs, badge_hosts)  # warm-up, untimed
        first_new += 1
        wall, cpu = time.perf_counter(), time.process_time()
        for crawl_id in crawl_ids:
            judge_crawl(store, crawl_id, ruleset, blobs, badge_hosts)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall

    digest, manifests = hashlib.sha256(), hashlib.sha256()
    lines: list[str] = []
    problems: list[str] = []
    with store.session(readonly=True) as session:
        audits = session.scalars(
            select(Audit).where(Audit.id >= first_new).order_by(Audit.id)
        ).all()
        for audit in audits:
            findings = session.scalars(
                select(Finding).where(Finding.audit_id == audit.id).order_by(Finding.id)
            ).all()
            line = _canonical(
                {
                    "domain": audit.site.domain,
                    "score": audit.score,
                    "reachable": audit.reachable,
                    "summary": audit.summary,
                    "findings": [[f.rule_id, f.status, f.message, f.evidence] for f in findings],
                }
            )
            lines.append(line)
            digest.update(line.encode("utf-8") + b"\n")
            manifest = session.scalars(
                select(EvidenceManifest).where(EvidenceManifest.audit_id == audit.id)
            ).one()
            manifests.update(manifest.sha256.encode("ascii") + b"\n")
            previous = (
                session.get(EvidenceManifest, manifest.previous_id)
                if manifest.previous_id
                else None
            )
            body = canonical(build_body(session, audit, previous)).decode("utf-8")
            if body != manifest.body:
                problems.append(f"audit {audit.id}: manifest differs from build_body")
            verdict = verify_audit(session, audit, blobs, files=False)
            if verdict.status != "ok":
                problems.append(f"audit {audit.id}: {verdict.status} {verdict.problems}")
    result = {
        "sites": len(crawl_ids),
        "pages": pages,
        "audits": len(lines),
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_ms_per_site": 1000 * cpu / len(crawl_ids),
        "cpu_ms_per_page": 1000 * cpu / max(pages, 1),
        "sites_per_s": len(crawl_ids) / wall,
        "digest": digest.hexdigest(),
        "manifests": manifests.hexdigest(),
        "problems": problems,
        "lines": lines,
    }
    out.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")


# ---------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------


def run_side(source: Path, corpus: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    work.mkdir(parents=True)
    db, home = copy_corpus(corpus, work)
    out = work / "result.json"
    env = {**os.environ, "PYTHONPATH": str(source), "PYTHONHASHSEED": "0"}
    command = [
        sys.executable, str(Path(__file__).resolve()), "--measure", str(db), str(home),
        str(out), "--sites", str(args.sites or 0), "--extra-certs", str(args.extra_certs),
    ]  # fmt: skip
    subprocess.run(command, env=env, cwd=source, check=True)
    return json.loads(out.read_text(encoding="utf-8"))


def extract(ref: str, target: Path) -> None:
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)


def show(label: str, r: dict[str, Any]) -> None:
    print(
        f"{label:<10} {r['sites']:>5} sites {r['pages']:>6} pages  "
        f"CPU {r['cpu_ms_per_site']:7.1f} ms/site {r['cpu_ms_per_page']:6.2f} ms/page  "
        f"{r['sites_per_s']:6.1f} sites/s  digest {r['digest'][:16]}  "
        f"manifests {r['manifests'][:16]}"
    )
    for problem in r["problems"][:10]:
        print(f"  PROBLEM: {problem}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        help="(required) a folder holding b.db and home/ (python bench/throughput.py --sites 300 "
        "--no-workers --keep leaves one and prints where)",
    )
    parser.add_argument("--sites", type=int, default=0, help="judge only the first N crawls")
    parser.add_argument("--extra-certs", type=int, default=0)
    parser.add_argument("--baseline-ref", help="git revision to compare with")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side (least CPU)")
    parser.add_argument("--measure", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        db, home, out = args.measure
        measure(db, home, args.sites or None, args.extra_certs, out)
        return 0
    if args.corpus is None:
        parser.error("--corpus DIR is required")
    missing = [n for n in ("b.db", "home") if not (args.corpus / n).exists()]
    if missing:
        parser.error(f"--corpus {args.corpus}: no {' or '.join(missing)} there")
    with tempfile.TemporaryDirectory(prefix="ectrust-judge-") as tmp:
        root = Path(tmp)
        sides = {"current": REPO}
        if args.baseline_ref:
            extract(args.baseline_ref, root / "baseline-src")
            sides = {"baseline": root / "baseline-src", **sides}
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in sides}
        for i in range(args.repeat):  # the sides take turns, so both see the same load
            for label, source in sides.items():
                runs[label].append(run_side(source, args.corpus, root / f"{label}-{i}", args))
    # the run with the least CPU: the others were slowed by the rest of the machine
    results = {label: min(rs, key=lambda r: r["cpu_s"]) for label, rs in runs.items()}
    for label, rs in runs.items():
        if len(rs) > 1:
            each = ", ".join(f"{r['cpu_ms_per_site']:.1f}" for r in rs)
            print(f"{label} CPU ms/site per run: {each} (the least is shown)")
        if len({(r["digest"], r["manifests"]) for r in rs}) > 1:
            print(f"{label}: runs of the same code gave different digests")
            results[label]["problems"].append("runs of the same code differ")
    if args.extra_certs:
        print(f"registry: {args.extra_certs} extra certificates")
    for label, r in results.items():
        show(label, r)
    ok = not results["current"]["problems"]
    if "baseline" in results:
        base, cur = results["baseline"], results["current"]
        same = base["digest"] == cur["digest"] and base["manifests"] == cur["manifests"]
        print(
            f"current/baseline CPU per site: "
            f"{cur['cpu_ms_per_site'] / base['cpu_ms_per_site']:.2f}  "
            f"({base['cpu_ms_per_site'] / cur['cpu_ms_per_site']:.2f}x faster)  "
            f"results identical: {'yes' if same else 'NO'}"
        )
        if not same:
            for i, (a, b) in enumerate(zip(base["lines"], cur["lines"], strict=False)):
                if a != b:
                    print(
                        f"  first difference, audit {i}:\n    baseline {a[:600]}\n"
                        f"    current  {b[:600]}"
                    )
                    break
        ok = ok and same
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for r in results.values():
        r.pop("lines")
    (OUT_DIR / f"judge-{stamp}.json").write_text(
        json.dumps({"args": {"sites": args.sites, "extra_certs": args.extra_certs,
                             "baseline_ref": args.baseline_ref, "repeat": args.repeat},
                    **results}, indent=2),
        encoding="utf-8",
    )  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
