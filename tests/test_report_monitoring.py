"""The monitoring report (issue #8) from a realistic history: the 32-shop farm of
tests/report_sites.py audited, then certified shops change (a policy removed, a badge
unlinked, hostile text rewritten, a complaint link dropped), a certificate is suspended and
one is about to expire, and `audit --due` runs every two days for five weeks with a webhook
receiving the alert digests. Numbers are checked against the stored audits and findings,
in both languages, HTML and PDF; crawled markup stays inert; a tampered evidence body is
flagged next to its evidence and in the exports."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from lxml import html as lxml_html

from audits.changes import RANK
from ectrust.sitefarm import SiteFarm
from tests import report_sites
from tests.alert_receivers import WebhookReceiver
from tests.conftest import Cli, write_site
from tests.dbs import database_url, query
from tests.test_reports import _assert_inert

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
STEP = timedelta(days=2)
STEPS = 17  # T0 + 2 d … T0 + 34 d
SINCE, UNTIL = "2026-11-02", "2026-12-06"
EXPIRING = ("shop16.example", date(2026, 12, 20))  # 14 days after the period
SUSPENDED = "shop12.example"
pytestmark = pytest.mark.timeout(1200)  # five weeks of re-checks of a 32-shop farm
FAST = ("-s", "DOWNLOAD_DELAY=0", "--max-pages", "8")


def _change_sites(root: Path) -> None:
    """What the shops do between their first audit and the re-checks."""
    # shop04 (certified, footer link) removes its privacy policy
    write_site(root, "shop04.example", report_sites.site_files(4, policy=False))
    (root / "shop04.example" / "privacy.html").unlink()
    # shop08 (certified) unlinks its badge: the image stays, the verification link goes
    files = report_sites.site_files(8)
    cert = report_sites.status(8)[1]
    linked = report_sites.badge_html(8)
    img = f'<img src="http://{report_sites.OFFICIAL}/badge/{cert}.svg" alt="诚信认证">'
    assert linked in files["index.html"]
    files["index.html"] = files["index.html"].replace(linked, img)
    write_site(root, "shop08.example", files)
    # hostile.example (certified) rewrites its policy: the rights and contact sentences go
    kept = [c for c in report_sites.clauses(0) if c not in ("rights", "contact")]
    write_site(root, "hostile.example", {"privacy.html": report_sites.policy_page(0, kept)})
    # shop01 (certified) drops its complaint link
    write_site(root, "shop01.example", report_sites.site_files(1, complaint=False))


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monitoring")
    root = tmp / "farm"
    registry = report_sites.build(root)
    domain, until = EXPIRING
    registry = "\n".join(
        line.replace("2030-12-31", until.isoformat()) if line.startswith(domain + ",") else line
        for line in registry.splitlines()
    )
    (tmp / "sites.csv").write_text(registry + "\n", encoding="utf-8")
    with database_url(tmp) as db:
        yield _build_history(tmp, root, db)


def _build_history(tmp: Path, root: Path, db: str) -> dict:
    cli = Cli()
    audits: dict[str, list[dict]] = {}
    with (
        pytest.MonkeyPatch.context() as mp,
        SiteFarm(root) as farm,
        WebhookReceiver() as hook,
    ):
        mp.setenv("ECTRUST_DB", db)
        mp.setenv("ECTRUST_HOME", str(tmp / "home"))
        mp.setenv("ECTRUST_BADGE_HOSTS", report_sites.OFFICIAL)
        mp.setenv("ECTRUST_CONNECT_TO", f"::127.0.0.1:{farm.port}")
        mp.setenv("ECTRUST_ALERT_WEBHOOK", hook.url)
        mp.delenv("ECTRUST_ALERT_TO", raising=False)
        mp.delenv("ECTRUST_SCHEDULE", raising=False)
        with time_machine.travel(T0, tick=False) as clock:
            cli("sites", "import", str(tmp / "sites.csv"))
            for doc in cli.json("audit", "--all", "--json", *FAST)["audits"]:
                audits.setdefault(doc["domain"], []).append(doc)
            _change_sites(root)
            due_runs = []
            for step in range(1, STEPS + 1):
                clock.shift(STEP)
                if step == 3:
                    cert = report_sites.status(12)[1]
                    cli("cert", "suspend", cert, "--reason", "投诉未处理 complaint not handled")
                done = cli.json("audit", "--due", "--json", *FAST)["audits"]
                due_runs.append([d["domain"] for d in done])
                for doc in done:
                    audits.setdefault(doc["domain"], []).append(doc)
        webhook_posts = len(hook.requests)
    return {
        "tmp": tmp,
        "cli": cli,
        "audits": audits,
        "due_runs": due_runs,
        "webhook_posts": webhook_posts,
        "db": db,
        "env": {
            "ECTRUST_DB": db,
            "ECTRUST_HOME": str(tmp / "home"),
            "ECTRUST_BADGE_HOSTS": report_sites.OFFICIAL,
        },
    }


def _report(history, out: Path, formats: str, lang: str = "en", env: dict | None = None):
    with pytest.MonkeyPatch.context() as mp:
        for k, v in (env or history["env"]).items():
            mp.setenv(k, v)
        mp.delenv("ECTRUST_SCHEDULE", raising=False)
        result = history["cli"](
            "report",
            "monitoring",
            "--since",
            SINCE,
            "--until",
            UNTIL,
            "--out",
            str(out),
            "--format",
            formats,
            "--lang",
            lang,
        )
    return [Path(p) for p in result.stdout.split()]


def _expected(history) -> dict:
    """Regressions, badge changes and re-checked sites recomputed from the audits' own
    findings (each re-check against the site's previous reachable audit)."""
    regressions, badge = set(), set()
    for domain, docs in history["audits"].items():
        reachable = [d for d in docs if d["reachable"]]
        for before, after in itertools.pairwise(reachable):
            old = {f["rule_id"]: f["status"] for f in before["findings"]}
            for f in after["findings"]:
                was = old.get(f["rule_id"])
                if f["status"] == "error" or was == "error":
                    continue
                if (
                    RANK[f["status"]] > RANK.get(was, 0)
                    if was
                    else f["status"] in ("fail", "review")
                ):
                    regressions.add((domain, f["rule_id"]))
            vb = (before.get("badge") or {}).get("verdict")
            va = (after.get("badge") or {}).get("verdict")
            if vb != va:
                badge.add((domain, vb, va))
    rechecked = {d for run in history["due_runs"] for d in run}
    return {"regressions": regressions, "badge": badge, "rechecked": rechecked}


def _db_checks(history) -> list[tuple[str, datetime, datetime, str]]:
    rows = query(
        history["db"],
        "SELECT sites.domain, scheduled_for, started_at, status FROM scheduled_checks "
        "JOIN sites ON sites.id = scheduled_checks.site_id",
    )
    return [
        (r["domain"], _when(r["scheduled_for"]), _when(r["started_at"]), r["status"])
        for r in rows
    ]


def _when(value: str | datetime) -> datetime:
    """A timestamp as either backend gives it raw (SQLite: text; PostgreSQL: datetime)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.strptime(value[:26], "%Y-%m-%d %H:%M:%S.%f")


def _hours(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 3600


def test_history_is_realistic(history):
    assert len(history["audits"]) == report_sites.SITES
    exp = _expected(history)
    assert {"shop04.example", "shop08.example", "hostile.example", "shop01.example"} <= {
        d for d, _ in exp["regressions"]
    }
    assert SUSPENDED in exp["rechecked"] and EXPIRING[0] in exp["rechecked"]
    # the suspended shop is watched weekly: more than one re-check in the period
    assert sum(run.count(SUSPENDED) for run in history["due_runs"]) >= 2
    assert history["webhook_posts"] >= 1


def test_numbers_match_the_stored_history(history):
    out = history["tmp"] / "report-en"
    written = _report(history, out, "json,csv,html")
    assert {p.name for p in written} >= {"monitoring.json", "monitoring.html"}
    data = json.loads((out / "monitoring.json").read_text("utf-8"))
    t = data["totals"]
    exp = _expected(history)

    assert t["sites_in_scope"] == report_sites.SITES
    assert t["sites_rechecked"] == len(exp["rechecked"])
    assert t["sites_checked"] == report_sites.SITES  # the first audits are in the period too
    assert {(c["domain"], c["rule_id"]) for c in data["regressions"]} == exp["regressions"]
    assert t["regressions"] == len(exp["regressions"])
    assert {
        (c["domain"], c["detail"]["before"], c["detail"]["after"]) for c in data["badge_changes"]
    } == exp["badge"]
    assert ("shop08.example", "valid", "unlinked") in exp["badge"]

    checks = _db_checks(history)
    assert t["rechecks"] == len(checks) == sum(len(r) for r in history["due_runs"])
    on_time = sum(1 for _, due, started, _ in checks if _hours(due, started) <= 24)
    assert t["rechecks_on_time"] == on_time and t["rechecks_late"] == len(checks) - on_time
    assert 0 < on_time < len(checks)  # both kinds occur with checks every two days

    assert [c["domain"] for c in data["certificates"]["suspended"]] == [SUSPENDED]
    assert data["certificates"]["suspended"][0]["reason"].startswith("投诉未处理")
    expiring = {c["domain"]: c for c in data["certificates"]["expiring"]}
    assert set(expiring) == {EXPIRING[0]} and expiring[EXPIRING[0]]["days_left"] == 14
    assert t["alerts_sent"] == history["webhook_posts"] == t["alert_digests"]
    assert t["integrity_failed"] == 0 and data["integrity"]["audits_checked"] > 0

    # regressions carry their evidence: shop04's policy, before (a pass quoting the page)
    policy = next(
        c
        for c in data["regressions"]
        if c["domain"] == "shop04.example" and c["rule_id"] == "privacy.policy_present"
    )
    assert policy["detail"]["before"]["status"] == "pass"
    assert "http://shop04.example/privacy.html" in {
        e["url"] for e in policy["detail"]["before"]["evidence"]
    }
    # CSV: the same numbers
    with (out / "monitoring-summary.csv").open(encoding="utf-8-sig") as fh:
        summary = {r["measure"]: r["value"] for r in csv.DictReader(fh)}
    assert {k: int(summary[k]) for k in t if isinstance(t[k], int)} == {
        k: v for k, v in t.items() if isinstance(v, int)
    }
    with (out / "monitoring-changes.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert sum(1 for r in rows if r["kind"] == "regression") == t["regressions"]
    assert {r["evidence_integrity"] for r in rows} == {"ok"}
    with (out / "monitoring-rechecks.csv").open(encoding="utf-8-sig") as fh:
        assert sum(int(r["on_time"]) for r in csv.DictReader(fh)) == on_time

    # HTML: the chart has one bar per non-zero count, the regression section its evidence
    doc = lxml_html.fromstring((out / "monitoring.html").read_text("utf-8"))
    svg = doc.xpath("//*[local-name()='svg']")[0]
    charted = [
        "rechecks_on_time",
        "rechecks_late",
        "rechecks_failed",
        "overdue_now",
        "regressions",
        "fixes",
        "badge_changes",
        "policy_changes",
        "certificates_suspended",
        "certificates_expiring",
        "alerts_sent",
    ]
    widths = [float(r.get("width")) for r in svg.xpath(".//*[local-name()='rect']")]
    assert len(widths) == len(charted)
    biggest = max(charted, key=lambda k: t[k])
    for key, width in zip(charted, widths, strict=True):  # bars in proportion to the counts
        assert width == pytest.approx(max(widths) * t[key] / t[biggest], abs=0.11), key
    assert "http://shop04.example/privacy.html" in (out / "monitoring.html").read_text("utf-8")

    # filters: the certificate-status filter keeps only the suspended shop
    out2 = history["tmp"] / "report-suspended"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in history["env"].items():
            mp.setenv(k, v)
        history["cli"](
            "report",
            "monitoring",
            "--since",
            SINCE,
            "--until",
            UNTIL,
            "--status",
            "suspended",
            "--out",
            str(out2),
            "--format",
            "json",
        )
        bad = history["cli"](
            "report",
            "monitoring",
            "--since",
            UNTIL,
            "--until",
            SINCE,
            "--out",
            str(out2),
            expect=2,
        )
    assert "after" in bad.stderr
    only = json.loads((out2 / "monitoring.json").read_text("utf-8"))
    assert [s["domain"] for s in only["sites"]] == [SUSPENDED]
    assert only["totals"]["rechecks"] == sum(run.count(SUSPENDED) for run in history["due_runs"])


@pytest.mark.timeout(600)
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_html_and_pdf_in_both_languages_inert(history, lang):
    out = history["tmp"] / f"pdf-{lang}"
    written = _report(history, out, "html,pdf", lang)
    assert {p.suffix for p in written} == {".html", ".pdf"}
    html_path = out / "monitoring.html"
    _assert_inert(html_path)
    html = html_path.read_text("utf-8")
    assert "恶意&lt;b&gt;书店&lt;/b&gt;" in html  # the hostile registry name, as text
    assert "<b>书店</b>" not in html
    text = subprocess.run(
        ["pdftotext", "-layout", str(out / "monitoring.pdf"), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if lang == "zh":
        assert "持续监测报告" in text and "按时复查" in text and "退步" in text
    else:
        assert "Monitoring report" in text and "Re-checks on time" in text
    assert "shop04.example" in text and "privacy.policy_present" in text
    assert "恶意<b>" in text  # shown as text in the PDF too (the cell may wrap after it)
    # the chart survived: its labels are in the PDF's text
    assert ("本期复查与变化" if lang == "zh" else "Re-checks and changes") in text


def test_tampered_evidence_is_flagged(history, tmp_path):
    """Change one stored body (shop04's policy page, quoted by its regression): the report
    says so next to that evidence, in the method section, and in JSON and CSV."""
    # The report only reads the database: a copy of the evidence files keeps the tampering
    # away from the other tests of this module.
    home = tmp_path / "home"
    shutil.copytree(history["tmp"] / "home", home)
    env = {**history["env"], "ECTRUST_HOME": str(home)}
    first = history["audits"]["shop04.example"][0]
    (row,) = query(
        history["db"],
        "SELECT content_hash FROM snapshots JOIN audits "
        "ON audits.crawl_id = snapshots.crawl_id WHERE audits.id = :audit AND snapshots.url = :url",
        {"audit": first["audit_id"], "url": "http://shop04.example/privacy.html"},
    )
    digest = row["content_hash"]
    from audits.evidence import BlobStore

    path = BlobStore(home).path_for(digest)
    body = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(body.replace("隐私".encode(), "隱私".encode())))

    out = tmp_path / "out"
    _report(history, out, "json,csv,html", "en", env=env)
    data = json.loads((out / "monitoring.json").read_text("utf-8"))
    assert data["totals"]["integrity_failed"] == 1
    (failed,) = data["integrity"]["failed_audits"]
    assert failed["audit_id"] == first["audit_id"]
    assert digest in failed["bad_files"] and failed["bad_files"][digest] == "mismatch"
    policy = next(
        c
        for c in data["regressions"]
        if c["domain"] == "shop04.example" and c["rule_id"] == "privacy.policy_present"
    )
    flagged = [e for e in policy["detail"]["before"]["evidence"] if e.get("integrity")]
    assert flagged and all(e["url"] == "http://shop04.example/privacy.html" for e in flagged)
    assert flagged[0]["integrity"] == {"status": "mismatch", "files": [digest]}
    assert first["audit_id"] in policy["integrity_failed_audits"]
    with (out / "monitoring-changes.csv").open(encoding="utf-8-sig") as fh:
        marked = {r["domain"] for r in csv.DictReader(fh) if r["evidence_integrity"] == "mismatch"}
    assert "shop04.example" in marked and "shop08.example" not in marked
    html = (out / "monitoring.html").read_text("utf-8")
    assert html.count('class="integrity-warning"') == data["integrity"]["evidence_flagged"] >= 1
    assert "no longer matches its recorded hash" in html
    _report(history, out / "zh", "html", "zh", env=env)
    zh = (out / "zh" / "monitoring.html").read_text("utf-8")
    assert zh.count("存储的页面或截图与记录的哈希值不符") == data["integrity"]["evidence_flagged"]
    assert 'class="integrity-box"' in html
