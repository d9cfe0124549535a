"""Survey report benchmark: a privacy-protection survey over N sites' stored audits.

What it measures
----------------
It builds a fresh SQLite database with N registered sites (books and fashion, certified and
applicants), one crawl and one audit per site, written straight into the store (no crawling):
each audit's summary holds a ``privacy_policy`` as the judge writes it (url, clicks from the
homepage, found_by, the ten clauses), drawn at random with realistic shares (about 80 % with a
policy, 1-2 clicks, a few found only through sitemap.xml), plus an earlier round of audits
dated six months before for the comparison. Then it times ``ectrust report survey`` end to
end in-process (query, aggregation, comparison, HTML, PDF through WeasyPrint, CSV, JSON), and
prints the seconds for each stage and the total. The target (issue #8) is under 10 s for
1,000 sites.

Usage::

    python bench/reports.py [--sites 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audits.db import Store  # noqa: E402
from audits.evidence import BlobStore  # noqa: E402
from audits.models import Audit, Certificate, Crawl, Site  # noqa: E402
from reports.data import CLAUSES, Cohort, survey  # noqa: E402
from reports.render import write_survey_report  # noqa: E402

# Share of policies covering each clause (roughly what the farm and real shops show).
COVERAGE = {
    "collection": 0.97,
    "purpose": 0.95,
    "sharing": 0.9,
    "cookies": 0.6,
    "retention": 0.55,
    "security": 0.85,
    "rights": 0.8,
    "contact": 0.9,
    "children": 0.4,
    "changes": 0.7,
}


def policy(rng: random.Random, domain: str) -> dict | None:
    roll = rng.random()
    if roll < 0.2:
        return None
    found_by = "sitemap" if roll < 0.25 else "link"
    return {
        "url": f"http://{domain}/privacy.html",
        "clicks_from_home": None if found_by != "link" else rng.choice((1, 1, 1, 2, 2)),
        "found_by": found_by,
        "clauses": {c: rng.random() < COVERAGE[c] for c in CLAUSES},
    }


def populate(store: Store, sites: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    packs = {"privacy": {"version": "2026.11.1", "sha256": "0" * 64, "file": "privacy.yaml"}}
    with store.session() as session:
        for i in range(sites):
            domain = f"shop{i:04d}.example"
            site = Site(
                domain=domain,
                name=f"网上书店{i:04d}",
                start_url=f"http://{domain}/",
                industry="books" if i % 5 else "fashion",
            )
            session.add(site)
            if i % 3 == 0:
                site.certificates.append(
                    Certificate(
                        cert_id=f"ECT-2026-{i:05d}",
                        tier="red",
                        status="certified",
                        valid_from=now.date() - timedelta(days=100),
                        valid_until=now.date() + timedelta(days=300),
                    )
                )
            for when in (now - timedelta(days=180), now):
                crawl = Crawl(
                    site=site,
                    start_url=site.start_url,
                    status="finished",
                    started_at=when,
                    finished_at=when,
                    pages_fetched=12,
                )
                session.add(crawl)
                session.add(
                    Audit(
                        crawl=crawl,
                        site=site,
                        packs=packs,
                        started_at=when,
                        finished_at=when,
                        score=round(rng.uniform(40, 100), 1),
                        reachable=rng.random() > 0.02,
                        summary={"privacy_policy": policy(rng, domain), "badge": None},
                    )
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="write the database and report here")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="ectrust-bench-reports-"))
    work.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{work / 'bench.db'}")
    t0 = time.perf_counter()
    populate(store, args.sites)
    print(f"stored {args.sites} sites x 2 audits in {time.perf_counter() - t0:.1f} s")

    today = datetime.now(UTC).date()
    stages = {}
    start = time.perf_counter()
    with store.session(readonly=True) as session:
        result = survey(
            session,
            Cohort(since=today - timedelta(days=30), until=today),
            compare=Cohort(since=today - timedelta(days=200), until=today - timedelta(days=150)),
            blobs=BlobStore(work / "home"),  # the integrity check runs, as in the CLI
        )
    stages["query + aggregate"] = time.perf_counter() - start
    for fmt in ("html", "csv", "json", "pdf"):
        t = time.perf_counter()
        write_survey_report(result, work / "report", [fmt], "zh")
        stages[fmt] = time.perf_counter() - t
    total = time.perf_counter() - start
    t = result["totals"]
    print(
        f"survey: {t['sites']} sites, {t['with_policy']} with a policy, "
        f"compared with {result['comparison']['totals']['sites']}"
    )
    for name, secs in stages.items():
        print(f"  {name:18s} {secs:6.2f} s")
    without_pdf = total - stages["pdf"]
    print(
        f"query + HTML + CSV + JSON {without_pdf:.2f} s; with the PDF {total:.2f} s "
        f"(target < 10 s) -> {'OK' if total < 10 else 'TOO SLOW'}"
    )
    pages = _pages(work / "report" / "survey.pdf")
    print(f"report: {work / 'report'} (PDF: {pages} pages)")
    return 0 if total < 10 else 1


def _pages(pdf: Path) -> str:
    """The PDF's page count (poppler's pdfinfo, which the tests use too), or "?"."""
    try:
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    except OSError:
        return "?"
    return next((ln.split()[-1] for ln in info.splitlines() if ln.startswith("Pages:")), "?")


if __name__ == "__main__":
    raise SystemExit(main())
