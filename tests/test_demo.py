"""The bundled demo shops, audited end to end: CONTRACT.md's JSON field by field, and the
outcome each demo shop was built to show (ectrust/demo/README.md)."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from audits.vocabulary import BADGE_VERDICTS, CLAUSE_CATEGORIES, CONTRACT_RULE_IDS
from tests.conftest import DEMO_CSV

STATUSES = {"pass", "fail", "warn", "review", "error", "not_applicable"}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def demo_audit(tmp_path_factory):
    """One audit of all demo shops, shared by the tests of this module."""
    from typer.testing import CliRunner

    from ectrust.cli import app
    from ectrust.sitefarm import SiteFarm
    from tests.conftest import DEMO_SITES
    from tests.dbs import database_url

    tmp = tmp_path_factory.mktemp("demo")
    with database_url(tmp) as db:
        env = {
            "ECTRUST_DB": db,
            "ECTRUST_HOME": str(tmp / "home"),
            "ECTRUST_BADGE_HOSTS": "verify.trust.example",
            "ECTRUST_CONNECT_TO": "",
        }
        runner = CliRunner(env=env)
        assert runner.invoke(app, ["sites", "import", str(DEMO_CSV)]).exit_code == 0
        with SiteFarm(DEMO_SITES) as farm:
            result = runner.invoke(
                app,
                [
                    "audit",
                    "--all",
                    "--json",
                    "--connect-to",
                    f"::127.0.0.1:{farm.port}",
                    "-s",
                    "DOWNLOAD_DELAY=0",
                ],
            )
            requests = list(farm.requests)
    assert result.exit_code == 0, result.stderr
    docs = {d["domain"]: d for d in json.loads(result.stdout)["audits"]}
    return docs, requests


def findings(doc: dict) -> dict[str, dict]:
    return {f["rule_id"]: f for f in doc["findings"]}


def test_contract_fields(demo_audit):
    docs, _ = demo_audit
    assert set(docs) == {"books.example", "gadgets.example", "market.example", "fashion.example"}
    for doc in docs.values():
        assert isinstance(doc["audit_id"], int)
        assert ISO_Z.match(doc["started_at"]) and ISO_Z.match(doc["finished_at"])
        assert datetime.fromisoformat(doc["started_at"]) <= datetime.fromisoformat(
            doc["finished_at"]
        )
        assert isinstance(doc["pages_fetched"], int) and 3 <= doc["pages_fetched"] <= 30
        assert doc["reachable"] is True
        assert isinstance(doc["score"], float) and 0 <= doc["score"] <= 100
        ids = [f["rule_id"] for f in doc["findings"]]
        assert set(CONTRACT_RULE_IDS) <= set(ids), f"{doc['domain']} lacks rule ids"
        assert len(ids) == len(set(ids))
        for f in doc["findings"]:
            assert f["status"] in STATUSES
            assert f["severity"] in {"critical", "major", "minor", "info"}
            assert f["title"] and isinstance(f["message"], str)
            for e in f["evidence"]:
                assert {"url", "excerpt", "selector"} <= set(e)
        policy = doc["privacy_policy"]
        if policy is not None:
            assert {"url", "clicks_from_home", "clauses"} <= set(policy)
            assert set(policy["clauses"]) == set(CLAUSE_CATEGORIES)
            assert all(isinstance(v, bool) for v in policy["clauses"].values())
        badge = doc["badge"]
        assert set(badge) == {"verdict", "certificate_id", "pages"}
        assert badge["verdict"] in BADGE_VERDICTS


def test_books_is_compliant(demo_audit):
    doc = demo_audit[0]["books.example"]
    f = findings(doc)
    for rule_id in CONTRACT_RULE_IDS:
        assert f[rule_id]["status"] == "pass", (rule_id, f[rule_id]["message"])
    assert doc["privacy_policy"]["clicks_from_home"] == 1
    assert all(doc["privacy_policy"]["clauses"].values())
    assert doc["badge"] == {
        "verdict": "valid",
        "certificate_id": "ECT-2024-0001",
        "pages": doc["badge"]["pages"],
    }
    assert "http://books.example/" in doc["badge"]["pages"]
    licence = f["business.licence_displayed"]["evidence"]
    assert any(e.get("check_digit_valid") is True for e in licence)
    assert f["business.icp_displayed"]["evidence"][0]["number"] == "京ICP备12345678号-1"


def test_gadgets_misses_retention_and_children(demo_audit):
    doc = demo_audit[0]["gadgets.example"]
    clauses = doc["privacy_policy"]["clauses"]
    assert [c for c, v in clauses.items() if not v] == ["retention", "children"]
    f = findings(doc)
    assert f["business.icp_displayed"]["status"] == "not_applicable"  # English-language site
    assert f["business.licence_displayed"]["status"] == "fail"
    assert f["complaint.channel_present"]["status"] == "pass"
    assert doc["badge"]["verdict"] == "valid"


def test_market_gbk_decoy_and_expired_badge(demo_audit):
    docs, _ = demo_audit
    doc = docs["market.example"]
    f = findings(doc)
    assert doc["privacy_policy"] is None
    assert f["privacy.policy_present"]["status"] == "fail"
    assert "privacy-tips" in str(f["privacy.policy_present"]["evidence"])  # the decoy, named
    assert f["complaint.channel_present"]["status"] == "fail"
    assert f["business.licence_displayed"]["status"] == "fail"
    icp = f["business.icp_displayed"]
    assert icp["status"] == "pass" and icp["evidence"][0]["number"] == "沪ICP备87654321号"
    assert doc["badge"]["verdict"] == "expired"
    assert doc["badge"]["certificate_id"] == "ECT-2022-0003"


def test_fashion_policy_two_clicks_and_forged_badge(demo_audit):
    docs, _ = demo_audit
    doc = docs["fashion.example"]
    policy = doc["privacy_policy"]
    assert policy["url"] == "http://fashion.example/help/privacy-policy.html"
    assert policy["clicks_from_home"] == 2
    assert [c for c, v in policy["clauses"].items() if not v] == ["cookies", "children", "changes"]
    assert doc["badge"]["verdict"] == "forged_link"
    assert findings(doc)["badge.valid"]["evidence"][0]["href"].startswith(
        "http://verify-trust.example.com/cert/"
    )


def test_robots_txt_kept_the_crawler_out_of_admin(demo_audit):
    _, requests = demo_audit
    assert ("books.example", "/robots.txt") in requests
    assert not any(
        host == "books.example" and path.startswith("/admin/") for host, path in requests
    )
    assert not any(host == "verify-trust.example.com" for host, _ in requests)


def test_the_demo_command_of_the_readme_ends_in_a_report(tmp_path, monkeypatch):
    """`ectrust demo` (README's first command) in an empty folder: the four shops audited,
    the report written where it says, with each shop's score and the demo's outcome."""
    from typer.testing import CliRunner

    from ectrust.cli import app

    monkeypatch.chdir(tmp_path)
    for name in ("ECTRUST_DB", "ECTRUST_HOME", "ECTRUST_CONNECT_TO"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    written = result.stdout.split("report:", 1)[1].split()
    assert {p.rsplit(".", 1)[1] for p in written} == {"html", "json"}
    doc = json.loads((tmp_path / "ectrust-demo" / "report" / "site-audit.json").read_text("utf-8"))
    scores = {a["domain"]: a["score"] for a in doc["audits"]}
    assert set(scores) == {"books.example", "gadgets.example", "fashion.example",
                           "market.example"}
    assert scores["books.example"] == max(scores.values()) > scores["market.example"]
    html = (tmp_path / "ectrust-demo" / "report" / "site-audit.html").read_text("utf-8")
    assert all(domain in html for domain in scores)
