"""``ectrust demo``: serve the bundled shops on 127.0.0.1, audit them, write a report.

Everything stays on this machine: the shops' names (books.example …) are mapped to the
local server with ``--connect-to``, exactly as an operator would map a staging site.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from audits.db import Store
from audits.evidence import BlobStore
from audits.registry import import_rows, read_csv
from audits.rulepack import load_rules
from ectrust.config import Settings
from ectrust.console import err
from ectrust.pipeline import CrawlOptions, run_audits
from ectrust.sitefarm import SiteFarm
from reports.data import site_entries
from reports.render import write_site_report

DEMO_DIR = Path(__file__).parent
SITES_DIR = DEMO_DIR / "sites"
SITES_CSV = DEMO_DIR / "sites.csv"
BADGE_HOST = "verify.trust.example"


def run_demo(workdir: Path, lang: str = "en") -> list[Path]:
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env(
        {
            "ECTRUST_DB": f"sqlite:///{workdir / 'ectrust.db'}",
            "ECTRUST_HOME": str(workdir / "home"),
            "ECTRUST_BADGE_HOSTS": os.environ.get("ECTRUST_BADGE_HOSTS") or BADGE_HOST,
        }
    )
    store = Store(settings.db_url)
    rows = read_csv(SITES_CSV)
    with store.session() as session:
        import_rows(session, rows, SITES_CSV.name, actor="demo")
    ruleset = load_rules()
    with SiteFarm(SITES_DIR) as farm:
        err.print(
            f"demo shops served on 127.0.0.1:{farm.port}; auditing {len(rows)} sites …",
            highlight=False,
        )
        options = CrawlOptions(connect_to=[f"::127.0.0.1:{farm.port}"])

        def progress(kind: str, info: dict[str, Any]) -> None:
            if kind == "audited":
                err.print(f"  audited {info['domain']}: score {info['score']}", highlight=False)

        result = run_audits(store, settings, [r.domain for r in rows], ruleset, options, progress)
    # The same report as `ectrust report site`: guidance, thumbnails, evidence integrity.
    with store.session(readonly=True) as session:
        entries = site_entries(session, result.audit_ids, lang, BlobStore(settings.home))
    store.dispose()
    docs = [e["doc"] for e in entries]
    return write_site_report(docs, workdir / "report", ["html", "json"], lang, entries=entries)
