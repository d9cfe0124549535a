"""Reports (issue #8) rendered from a local farm of 32 shops, in both languages, to HTML, PDF,
CSV and JSON: numbers checked against the findings, crawled markup inert, PDFs that fetch
nothing."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from lxml import html as lxml_html
from typer.testing import CliRunner

from ectrust.cli import app
from ectrust.sitefarm import SiteFarm
from reports.data import CLAUSES
from tests import report_sites
from tests.conftest import write_site
from tests.dbs import database_url, execute, query

CHANGED = ("shop03.example", "shop02.example")  # policy added; complaint link removed


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Audited once with earlier dates (the earlier survey), re-judged now, two shops changed
    and audited again, one unregistered shop badge-checked."""
    tmp = tmp_path_factory.mktemp("reports")
    root = tmp / "farm"
    (tmp / "sites.csv").write_text(report_sites.build(root), encoding="utf-8")
    with database_url(tmp) as db:
        env = {
            "ECTRUST_DB": db,
            "ECTRUST_HOME": str(tmp / "home"),
            "ECTRUST_BADGE_HOSTS": report_sites.OFFICIAL,
            "ECTRUST_CONNECT_TO": "",
        }
        runner = CliRunner(env=env)

        def run(*args: str, expect: int = 0):  # type: ignore[no-untyped-def]
            result = runner.invoke(app, list(args), catch_exceptions=False)
            assert result.exit_code == expect, (args, result.stdout, result.stderr)
            return result

        run("sites", "import", str(tmp / "sites.csv"))
        with SiteFarm(root) as farm:
            connect = ["--connect-to", f"::127.0.0.1:{farm.port}", "-s", "DOWNLOAD_DELAY=0"]
            first = json.loads(run("audit", "--all", "--json", "--max-pages", "8", *connect).stdout)
            # the first round becomes last June's survey
            execute(db, "UPDATE audits SET started_at = '2026-06-10 10:00:00.000000'")
            run("reaudit", "--all")
            write_site(root, "shop03.example", {**report_sites.site_files(3)})
            (root / "shop03.example" / "index.html").write_text(
                report_sites.page(
                    3,
                    "书城03",
                    "<p>欢迎</p>",
                    '<a href="/privacy.html">隐私政策</a> <a href="/complaints.html">投诉举报</a>',
                ),
                encoding="utf-8",
            )
            (root / "shop03.example" / "privacy.html").write_text(
                report_sites.policy_page(3, list(report_sites.ZH)), encoding="utf-8"
            )
            write_site(root, "shop02.example", report_sites.site_files(2, complaint=False))
            now = json.loads(run("audit", *CHANGED, "--json", "--max-pages", "8", *connect).stdout)
            write_site(
                root,
                "rogue.example",
                {
                    "index.html": report_sites.page(
                        1,
                        "Rogue",
                        "<p>shop</p>",
                        f'<a href="http://{report_sites.OFFICIAL}/cert/ECT-2026-1000">'
                        f'<img src="http://{report_sites.OFFICIAL}/badge/ECT-2026-1000.svg"></a>',
                    )
                },
            )
            run("badge", "check", "http://rogue.example/", *connect)
        yield {"run": run, "tmp": tmp, "db": db, "first": first["audits"], "now": now["audits"]}


def _latest_docs(world) -> dict[str, dict]:
    out = world["run"](
        "report", "site", "--out", str(world["tmp"] / "site-json"), "--format", "json"
    )
    assert out.stdout.strip().endswith("site-audit.json")
    data = json.loads((world["tmp"] / "site-json" / "site-audit.json").read_text("utf-8"))
    return {d["domain"]: d for d in data["audits"]}, data


def test_farm_is_realistic(world):
    docs = {d["domain"]: d for d in world["first"]}
    assert len(docs) == report_sites.SITES >= 30
    assert all(d["reachable"] for d in docs.values())
    with_policy = [d for d in docs.values() if d["privacy_policy"]]
    assert 15 <= len(with_policy) < len(docs)
    assert {d["privacy_policy"]["clicks_from_home"] for d in with_policy} >= {1, 2}
    assert any(d["privacy_policy"].get("found_by") == "sitemap" for d in with_policy)
    verdicts = {d["badge"]["verdict"] for d in docs.values() if d["badge"]}
    assert {"valid", "expired", "forged_link", "wrong_domain"} <= verdicts


def _expected_survey(docs: list[dict]) -> dict:
    """The survey's numbers, recomputed from the findings themselves."""
    reachable = [d for d in docs if d["reachable"]]
    policy = {}
    for d in reachable:
        present = next(f for f in d["findings"] if f["rule_id"] == "privacy.policy_present")
        if present["status"] in ("pass", "warn"):
            policy[d["domain"]] = {
                c: next(f for f in d["findings"] if f["rule_id"] == f"privacy.clause.{c}")["status"]
                == "pass"
                for c in CLAUSES
            }
    coverage = {c: sum(1 for v in policy.values() if v[c]) for c in CLAUSES}
    return {"reachable": len(reachable), "with_policy": len(policy), "coverage": coverage}


def test_survey_numbers_match_findings_and_exports(world):
    latest, _ = _latest_docs(world)
    out_dir = world["tmp"] / "survey"
    world["run"](
        "report",
        "survey",
        "--industry",
        "books",
        "--out",
        str(out_dir),
        "--format",
        "json,csv,html",
        "--compare",
        "2026-06-01..2026-06-30",
    )
    data = json.loads((out_dir / "survey.json").read_text("utf-8"))
    books = [d for d in latest.values() if d["domain"] in {r["domain"] for r in data["sites"]}]
    assert (
        len(books)
        == len(data["sites"])
        == sum(1 for i in range(report_sites.SITES) if report_sites.industry(i) == "books")
    )
    exp = _expected_survey(books)
    t = data["totals"]
    assert (t["reachable"], t["with_policy"]) == (exp["reachable"], exp["with_policy"])
    for c in CLAUSES:
        assert t["coverage"][c]["sites"] == exp["coverage"][c], c
        assert t["coverage"][c]["share_of_policies"] == round(
            100 * exp["coverage"][c] / exp["with_policy"], 1
        )
    # clicks: every linked policy's clicks, from the audits' own summaries
    clicks = [
        d["privacy_policy"]["clicks_from_home"]
        for d in books
        if d["privacy_policy"] and d["privacy_policy"].get("found_by") == "link"
    ]
    assert sum(t["clicks"]["distribution"].values()) == len(clicks) == t["linked"]
    # the earlier survey: the same cohort's June audits; shop03 gained a policy since
    first_books = [d for d in world["first"] if d["domain"] in {r["domain"] for r in data["sites"]}]
    earlier = data["comparison"]["totals"]
    assert earlier["with_policy"] == _expected_survey(first_books)["with_policy"]
    assert t["with_policy"] == earlier["with_policy"] + 1
    assert data["comparison"]["sites_in_both"] == len(books)
    # CSV carries the same numbers
    with (out_dir / "survey-coverage.csv").open(encoding="utf-8-sig") as fh:
        rows = {r["clause"]: r for r in csv.DictReader(fh)}
    assert {c: int(rows[c]["sites"]) for c in CLAUSES} == exp["coverage"]
    with (out_dir / "survey-sites.csv").open(encoding="utf-8-sig") as fh:
        assert len(list(csv.DictReader(fh))) == len(books)
    # the chart is an inline SVG with one bar per covered category
    doc = lxml_html.fromstring((out_dir / "survey.html").read_text("utf-8"))
    svg = doc.xpath("//*[local-name()='svg']")[0]
    bars = [r for r in svg.xpath(".//*[local-name()='rect']")]
    assert len(bars) == sum(1 for c in CLAUSES if exp["coverage"][c])


def test_survey_anonymised_and_filters(world):
    out_dir = world["tmp"] / "anon"
    world["run"](
        "report", "survey", "--anonymise", "--out", str(out_dir), "--format", "json,csv,html"
    )
    text = "".join(p.read_text("utf-8-sig") for p in out_dir.iterdir())
    assert "shop" not in text and "hostile" not in text and "商城" not in text
    data = json.loads((out_dir / "survey.json").read_text("utf-8"))
    assert len(data["sites"]) == report_sites.SITES
    world["run"](
        "report", "survey", "--status", "certified", "--out", str(out_dir), "--format", "json"
    )
    certified = json.loads((out_dir / "survey.json").read_text("utf-8"))["sites"]
    assert certified and {r["status"] for r in certified} == {"certified"}
    bad = world["run"]("report", "survey", "--status", "gold", "--out", str(out_dir), expect=2)
    assert "--status" in bad.stderr
    bad = world["run"]("report", "survey", "--format", "docx", "--out", str(out_dir), expect=2)
    assert "docx" in bad.stderr
    bad = world["run"]("report", "survey", "--since", "2030-01-01", "--out", str(out_dir), expect=2)
    assert "no audited sites" in bad.stderr


def test_site_report_recommendation_and_changes(world):
    latest, data = _latest_docs(world)
    for domain, doc in latest.items():
        fails = [
            f
            for f in doc["findings"]
            if f["status"] == "fail" and f["severity"] in ("critical", "major")
        ]
        verdict = data["recommendations"][domain]
        assert (verdict == "not_ready") == bool(fails), domain
    fixed = data["changes"]["shop03.example"]
    assert "privacy.policy_present" in {c["rule_id"] for c in fixed["fixed"]}
    broke = data["changes"]["shop02.example"]
    assert "complaint.channel_present" in {c["rule_id"] for c in broke["new_failures"]}


def _assert_inert(path: Path) -> None:
    doc = lxml_html.fromstring(path.read_text("utf-8"))
    assert not doc.xpath("//script"), path
    for el in doc.iter():
        if not isinstance(el.tag, str):
            continue
        assert not [a for a in el.attrib if a.lower().startswith("on")], (path, el.tag, el.attrib)
        for attr in ("href", "src"):
            value = el.get(attr)
            if value is not None:
                assert value.startswith(("http://", "https://", "data:image/png", "#")), value


@pytest.mark.timeout(900)  # WeasyPrint lays out a few hundred pages on a shared machine
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_report_in_both_languages_to_html_and_pdf(world, lang):
    out_dir = world["tmp"] / f"all-{lang}"
    for kind in ("site", "survey", "misuse"):
        formats = "html,csv,json" if kind == "site" else "html,pdf,csv,json"
        result = world["run"](
            "report", kind, "--out", str(out_dir), "--format", formats, "--lang", lang
        )
        written = [Path(p) for p in result.stdout.split()]
        assert {p.suffix[1:] for p in written} == set(formats.split(","))
    for html in out_dir.glob("*.html"):
        _assert_inert(html)
        text = html.read_text("utf-8")
        assert (
            ("隐私政策" in text or "诚信" in text)
            if lang == "zh"
            else ("Privacy" in text or "badge" in text)
        )
    site_html = (out_dir / "site-audit.html").read_text("utf-8")
    # crawled text and registry names shown as text: escaped, never markup
    assert "恶意&lt;b&gt;书店&lt;/b&gt;" in site_html
    assert "&lt;img src=x onerror=alert(1)&gt;" in site_html
    # The PDF of the site report for the sites that matter here (all 32 would take minutes
    # of layout on a loaded CI machine; the survey and misuse PDFs cover every site).
    pdf_dir = out_dir / "pdf"
    world["run"](
        "report",
        "site",
        "hostile.example",
        *CHANGED,
        "shop09.example",
        "--out",
        str(pdf_dir),
        "--format",
        "pdf",
        "--lang",
        lang,
    )
    assert (pdf_dir / "site-audit.pdf").exists()
    for pdf in [*out_dir.glob("*.pdf"), *pdf_dir.glob("*.pdf")]:
        head = pdf.read_bytes()[:5]
        assert head == b"%PDF-", pdf
        text = subprocess.run(
            ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert ("诚信" in text or "隐私" in text) if lang == "zh" else "ectrust" in text


def test_misuse_cases_letters_and_sources(world):
    out_dir = world["tmp"] / "misuse"
    world["run"]("report", "misuse", "--out", str(out_dir), "--format", "json,html", "--lang", "zh")
    cases = {
        c["domain"]: c for c in json.loads((out_dir / "misuse.json").read_text("utf-8"))["cases"]
    }
    latest, _ = _latest_docs(world)
    expected = {
        d
        for d, doc in latest.items()
        if doc["badge"]
        and doc["badge"]["verdict"] not in ("valid", "absent")
        and next(f for f in doc["findings"] if f["rule_id"] == "badge.valid")["status"] == "fail"
    }
    assert expected <= set(cases)
    assert cases["rogue.example"]["source"] == "badge_check"
    assert cases["rogue.example"]["verdict"] == "wrong_domain"
    assert cases["shop09.example"]["verdict"] == "forged_link"
    assert cases["shop05.example"]["verdict"] == "expired"
    html = (out_dir / "misuse.html").read_text("utf-8")
    assert html.count('class="letter"') == len(cases)
    assert "请立即撤下该标识" in html


def test_pdf_renderer_fetches_nothing(tmp_path):
    from reports.pdf import html_to_pdf

    hits = []
    root = tmp_path / "farm"
    write_site(root, "x.test", {"a.png": b"x", "a.css": "body{}"})
    with SiteFarm(root, on_request=lambda h, p: hits.append(p)) as farm:
        base = f"http://127.0.0.1:{farm.port}"
        refused = html_to_pdf(
            f'<link rel="stylesheet" href="{base}/a.css"><img src="{base}/a.png">'
            '<img src="file:///etc/passwd"><p>中文</p>',
            tmp_path / "x.pdf",
        )
    assert hits == []
    assert len(refused) == 3


def test_screenshot_thumbnails_embedded_or_reported_missing(tmp_path):
    """Evidence entries that carry screenshot references (the rendering crawler adds them)
    get embedded thumbnails; a reference the store does not hold is said, not hidden."""
    import io

    from PIL import Image

    from audits.evidence import BlobStore
    from reports.data import recommendation, thumbnail
    from reports.render import write_site_report

    blobs = BlobStore(tmp_path / "home")
    buf = io.BytesIO()
    Image.new("RGB", (1280, 2400), (200, 30, 30)).save(buf, "PNG")
    digest = blobs.put(buf.getvalue())
    shown = thumbnail(blobs, {"kind": "full_page", "sha256": digest})
    assert shown["data_uri"].startswith("data:image/png;base64,") and not shown["missing"]
    with Image.open(
        io.BytesIO(__import__("base64").b64decode(shown["data_uri"].split(",")[1]))
    ) as img:
        assert img.width == 360 and img.height == 420  # scaled, the top of a full page kept
    gone = thumbnail(blobs, {"kind": "footer", "sha256": "ab" * 32})
    assert gone["missing"] and gone["data_uri"] is None
    finding = {
        "rule_id": "privacy.policy_present",
        "status": "fail",
        "severity": "critical",
        "title": "A privacy policy",
        "message": "none found",
        "references": ["PIPL art. 17"],
        "guidance": "Link it from the footer.",
        "evidence": [
            {
                "url": "http://a.example/",
                "excerpt": "",
                "selector": None,
                "thumbnails": [shown, gone],
            }
        ],
    }
    doc = {
        "audit_id": 1,
        "domain": "a.example",
        "started_at": "2026-11-29T08:00:00Z",
        "finished_at": "2026-11-29T08:00:05Z",
        "pages_fetched": 3,
        "reachable": True,
        "score": 0.0,
        "findings": [finding],
        "privacy_policy": None,
        "badge": None,
    }
    entry = {
        "doc": doc,
        "site": {"name": "A", "industry": "", "certificate": None},
        "recommendation": recommendation(doc),
        "changes": None,
    }
    (path,) = write_site_report([doc], tmp_path / "out", ["html"], "en", entries=[entry])
    html = path.read_text("utf-8")
    assert html.count('<img src="data:image/png;base64,') == 1
    assert "screenshot missing from the evidence store" in html
    assert "PIPL art. 17" in html and "Not ready for certification" in html


def test_tampered_body_is_flagged_in_site_and_survey_reports(world, tmp_path):
    """A stored body changed after the audit (here shop03's privacy policy, the evidence of
    its policy findings): the site report warns next to that evidence and in its summary, the
    survey flags the site and counts it in its method section, JSON and CSV carry it."""
    import gzip
    import shutil

    from audits.evidence import BlobStore

    # The reports only read the database: a copy of the evidence files is enough to keep the
    # tampering away from the other tests of this module.
    home = tmp_path / "home"
    shutil.copytree(world["tmp"] / "home", home)
    runner = CliRunner(
        env={
            "ECTRUST_DB": world["db"],
            "ECTRUST_HOME": str(home),
            "ECTRUST_BADGE_HOSTS": report_sites.OFFICIAL,
            "ECTRUST_CONNECT_TO": "",
        }
    )
    audit_id = next(d["audit_id"] for d in world["now"] if d["domain"] == "shop03.example")
    url = "http://shop03.example/privacy.html"
    (row,) = query(
        world["db"],
        "SELECT content_hash FROM snapshots JOIN audits "
        "ON audits.crawl_id = snapshots.crawl_id WHERE audits.id = :audit AND snapshots.url = :url",
        {"audit": audit_id, "url": url},
    )
    digest = row["content_hash"]
    path = BlobStore(home).path_for(digest)
    body = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(body.replace("隐私".encode(), "隱私".encode())))

    def run(*args: str) -> None:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)

    out = tmp_path / "out"
    run(
        "report",
        "site",
        "shop03.example",
        "shop04.example",
        "--out",
        str(out),
        "--format",
        "json,csv,html",
    )
    data = json.loads((out / "site-audit.json").read_text("utf-8"))
    assert data["integrity"]["shop03.example"]["status"] == "integrity_failed"
    assert data["integrity"]["shop03.example"]["bad_files"] == {digest: "mismatch"}
    assert data["integrity"]["shop04.example"]["status"] == "ok"
    doc = next(d for d in data["audits"] if d["domain"] == "shop03.example")
    flagged = [
        (f["rule_id"], e["url"])
        for f in doc["findings"]
        for e in f["evidence"]
        if e.get("integrity")
    ]
    assert flagged and {u for _, u in flagged} == {url}
    assert "privacy.policy_present" in {r for r, _ in flagged}
    with (out / "site-audit-findings.csv").open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    marked = {(r["domain"], r["rule_id"]) for r in rows if r["evidence_integrity"] == "mismatch"}
    assert ("shop03.example", "privacy.policy_present") in marked
    assert not {d for d, _ in marked} - {"shop03.example"}
    html = (out / "site-audit.html").read_text("utf-8")
    assert html.count('class="integrity-warning"') == len(flagged)
    assert html.count('class="integrity-box"') == 1

    run("report", "survey", "--out", str(out), "--format", "json,csv,html")
    survey = json.loads((out / "survey.json").read_text("utf-8"))
    states = {r["domain"]: r["evidence_integrity"] for r in survey["sites"]}
    assert states.pop("shop03.example") == "integrity_failed"
    assert set(states.values()) == {"ok"}
    assert survey["totals"]["integrity"]["integrity_failed"] == 1
    with (out / "survey-sites.csv").open(encoding="utf-8-sig") as fh:
        csv_states = {r["site"]: r["evidence_integrity"] for r in csv.DictReader(fh)}
    assert csv_states["shop03.example"] == "integrity_failed"
    shtml = (out / "survey.html").read_text("utf-8")
    assert shtml.count('class="integrity-box"') == 1 and "[!]" in shtml

    # the misuse report: shop09's homepage (where its forged badge link was seen) altered
    (row,) = query(
        world["db"],
        "SELECT content_hash FROM snapshots JOIN audits "
        "ON audits.crawl_id = snapshots.crawl_id WHERE audits.id = (SELECT max(audits.id) "
        "FROM audits JOIN sites ON sites.id = audits.site_id "
        "WHERE sites.domain = 'shop09.example') AND snapshots.url = :url",
        {"url": "http://shop09.example/"},
    )
    home_digest = row["content_hash"]
    path = BlobStore(home).path_for(home_digest)
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()) + b"<!-- edited -->"))
    run("report", "misuse", "--out", str(out), "--format", "json,csv,html")
    cases = {c["domain"]: c for c in json.loads((out / "misuse.json").read_text("utf-8"))["cases"]}
    assert cases["shop09.example"]["integrity"]["status"] == "integrity_failed"
    hit = [s for s in cases["shop09.example"]["sightings"] if s.get("integrity")]
    assert hit and {s["page"] for s in hit} == {"http://shop09.example/"}
    assert cases["shop05.example"]["integrity"]["status"] == "ok"
    # a `badge check` stores its look as an audit with a manifest too: checked, intact
    assert cases["rogue.example"]["source"] == "badge_check"
    assert cases["rogue.example"]["integrity"]["status"] == "ok"
    with (out / "misuse-cases.csv").open(encoding="utf-8-sig") as fh:
        bad = {r["domain"] for r in csv.DictReader(fh) if r["evidence_integrity"] == "mismatch"}
    assert bad == {"shop09.example"}
    mhtml = (out / "misuse.html").read_text("utf-8")
    assert mhtml.count('class="integrity-box"') == 1
    assert mhtml.count('class="integrity-warning"') == len(hit)


def test_pdf_renderer_is_a_limited_child(tmp_path):
    """T39: WeasyPrint runs in a child process; past its time limit the child is killed,
    the caller gets an error and no half-written PDF stays behind."""

    from reports.pdf import PdfRenderError, html_to_pdf

    huge = "<table>" + "<tr><td>单元格 cell</td></tr>" * 200_000 + "</table>"
    target = tmp_path / "slow.pdf"
    with pytest.raises(PdfRenderError, match="stopped after"):
        html_to_pdf(huge, target, time_limit=3)
    assert not target.exists()
    refused = html_to_pdf('<p>中文</p><img src="file:///etc/passwd">', tmp_path / "ok.pdf")
    assert refused == ["file:///etc/passwd"] and (tmp_path / "ok.pdf").stat().st_size > 1000
